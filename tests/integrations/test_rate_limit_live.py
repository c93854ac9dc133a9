"""``rate_limit`` across real resource-server processes: uvicorn (ASGI) and gunicorn
(WSGI) on one Redis enforce one limit per API key; over SQLite each process counts on
its own; the Lua script and the in-process GCRA agree; a failing Redis degrades to
counting in the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bearerguard.ratelimit import RateLimit, RateLimiter
from bearerguard.stores import SQLiteStore
from bearerguard.stores.redis import RedisStore
from helpers import FakeClock, issue
from integration_support import ExampleServer, RawWebSocket, bearer, free_port, served_asgi

TESTS = Path(__file__).resolve().parents[1]
LIMIT = "0.05,4"  # a burst of 4, then one request every 20 s: no timing races under load


def uvicorn_server(store_url: str) -> ExampleServer:
    port = free_port()
    # fmt: off
    cmd = [
        sys.executable, "-m", "uvicorn", "ratelimit_app:make_asgi", "--factory",
        "--app-dir", str(TESTS), "--host", "127.0.0.1", "--port", str(port),
        "--no-proxy-headers", "--no-access-log", "--lifespan", "off",
    ]
    # fmt: on
    return ExampleServer(cmd, port, {"BEARERGUARD_STORE": store_url, "RATE_LIMIT": LIMIT})


def gunicorn_server(store_url: str) -> ExampleServer:
    port = free_port()
    # fmt: off
    cmd = [
        sys.executable, "-m", "gunicorn", "--chdir", str(TESTS),
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
        "--forwarded-allow-ips", "", "--graceful-timeout", "5",
        "ratelimit_app:make_wsgi()",
    ]
    # fmt: on
    return ExampleServer(cmd, port, {"BEARERGUARD_STORE": store_url, "RATE_LIMIT": LIMIT})


@contextlib.contextmanager
def two_servers(url: str) -> Iterator[tuple[ExampleServer, ExampleServer]]:
    """uvicorn (ASGI) and gunicorn (WSGI), each its own process, over the store `url`."""
    servers: list[ExampleServer] = []
    try:
        servers.append(uvicorn_server(url))
        servers.append(gunicorn_server(url))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def get(server: ExampleServer, token: str) -> httpx.Response:
    return httpx.get(server.base_url + "/whoami", headers=bearer(token), timeout=10)


def check_429(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"] == "rate_limited"
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 20
    assert r.headers["ratelimit-policy"] == '"per-key";q=4;w=80'
    assert r.headers["ratelimit"] == f'"per-key";r=0;t={wait}'


def test_uvicorn_and_gunicorn_on_one_redis_enforce_one_limit(redis_store: RedisStore) -> None:
    first, second = issue(redis_store), issue(redis_store)  # type: ignore[arg-type]
    with two_servers(redis_store.url) as (asgi, wsgi):
        # The burst of 4, spread over both processes; each answer says what is left of it
        # (r) and when all of it is back (t: 20 s per request spent), counted in Redis.
        for i in range(4):
            r = get((asgi, wsgi)[i % 2], first.token)
            assert r.status_code == 200
            assert r.headers["ratelimit-policy"] == '"per-key";q=4;w=80'
            assert r.headers["ratelimit"] == f'"per-key";r={3 - i};t={20 * (i + 1)}'
        check_429(get(asgi, first.token))
        check_429(get(wsgi, first.token))
        # Another key is not held back, in either process.
        assert get(wsgi, second.token).status_code == 200
        assert get(asgi, second.token).json() == {"key_id": second.key_id}


def test_without_redis_each_process_counts_on_its_own(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "bearerguard.db")
    store = SQLiteStore(url)
    try:
        who = issue(store)  # type: ignore[arg-type]
    finally:
        store.close()
    with two_servers(url) as servers:
        for server in servers:
            assert [get(server, who.token).status_code for _ in range(4)] == [200] * 4
            check_429(get(server, who.token))


def test_the_lua_script_and_the_process_gcra_agree(redis_store: RedisStore) -> None:
    clock = FakeClock(now=1_000.0)
    limit = RateLimit(3, burst=5)
    shared = RateLimiter(limit, redis_store, clock=clock)
    local = RateLimiter(limit, clock=clock)
    steps = [0, 0, 0, 0, 0, 0, 0.1, 0.2, 0.34, 0, 0, 1.5, 0, 0, 0, 0, 0, 0.01, 3, 0]
    seen = []
    for step in steps:
        clock.advance(step)
        a, b = shared.check("key_x"), local.local("key_x")
        assert (a.allowed, a.remaining) == (b.allowed, b.remaining)
        assert a.retry_after == pytest.approx(b.retry_after, abs=0.002)
        seen.append(a.allowed)
    assert True in seen and False in seen

    async def async_face() -> bool:
        try:
            return (await shared.acheck("key_y")).allowed
        finally:
            await redis_store.aclose()

    assert asyncio.run(async_face())


def test_a_failing_redis_degrades_to_counting_in_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    limiter = RateLimiter(RateLimit(0.01, burst=2), dead)
    try:
        with caplog.at_level(logging.WARNING, logger="bearerguard"):
            assert [limiter.check("key_z").allowed for _ in range(3)] == [True, True, False]
    finally:
        dead.close()
    warnings = [r for r in caplog.records if "counting in this process" in r.getMessage()]
    assert len(warnings) == 1


def test_websockets_over_the_limit_are_refused_before_accept() -> None:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from bearerguard import BearerGuardMiddleware, StoreBackend
    from bearerguard.stores import MemoryStore

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.user.display_name)
        await websocket.close()

    store = MemoryStore()
    who = issue(store)
    app = BearerGuardMiddleware(
        Starlette(routes=[WebSocketRoute("/ws", ws)]),
        backend=StoreBackend(store),
        rate_limit=(0.01, 1),
    )
    with served_asgi(app) as port:
        with RawWebSocket(port, "/ws", bearer(who.token)) as sock:
            assert sock.status == 101
            assert sock.frame() == (0x1, who.key_id.encode())
        with RawWebSocket(port, "/ws", bearer(who.token)) as sock:
            assert sock.status == 429  # the denial response: no upgrade
