"""Faults with real sockets on 127.0.0.1, through a real Starlette app and a Flask app.

The introspection endpoint is `ScriptedServer` (raw sockets, counting connections and
requests on the server side). Each fault must end in 503 + Retry-After within the
backend's budget, never a 500 and never an allow; the service coming back must be
noticed; the circuit breaker must fail fast without touching the server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from introspection_support import (
    Harness,
    ScriptedServer,
    Tokens,
    new_token,
    refused_url,
)

from bearerguard.backends import IntrospectionBackend
from bearerguard.errors import BackendUnavailable
from helpers import FakeClock

BUDGET = 1.0
SLACK = 3.0  # generous: a loaded 2-core machine
FAST = {"connect_timeout": 0.5, "read_timeout": 0.5, "budget": BUDGET, "breaker_threshold": 100}


def valid(tokens: Tokens) -> str:
    return tokens.add(new_token(), client_id="key_a", scope="dns", ip="127.0.0.1", ttl=300)


def assert_unavailable(r: object) -> None:
    status = r.status_code  # type: ignore[attr-defined]
    headers = r.headers  # type: ignore[attr-defined]
    assert status == 503
    assert int(headers["retry-after"]) > 0
    assert 'error="temporarily_unavailable"' in headers["www-authenticate"]
    assert r.json()["error"] == "temporarily_unavailable"  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", ["500", "garbage", "ctype", "wrongtype", "huge", "hang", "slow"])
def test_faulty_answer_is_503_within_budget(
    fault: str,
    scripted: ScriptedServer,
    tokens: Tokens,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    scripted.mode = fault
    scripted.delay = 5.0  # "slow": answers long after the read timeout
    h = make_harness(make_backend(scripted.url, **FAST), backend_timeout=3.0)
    start = time.monotonic()
    r = h.get("/whoami", valid(tokens))
    elapsed = time.monotonic() - start
    assert_unavailable(r)
    assert elapsed <= BUDGET + SLACK
    assert scripted.requests == 1  # only connect failures are retried


def test_connection_refused_is_503_within_budget(
    make_backend: Callable[..., IntrospectionBackend], make_harness: Callable[..., Harness]
) -> None:
    h = make_harness(make_backend(refused_url(), **FAST), backend_timeout=3.0)
    start = time.monotonic()
    r = h.get("/whoami", new_token())
    assert_unavailable(r)
    assert time.monotonic() - start <= BUDGET + SLACK


def test_service_stopped_then_back(
    scripted: ScriptedServer,
    tokens: Tokens,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(make_backend(scripted.url, **FAST), backend_timeout=3.0)
    assert h.get("/whoami", valid(tokens)).status_code == 200
    scripted.stop()
    tok = valid(tokens)
    assert_unavailable(h.get("/whoami", tok))
    scripted.start()
    assert h.get("/whoami", tok).status_code == 200
    assert h.get("/whoami", new_token()).status_code == 401


def test_connect_failures_are_retried_until_the_service_listens(
    scripted: ScriptedServer,
    tokens: Tokens,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    scripted.stop()
    backend = make_backend(scripted.url, retries=50, budget=10.0, breaker_threshold=100)
    h = make_harness(backend, backend_timeout=15.0)
    tok = valid(tokens)
    timer = threading.Timer(0.2, scripted.start)
    timer.start()
    try:
        r = h.get("/whoami", tok)
    finally:
        timer.join()
    assert r.status_code == 200
    assert scripted.requests == 1


def test_stale_keepalive_connection_is_retried_once(
    scripted: ScriptedServer,
    tokens: Tokens,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    # The server drops the second request on a connection unanswered: what a client
    # sees when the server's keep-alive timeout closes the socket as the request goes out.
    scripted.mode = "drop_reused"
    h = make_harness(make_backend(scripted.url, **FAST))
    assert h.get("/whoami", valid(tokens)).status_code == 200
    assert h.get("/whoami", valid(tokens)).status_code == 200
    assert scripted.connections == 2
    assert scripted.requests == 3  # one on the reused connection, one retry on a new one


def test_keepalive_connection_is_reused(
    scripted: ScriptedServer,
    tokens: Tokens,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(make_backend(scripted.url, **FAST))
    for _ in range(5):
        assert h.get("/whoami", valid(tokens)).status_code == 200
    assert scripted.requests == 5
    assert scripted.connections == 1


def test_breaker_opens_fails_fast_and_half_opens(
    scripted: ScriptedServer,
    tokens: Tokens,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    scripted.mode = "500"
    # The breaker's clock is held still, so "open" lasts exactly as long as the test
    # says, however slowly a loaded machine gets through the requests.
    clock = FakeClock(1000.0)
    backend = make_backend(scripted.url, breaker_threshold=3, breaker_reset=1.0, clock=clock)
    h = make_harness(backend)
    for _ in range(3):
        assert_unavailable(h.get("/whoami", valid(tokens)))
    assert scripted.requests == 3
    assert backend.breaker.state == "open"
    conns = scripted.connections

    # open: fail fast, the server sees nothing
    for _ in range(10):
        assert_unavailable(h.get("/whoami", valid(tokens)))
    assert scripted.requests == 3
    assert scripted.connections == conns

    # half-open once the interval has passed: one probe; it fails, so it opens again
    clock.advance(0.99)
    assert backend.breaker.state == "open"
    clock.advance(0.01)
    assert backend.breaker.state == "half_open"
    assert_unavailable(h.get("/whoami", valid(tokens)))
    assert scripted.requests == 4
    assert backend.breaker.state == "open"
    assert_unavailable(h.get("/whoami", valid(tokens)))
    assert scripted.requests == 4

    # the service recovers: the next probe closes the breaker
    scripted.mode = "ok"
    clock.advance(1.0)
    assert backend.breaker.state == "half_open"
    tok = valid(tokens)
    assert h.get("/whoami", tok).status_code == 200
    assert backend.breaker.state == "closed"
    assert h.get("/whoami", valid(tokens)).status_code == 200
    assert scripted.requests == 6


def test_in_flight_calls_are_bounded(
    scripted: ScriptedServer, tokens: Tokens, make_backend: Callable[..., IntrospectionBackend]
) -> None:
    scripted.mode = "slow"
    scripted.delay = 0.5
    backend = make_backend(
        scripted.url, max_connections=2, connect_timeout=5, read_timeout=5, budget=10
    )

    async def main() -> list[object]:
        try:
            return await asyncio.gather(
                *(backend.alookup(valid(tokens)) for _ in range(6)), return_exceptions=True
            )
        finally:
            await backend.aclose()

    results = asyncio.run(main())
    assert scripted.max_active == 2
    assert scripted.connections == 2
    assert all(not isinstance(r, BaseException) and r is not None for r in results)


def test_pool_exhaustion_is_unavailable_not_a_hang(
    scripted: ScriptedServer, tokens: Tokens, make_backend: Callable[..., IntrospectionBackend]
) -> None:
    scripted.mode = "hang"
    # The pool wait (the connect timeout) ends well before the holder's read timeout:
    # with both at 0.5 s, a waiter sometimes got the slot the holder had just given up
    # and opened a second connection while the hung one was still being served.
    timeouts = {**FAST, "connect_timeout": 0.3, "read_timeout": 0.8}
    backend = make_backend(scripted.url, max_connections=1, **timeouts)
    results: list[object] = []

    def call() -> None:
        try:
            results.append(backend.lookup(valid(tokens)))
        except BackendUnavailable as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    backend.close()
    assert len(results) == 3
    assert all(isinstance(r, BackendUnavailable) for r in results)
    assert scripted.max_active == 1
