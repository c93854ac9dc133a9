"""The cached path alone: each middleware round a no-op app, on thread CPU time.

Behind Starlette or Flask, a cached hit's 1 to 3 µs sits inside a 20 to 150 µs request, and
the paired differences of the in-process table swing by more than the overhead itself
when anything else runs on the machine. Here each middleware wraps an app that does
nothing, the variants take turns in a shuffled order for `rounds` rounds, each round one
batch per variant timed on the thread's CPU clock (time spent descheduled is not
counted), and the ratios are read at a low quantile over the rounds (the 10th
percentile; the median is kept too).

Variants, per face: the floor (ASGI a no-op middleware, WSGI the bare app), the minimal
reference (header + sha256 + dict + clock), the contract floor (every check bearerguard's
cached path makes, as one function) and bearerguard. Every variant is checked before and
after the timing to reach the app with the request admitted.

``python -m bench.hotpath [ROUNDS]`` prints the result as JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.plumbing import (
    APIS,
    KEY_ID,
    PEER,
    ContractFloorMiddleware,
    ContractFloorWSGI,
    Env,
    MinimalCheckMiddleware,
    MinimalCheckWSGI,
    NoopMiddleware,
    asgi_scope,
    issue_token,
    wsgi_environ,
)

QUANTILE = 0.10


class _Reached:
    """The innermost app: records what the middleware handed it, then does nothing."""

    def __init__(self) -> None:
        self.last: Any = None

    async def asgi(self, scope: Any, receive: Any, send: Any) -> None:
        self.last = scope

    def wsgi(self, environ: Any, start_response: Any) -> list[bytes]:
        self.last = environ
        return []


def _none() -> None:
    return None


async def _noapp(scope: Any, receive: Any, send: Any) -> None:
    return None


def _nowsgi(environ: Any, start_response: Any) -> list[bytes]:
    return []


def _variants(env: Env, app: Any, wapp: Any) -> dict[str, tuple[bool, Any, Callable[[], Any]]]:
    """name -> (is_async, middleware, closer) around `app` (ASGI) or `wapp` (WSGI)."""
    from bearerguard import BearerGuardMiddleware, StoreBackend, WSGIBearerGuard
    from bearerguard.stores import MemoryStore
    from bearerguard.tokens import Identity, TokenInfo

    hexdigest = hashlib.sha256(env.token.encode()).hexdigest()
    exp = time.time() + 3600
    info = TokenInfo(KEY_ID, frozenset(APIS), PEER[0], exp, 3600.0)
    ident = Identity(KEY_ID, info.apis, PEER[0], info)
    table = {hashlib.sha256(env.token.encode()).digest(): (exp, info, ident)}

    def backend() -> Any:
        store = MemoryStore()
        issue_token(store, env.token)
        return StoreBackend(store)

    bg = BearerGuardMiddleware(app, backend=backend(), api="dns")
    wbg = WSGIBearerGuard(wapp, backend=backend(), api="dns")
    return {
        "asgi_noop": (True, NoopMiddleware(app), _none),
        "asgi_minimal": (True, MinimalCheckMiddleware(app, table={hexdigest: exp}), _none),
        "asgi_contract": (True, ContractFloorMiddleware(app, table=table, api="dns"), _none),
        "asgi_bearerguard": (True, bg, bg.close),
        "wsgi_bare": (False, wapp, _none),
        "wsgi_minimal": (False, MinimalCheckWSGI(wapp, table={hexdigest: exp}), _none),
        "wsgi_contract": (False, ContractFloorWSGI(wapp, table=table, api="dns"), _none),
        "wsgi_bearerguard": (False, wbg, wbg.close),
    }


async def _check(env: Env) -> None:
    """Each variant reaches the app; bearerguard's with the request's Identity."""
    reached = _Reached()
    for name, (is_async, mw, close) in _variants(env, reached.asgi, reached.wsgi).items():
        reached.last = None
        if is_async:
            await mw(asgi_scope(env.token), receive, no_send)
            for _ in range(2):  # the second call takes the cached path
                await mw(asgi_scope(env.token), receive, no_send)
        else:
            for _ in range(2):
                mw(wsgi_environ(env.token), no_start_response)
        if reached.last is None:
            raise RuntimeError(f"bench.hotpath: {name} did not reach the app")
        if name.endswith("bearerguard"):
            ident = reached.last["bearerguard" if is_async else "bearerguard.identity"]
            if ident.client_ip != PEER[0] or "dns" not in ident.apis:
                raise RuntimeError(f"bench.hotpath: {name} handed the app {ident!r}")
        close()


# The request's receive, and a send and start_response that no admitted request reaches
# (bench.ab uses them too).


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def no_send(message: dict[str, Any]) -> None:
    raise RuntimeError("bench: the middleware answered instead of the app")


def no_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
    raise RuntimeError("bench: the middleware answered instead of the app")


async def _abatch(mw: Any, template: dict[str, Any], n: int) -> float:
    rec, send = receive, no_send
    t0 = time.thread_time_ns()
    for _ in range(n):
        await mw(template.copy(), rec, send)
    return (time.thread_time_ns() - t0) / n / 1000


def _sbatch(mw: Any, template: dict[str, Any], n: int) -> float:
    sr = no_start_response
    t0 = time.thread_time_ns()
    for _ in range(n):
        mw(template.copy(), sr)
    return (time.thread_time_ns() - t0) / n / 1000


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(env: Env, rounds: int = 200, batch: int = 1000) -> dict[str, Any]:
    """The per-variant µs per call and the cached-path ratios, as a JSON-ready dict."""
    await _check(env)
    variants = _variants(env, _noapp, _nowsgi)
    scope, environ = asgi_scope(env.token), wsgi_environ(env.token)
    for is_async, mw, _ in variants.values():  # warm: the first hit fills the cache
        for _ in range(3):
            if is_async:
                await mw(scope.copy(), receive, no_send)
            else:
                mw(environ.copy(), no_start_response)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            is_async, mw, _ = variants[name]
            if is_async:
                samples[name].append(await _abatch(mw, scope, batch))
            else:
                samples[name].append(_sbatch(mw, environ, batch))
    for _, _, close in variants.values():
        close()
    await _check(env)
    out: dict[str, Any] = {"rounds": rounds, "batch": batch, "quantile": QUANTILE, "us": {}}
    for name, values in samples.items():
        out["us"][name] = {
            "low": round(quantile(values, QUANTILE), 4),
            "median": round(statistics.median(values), 4),
        }
    out["ratios"] = {
        f"{face}_{which}": ratio(out, face, which)
        for face, which in (
            ("asgi", "bearerguard"),
            ("asgi", "contract"),
            ("wsgi", "bearerguard"),
            ("wsgi", "contract"),
        )
    }
    return out


def overhead(result: dict[str, Any], face: str, name: str, at: str = "low") -> float:
    """µs that variant `name` adds over the face's floor (no-op middleware / bare app)."""
    base = "asgi_noop" if face == "asgi" else "wsgi_bare"
    us = result["us"]
    return float(us[f"{face}_{name}"][at] - us[base][at])


def ratio(result: dict[str, Any], face: str, name: str) -> dict[str, float]:
    """overhead(`name`) ÷ overhead(minimal reference), at the low quantile and the median."""
    return {
        at: round(overhead(result, face, name, at) / overhead(result, face, "minimal", at), 3)
        for at in ("low", "median")
    }


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 200
    print(json.dumps(asyncio.run(run(Env(token=_token()), rounds=rounds)), indent=1))
    return 0


def _token() -> str:
    from bearerguard import tokens

    return tokens.generate()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
