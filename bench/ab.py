"""Two revisions of bearerguard in one process: which one's middleware works less.

A change of a few µs on the cold or the cached path is lost between two runs of
``python -m bench`` on a machine whose speed drifts from second to second. Here the
working tree's package and a revision's (exported by ``git archive`` and imported as
``bearerguard_<commit>``) run side by side in one process: each wraps an app that does
nothing, over the memory store, and the variants take turns in a shuffled order, each
round one batch per variant timed on the thread's CPU clock, so both sides meet the
same machine state. Per face (ASGI, WSGI), a miss (the cache emptied before each call)
and a cached hit; the app alone is timed in every round too, and each figure is the
work over it, read at the median and at a low quantile of the rounds. `ratio` is the
working tree's ÷ the revision's, both at the median, and `rounds_faster` the share of
rounds in which the working tree took less.

``python -m bench.ab [REV] [--rounds N] [--calls N]`` (REV defaults to HEAD) prints
the table, then the result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import json
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import bearerguard
from bench.hotpath import QUANTILE, no_send, no_start_response, quantile, receive
from bench.plumbing import APIS, PEER, asgi_scope, wsgi_environ

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("asgi_miss", "asgi_hit", "wsgi_miss", "wsgi_hit")


def load(rev: str, root: Path = ROOT) -> ModuleType:
    """The package as of `rev`, importable beside the working tree's (relative imports
    within it make a renamed copy work): ``bearerguard_<commit>``."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short=10", f"{rev}^{{commit}}"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    name = f"bearerguard_{commit}"
    if name in sys.modules:
        return sys.modules[name]
    archive = subprocess.run(
        ["git", "archive", commit, "src/bearerguard"], cwd=root, check=True, capture_output=True
    ).stdout
    where = Path(tempfile.mkdtemp(prefix="bg-ab-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12 and later
            tar.extractall(where, filter="data")
        else:  # pragma: no cover - our own repository's archive
            tar.extractall(where)
    (where / "src" / "bearerguard").rename(where / name)
    sys.path.insert(0, str(where))
    return importlib.import_module(name)


def _backend(pkg: ModuleType, token: str) -> Any:
    """`pkg`'s StoreBackend over its MemoryStore, holding `token` (bound to PEER)."""
    stores = importlib.import_module(f"{pkg.__name__}.stores")
    record = importlib.import_module(f"{pkg.__name__}.stores.base").TokenRecord
    store = stores.MemoryStore()
    key, _secret = store.create_key(APIS)
    now = time.time()
    store.put_token(
        record(
            digest=pkg.tokens.token_digest(token),
            key_id=key.key_id,
            apis=frozenset(APIS),
            bound_ip=PEER[0],
            issued_at=now,
            ttl=3600.0,
            expires_at=now + 3600.0,
        )
    )
    return pkg.StoreBackend(store)


class _Reached:
    """The app: counts the requests it was handed with an identity, does nothing else."""

    def __init__(self) -> None:
        self.admitted = 0

    async def asgi(self, scope: Any, receive: Any, send: Any) -> None:
        self.admitted += "bearerguard" in scope

    def wsgi(self, environ: Any, start_response: Any) -> list[bytes]:
        self.admitted += "bearerguard.identity" in environ
        return []


Call = tuple[bool, Callable[[], Any]]


def _calls(pkg: ModuleType, token: str, reached: _Reached) -> tuple[dict[str, Call], list[Any]]:
    """kind -> (is_async, one request) for `pkg`, and the middlewares to close."""
    # Long cache and touch times: the hits stay hits, with no refresh, for the whole run.
    opts = {"api": "dns", "cache_ttl": 3600.0, "touch_interval": 3600.0}
    scope, environ = asgi_scope(token), wsgi_environ(token)
    out: dict[str, Call] = {}
    made = []
    for kind in KINDS:
        if kind.startswith("asgi"):
            mw = pkg.BearerGuardMiddleware(reached.asgi, backend=_backend(pkg, token), **opts)
        else:
            mw = pkg.WSGIBearerGuard(reached.wsgi, backend=_backend(pkg, token), **opts)
        made.append(mw)
        clear = mw.guard.cache.clear if kind.endswith("miss") else _nothing
        out[kind] = _one(mw, kind.startswith("asgi"), clear, scope, environ)
    return out, made


def _nothing() -> None:
    return None


def _one(mw: Any, is_async: bool, clear: Callable[[], None], scope: Any, environ: Any) -> Call:
    if is_async:

        async def acall() -> None:
            clear()
            await mw(scope.copy(), receive, no_send)

        return True, acall

    def scall() -> None:
        clear()
        mw(environ.copy(), no_start_response)

    return False, scall


async def _batch(is_async: bool, call: Callable[[], Any], n: int) -> float:
    t0 = time.thread_time_ns()
    if is_async:
        for _ in range(n):
            await call()
    else:
        for _ in range(n):
            call()
    return (time.thread_time_ns() - t0) / n / 1000


async def measure(
    sides: dict[str, ModuleType], rounds: int = 100, calls: int = 200
) -> dict[str, Any]:
    """µs of work per request over the app alone, for each side and kind, interleaved.

    `sides` maps a label to a package (`bearerguard`, or one from `load`). Every call is
    checked to reach the app with an identity.
    """
    token = bearerguard.tokens.generate()
    reached = _Reached()
    variants: dict[str, Call] = {}
    closers: list[Any] = []
    for label, pkg in sides.items():
        calls_of, made = _calls(pkg, token, reached)
        closers += made
        variants.update({f"{label}:{kind}": call for kind, call in calls_of.items()})
    scope, environ = asgi_scope(token), wsgi_environ(token)

    async def app_alone() -> None:
        await reached.asgi(scope.copy(), receive, no_send)

    def wapp_alone() -> None:
        reached.wsgi(environ.copy(), no_start_response)

    bare: dict[str, Call] = {"asgi": (True, app_alone), "wsgi": (False, wapp_alone)}
    everything = {**variants, **{f"app:{face}": call for face, call in bare.items()}}
    for is_async, call in variants.values():  # warm up; the hits fill their caches
        await _batch(is_async, call, 3)
    reached.admitted = 0
    samples: dict[str, list[float]] = {name: [] for name in everything}
    order = list(everything)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            samples[name].append(await _batch(*everything[name], calls))
    for mw in closers:
        mw.close()
    expected = rounds * calls * len(variants)
    if reached.admitted != expected:
        raise RuntimeError(f"bench.ab: {reached.admitted} of {expected} requests admitted")
    return _summary(sides, samples, rounds, calls)


def _summary(
    sides: dict[str, ModuleType], samples: dict[str, list[float]], rounds: int, calls: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "calls": calls, "quantile": QUANTILE}
    work: dict[str, dict[str, list[float]]] = {}
    for label in sides:
        work[label] = {}
        for kind in KINDS:
            app = samples[f"app:{kind[:4]}"]
            mine = samples[f"{label}:{kind}"]
            work[label][kind] = [m - a for m, a in zip(mine, app, strict=True)]
        out[label] = {
            "package": sides[label].__name__,
            **{
                kind: {
                    "median_us": round(statistics.median(values), 3),
                    "low_us": round(quantile(values, QUANTILE), 3),
                }
                for kind, values in work[label].items()
            },
        }
    labels = list(sides)
    if len(labels) == 2:
        new, old = labels
        out["ratio"] = {}
        out["rounds_faster"] = {}
        for kind in KINDS:
            a, b = work[new][kind], work[old][kind]
            out["ratio"][kind] = round(statistics.median(a) / statistics.median(b), 3)
            faster = sum(x < y for x, y in zip(a, b, strict=True))
            out["rounds_faster"][kind] = round(faster / len(a), 3)
    return out


def table(result: dict[str, Any], labels: list[str]) -> str:
    """The result as lines of text: µs per request (median / low) and the ratio."""
    lines = [f"{'':10}" + "".join(f"{kind:>20}" for kind in KINDS)]
    for label in labels:
        cells = "".join(
            f"{result[label][k]['median_us']:>11.2f} / {result[label][k]['low_us']:<6.2f}"
            for k in KINDS
        )
        lines.append(f"{label:10}{cells}")
    if "ratio" in result:
        lines.append(f"{'ratio':10}" + "".join(f"{result['ratio'][k]:>20.3f}" for k in KINDS))
        lines.append(
            f"{'faster':10}" + "".join(f"{result['rounds_faster'][k]:>20.0%}" for k in KINDS)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    p.add_argument("rev", nargs="?", default="HEAD", help="the revision to compare against")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--calls", type=int, default=200, help="requests per variant per round")
    args = p.parse_args(argv)
    sides = {"tree": bearerguard, args.rev: load(args.rev)}
    result = asyncio.run(measure(sides, args.rounds, args.calls))
    print(table(result, list(sides)), file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
