"""Where the cached path's time goes: cProfile plus step-by-step timings.

cProfile inflates small functions, so next to it each step of the cached path is
timed on its own (the real bearerguard functions, called as the middleware calls
them), per request, without a profiler.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

from bench import apps, plumbing

SRC = os.sep + os.path.join("src", "bearerguard") + os.sep


def _where(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if SRC in filename:
        short = "bearerguard/" + filename.split(SRC, 1)[1]
    elif "site-packages" in filename:
        short = filename.split("site-packages" + os.sep, 1)[1]
    elif filename == "~":
        short = "~"
    else:
        short = os.path.basename(filename)
    return f"{short}:{line}({func})"


def profile_rows(prof: cProfile.Profile | pstats.Stats, n_calls: int) -> list[dict[str, Any]]:
    """One row per profiled function, times per request (`n_calls` requests)."""
    stats = prof if isinstance(prof, pstats.Stats) else pstats.Stats(prof)
    return [
        {
            "where": _where(key),
            "ours": SRC in key[0],
            "calls_per_request": nc / n_calls,
            "tottime_us": tt / n_calls * 1e6,
            "cumtime_us": ct / n_calls * 1e6,
        }
        for key, (_cc, nc, tt, ct, _callers) in stats.stats.items()  # type: ignore[attr-defined]
    ]


def _top(prof: cProfile.Profile, n_calls: int, limit: int = 14) -> list[dict[str, Any]]:
    rows = profile_rows(prof, n_calls)
    rows.sort(key=lambda r: r["tottime_us"], reverse=True)
    ours = [r for r in rows if r["ours"]]
    ours.sort(key=lambda r: r["cumtime_us"], reverse=True)
    return rows[:limit] + [dict(r, cumulative_view=True) for r in ours[:limit]]


def _timeit(fn: Callable[[], Any], number: int = 20_000, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / number / 1000)
    return best


async def _atimeit(fn: Callable[[], Any], number: int = 20_000, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(number):
            await fn()
        best = min(best, (time.perf_counter_ns() - t0) / number / 1000)
    return best


def _drive(gen: Any) -> Any:
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("bench: cached path asked for a lookup")


async def steps(env: plumbing.Env) -> dict[str, float | str]:
    """Per-request µs of each step of bearerguard's cached path (best of 5).

    Internal steps are looked up by name and skipped ("n/a") when the core changed
    shape; the whole-call rows always run.
    """
    import hashlib

    from bearerguard import BearerGuardMiddleware, WSGIBearerGuard
    from bearerguard.asgi import _scan as scan
    from bearerguard.flow import Allow, RequestFacts

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    # Long cache and touch times: each step runs 100,000 times on a loaded machine, and
    # the steps must stay on the cached path throughout (refreshes land only between
    # the bench's batches, which this loop has none of).
    opts: dict[str, Any] = {"api": "dns", "cache_ttl": 3600.0, "touch_interval": 3600.0}
    mw = BearerGuardMiddleware(app, backend=apps._memory_backend(env.token), **opts)
    guard: Any = mw.guard
    scope = plumbing.asgi_scope(env.token)
    assert isinstance(await mw.decide(dict(scope)), Allow)
    header = "Bearer " + env.token
    auth_bytes = header.encode()
    facts = RequestFacts("/whoami", (header,), (), "127.0.0.1", ())
    raw_key = hashlib.sha256(env.token.encode()).digest()
    environ = plumbing.wsgi_environ(env.token)
    wmw = WSGIBearerGuard(lambda e, s: [], backend=apps._memory_backend(env.token), **opts)
    assert isinstance(wmw.decide(dict(environ)), Allow)

    def headers_loop() -> None:
        scan(scope["headers"])

    def set_scope() -> None:
        s: dict[str, Any] = {}
        s["bearerguard"] = s["user"] = s["auth"] = facts

    def full_flow() -> Callable[[], Any]:
        return lambda: _drive(guard.authenticate(facts))

    def extract() -> Callable[[], Any]:
        from bearerguard.credentials import extract_token

        return lambda: extract_token((header,), ())

    def decide_step() -> Callable[[], Any]:
        from bearerguard.policy import decide

        entry = _cache_entry()
        now = time.time()
        return lambda: decide(entry.info, "127.0.0.1", "dns", now)

    def admit_step() -> Callable[[], Any]:
        from bearerguard.policy import admit

        entry = _cache_entry()
        now = time.time()
        return lambda: admit(entry.info, "127.0.0.1", "dns", now, True, None, False)

    def _cache_entry() -> Any:
        entry, _ = guard.cache.get(raw_key)
        if entry is None:
            raise LookupError("no cache entry under the raw digest")
        return entry

    def cache_get() -> Callable[[], Any]:
        _cache_entry()
        return lambda: guard.cache.get(raw_key)

    def fp() -> Callable[[], Any]:
        from bearerguard.tokens import fingerprint

        return lambda: fingerprint(raw_key)

    optional: list[tuple[str, Callable[[], Callable[[], Any]]]] = [
        (
            "core: guard.cached_identity(auth, peer) (fast path)",
            lambda: lambda: guard.cached_identity(auth_bytes, "127.0.0.1", False),
        ),
        ("core: guard.authenticate(facts) driven to the end (full flow)", full_flow),
        ("core: extract_token (full flow)", extract),
        ("core: policy.decide (full flow)", decide_step),
        ("core: policy.admit (both paths: the rules alone)", admit_step),
        ("core: cache.get(key)", cache_get),
        ("core: fingerprint(key)", fp),
    ]
    out: dict[str, float | str] = {
        "asgi: BearerGuardMiddleware.__call__ (whole, app is a no-op)": await _atimeit(
            lambda: mw(dict(scope), plumbing._receive, plumbing._send)
        ),
        "asgi: mw.decide(scope) (full flow, used on refresh/miss)": await _atimeit(
            lambda: mw.decide(dict(scope))
        ),
        "wsgi: WSGIBearerGuard.__call__ (whole, app is a no-op)": _timeit(
            lambda: wmw(dict(environ), plumbing._start_response)
        ),
        "wsgi: mw.decide(environ) (full flow)": _timeit(lambda: wmw.decide(dict(environ))),
        "asgi: _scan(headers), the full flow's header pass": _timeit(headers_loop),
        "asgi: scope[...] = identity (3 keys)": _timeit(set_scope),
        "sha256(token).digest()": _timeit(lambda: hashlib.sha256(auth_bytes[7:]).digest()),
        "sha256(token).hexdigest()": _timeit(lambda: hashlib.sha256(auth_bytes[7:]).hexdigest()),
        "clock(): time.time()": _timeit(time.time),
        "dict(scope) copy (bench harness, in every variant)": _timeit(lambda: dict(scope)),
    }
    for label, make in optional:
        try:
            fn = make()
            fn()
            out[label] = _timeit(fn)
        except Exception as exc:
            out[label] = f"n/a ({type(exc).__name__})"
    wmw.close()
    mw.close()
    return out


async def profile(env: plumbing.Env, n: int = 20_000) -> dict[str, Any]:
    """cProfile the cached ASGI and WSGI variants over `n` requests each."""
    out: dict[str, Any] = {"requests": n}
    for name in ("bg_asgi", "bg_wsgi"):
        build = next(b for b in plumbing.BUILDERS if b[0] == name)
        v = plumbing.Variant(*build[:5])
        v = await build[5](env, v)
        assert v.call is not None
        call = v.call
        for _ in range(100):
            r = call()
            if asyncio.iscoroutine(r):
                await r
        prof = cProfile.Profile()
        if v.is_async:

            async def loop(call: Any = call) -> None:
                for _ in range(n):
                    await call()

            prof.enable()
            await loop()
            prof.disable()
        else:
            prof.enable()
            for _ in range(n):
                call()
            prof.disable()
        out[name] = _top(prof, n)
        await apps.close_all([v])
    out["steps_us"] = await steps(env)
    return out
