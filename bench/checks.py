"""Counted facts next to the timings: single-flight and store round trips."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import httpx

from bench import apps, plumbing


def _intro_calls(env: plumbing.Env) -> int:
    assert env.intro_url is not None
    stats = env.intro_url.rsplit("/", 1)[0] + "/stats"
    with httpx.Client(trust_env=False, timeout=5.0) as c:
        return int(c.get(stats).json()["calls"])


async def single_flight(env: plumbing.Env, n: int = 50) -> dict[str, Any]:
    """N concurrent requests with one uncached token: how many introspection calls?"""
    from starlette.middleware import Middleware

    from bearerguard import BearerGuardMiddleware, WSGIBearerGuard

    out: dict[str, Any] = {"concurrent_requests": n}
    if env.intro_url is None:
        return {"unavailable": env.intro_error or "no introspection server"}
    backend = apps._intro_backend(env)
    try:
        token = env.intro_token()
        mw = Middleware(BearerGuardMiddleware, backend=backend, api="dns")
        app = plumbing.starlette_app([mw])
        _, check = plumbing.asgi_call(app, token)
        before = _intro_calls(env)
        results = await asyncio.gather(*(check() for _ in range(n)))
        out["asgi_backend_calls"] = _intro_calls(env) - before
        out["asgi_statuses"] = sorted({s for s, _ in results})
    finally:
        await backend.aclose()

    backend = apps._intro_backend(env)
    try:
        token = env.intro_token()
        flask = plumbing.flask_app()
        mw = WSGIBearerGuard(flask.wsgi_app, backend=backend, api="dns")
        flask.wsgi_app = mw
        _, scheck = plumbing.wsgi_call(flask, token)
        threads_n = 8
        barrier = threading.Barrier(threads_n)
        statuses: list[int] = []

        def worker() -> None:
            barrier.wait(10)
            statuses.append(scheck()[0])

        before = _intro_calls(env)
        threads = [threading.Thread(target=worker) for _ in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        out["wsgi_threads"] = threads_n
        out["wsgi_backend_calls"] = _intro_calls(env) - before
        out["wsgi_statuses"] = sorted(set(statuses))
        mw.close()
    finally:
        backend.close()
    return out


def redis_round_trips(env: plumbing.Env, n: int = 200) -> dict[str, Any]:
    """Commands Redis executes per cold lookup (INFO commandstats before/after)."""
    import redis

    from bearerguard import StoreBackend

    if env.redis_url is None:
        return {"unavailable": env.redis_error or "no redis-server"}
    backend = apps._redis_backend(env)
    assert isinstance(backend, StoreBackend)
    client = redis.Redis.from_url(env.redis_url)

    def counts() -> dict[str, int]:
        stats = client.info("commandstats")
        return {k: int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}

    from redis.connection import Connection

    from bearerguard.stores.redis.lean import _Socket

    # Sends on either client: redis-py's, and the lean one the sync face uses on one Redis.
    sent = 0
    original = Connection.send_packed_command
    original_lean = _Socket.call

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        original(self, command, check_health)

    def counting_lean(self: Any, packed: bytes, timeout: float) -> Any:
        nonlocal sent
        sent += 1
        return original_lean(self, packed, timeout)

    try:
        backend.lookup(env.token)  # load the script once
        before = counts()
        Connection.send_packed_command = counting  # type: ignore[method-assign]
        _Socket.call = counting_lean  # type: ignore[method-assign]
        try:
            for _ in range(n):
                assert backend.lookup(env.token) is not None
        finally:
            Connection.send_packed_command = original  # type: ignore[method-assign]
            _Socket.call = original_lean  # type: ignore[method-assign]
        after = counts()
        delta = {k[8:]: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        return {
            "lookups": n,
            "round_trips_per_lookup": sent / n,
            "server_commands_per_lookup": {k: v / n for k, v in sorted(delta.items())},
            "note": "commands run inside a Lua script count in commandstats, not as round trips",
        }
    finally:
        client.close()
        backend.close()


_literals = re.compile(r"'[^']*'|\b\d+(?:\.\d+)?\b")


def sqlite_statements(env: plumbing.Env, n: int = 50) -> dict[str, Any]:
    """SQL statements per cold lookup on the SQLite store (sqlite3 trace callback)."""
    from bearerguard import StoreBackend

    backend = apps._sqlite_backend(env)
    assert isinstance(backend, StoreBackend)
    store: Any = backend.store
    seen: list[str] = []
    try:
        conn = store._conn()  # the bench peeks at this thread's connection
        backend.lookup(env.token)
        conn.set_trace_callback(seen.append)
        for _ in range(n):
            assert backend.lookup(env.token) is not None
        conn.set_trace_callback(None)
        distinct = sorted({_literals.sub("?", " ".join(s.split())) for s in seen})
        return {"lookups": n, "statements_per_lookup": len(seen) / n, "statements": distinct}
    finally:
        backend.close()
