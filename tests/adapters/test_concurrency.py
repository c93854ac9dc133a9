"""G4: concurrent requests with one uncached token make exactly one backend call.

G4 is defined in docs/design.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from adapter_harness import AppCalls, flask_app, starlette_app
from bearerguard import BearerGuardMiddleware, StoreBackend, TokenInfo, WSGIBearerGuard
from bearerguard.stores import MemoryStore
from helpers import issue


class SlowCounting:
    """A backend with both faces that counts calls and takes a while to answer."""

    def __init__(self, store: MemoryStore, delay: float = 0.2) -> None:
        self.inner = StoreBackend(store)
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def lookup(self, token: str) -> TokenInfo | None:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.inner.lookup(token)

    async def alookup(self, token: str) -> TokenInfo | None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.inner.lookup(token)


class SyncOnly:
    """`SlowCounting` with its sync face only: the ASGI middleware runs it in a thread."""

    def __init__(self, inner: SlowCounting) -> None:
        self.inner = inner

    def lookup(self, token: str) -> TokenInfo | None:
        return self.inner.lookup(token)


async def whoami_all(mw: BearerGuardMiddleware, tokens: list[str]) -> list[int]:
    """GET /whoami once per token in `tokens`, all at once; the statuses in order."""
    transport = httpx.ASGITransport(app=mw, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        rs = await asyncio.gather(
            *(c.get("/whoami", headers={"Authorization": f"Bearer {t}"}) for t in tokens)
        )
    return [r.status_code for r in rs]


@pytest.mark.parametrize(
    ("sync_only", "n", "options"),
    [(False, 200, {"max_in_flight": 4}), (True, 50, {})],
    ids=["async face, 200 requests", "sync-only backend in a worker thread, 50 requests"],
)
def test_concurrent_asgi_requests_make_one_call(
    sync_only: bool, n: int, options: dict[str, Any]
) -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",))
    counting = SlowCounting(store)
    backend = SyncOnly(counting) if sync_only else counting
    calls = AppCalls()
    mw = BearerGuardMiddleware(starlette_app(calls), backend=backend, **options)
    statuses = asyncio.run(whoami_all(mw, [tok.token] * n))
    mw.close()
    assert statuses == [200] * n
    assert counting.calls == 1
    assert calls.count == n


def test_50_threads_make_one_call() -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",))
    backend = SlowCounting(store)
    calls = AppCalls()
    app = flask_app(calls)
    mw = WSGIBearerGuard(app.wsgi_app, backend=backend, max_in_flight=4)
    app.wsgi_app = mw  # type: ignore[method-assign]
    barrier = threading.Barrier(50)

    def one(_: int) -> int:
        transport = httpx.WSGITransport(app=app, remote_addr="127.0.0.1")
        with httpx.Client(transport=transport, base_url="http://t") as c:
            barrier.wait()
            return c.get("/whoami", headers={"Authorization": f"Bearer {tok.token}"}).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(one, range(50)))
    mw.close()
    assert statuses == [200] * 50
    assert backend.calls == 1
    assert calls.count == 50


def test_different_tokens_are_not_merged() -> None:
    store = MemoryStore()
    toks = [issue(store, ("dns",)) for _ in range(3)]
    backend = SlowCounting(store, delay=0.05)
    mw = BearerGuardMiddleware(starlette_app(AppCalls()), backend=backend)
    assert asyncio.run(whoami_all(mw, [t.token for t in toks for _ in range(10)])) == [200] * 30
    mw.close()
    assert backend.calls == 3


def test_follower_takes_over_when_the_leader_goes_away() -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",))
    backend = SlowCounting(store, delay=0.2)
    calls = AppCalls()
    mw = BearerGuardMiddleware(starlette_app(calls), backend=backend)

    async def main() -> int:
        transport = httpx.ASGITransport(app=mw, client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            headers = {"Authorization": f"Bearer {tok.token}"}
            leader = asyncio.ensure_future(c.get("/whoami", headers=headers))
            await asyncio.sleep(0.05)
            follower = asyncio.ensure_future(c.get("/whoami", headers=headers))
            await asyncio.sleep(0.05)
            leader.cancel()  # the client went away mid-lookup
            r = await follower
            assert leader.cancelled()
            return r.status_code

    assert asyncio.run(main()) == 200
    mw.close()
    assert backend.calls == 2  # the follower looked the token up itself
    assert calls.count == 1


def test_self_timed_backend_runs_in_the_request_thread() -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",))
    threads: list[str] = []

    class SelfTimed(StoreBackend):
        def lookup(self, token: str) -> TokenInfo | None:
            threads.append(threading.current_thread().name)
            return super().lookup(token)

    app = flask_app(AppCalls())
    mw = WSGIBearerGuard(app.wsgi_app, backend=SelfTimed(store))
    app.wsgi_app = mw  # type: ignore[method-assign]
    transport = httpx.WSGITransport(app=app, remote_addr="127.0.0.1")
    with httpx.Client(transport=transport, base_url="http://t") as c:
        r = c.get("/whoami", headers={"Authorization": f"Bearer {tok.token}"})
    mw.close()
    assert r.status_code == 200
    assert threads == [threading.current_thread().name]


class SelfTimedSlow(SlowCounting):
    """`SlowCounting` that says it bounds its own calls: WSGI calls it in the leader's
    own thread, and the leader lands the flight itself (`_edge.SyncCaller`)."""

    self_timed = True

    def __init__(self, store: MemoryStore, delay: float = 0.2, fail: bool = False) -> None:
        super().__init__(store, delay)
        self.fail = fail

    def lookup(self, token: str) -> TokenInfo | None:
        answer = super().lookup(token)
        if self.fail:
            raise RuntimeError("the store broke")
        return answer


def _threads_get(app: Any, token: str, n: int) -> list[int]:
    barrier = threading.Barrier(n)

    def one(_: int) -> int:
        transport = httpx.WSGITransport(app=app, remote_addr="127.0.0.1")
        with httpx.Client(transport=transport, base_url="http://t") as c:
            barrier.wait()
            return c.get("/whoami", headers={"Authorization": f"Bearer {token}"}).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_50_threads_make_one_call_to_a_self_timed_backend() -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",))
    backend = SelfTimedSlow(store)
    calls = AppCalls()
    app = flask_app(calls)
    mw = WSGIBearerGuard(app.wsgi_app, backend=backend, max_in_flight=4)
    app.wsgi_app = mw  # type: ignore[method-assign]
    statuses = _threads_get(app, tok.token, 50)
    mw.close()
    assert statuses == [200] * 50
    assert backend.calls == 1
    assert calls.count == 50


def test_followers_of_a_failing_self_timed_leader_are_refused_at_once() -> None:
    """The leader's failure reaches the requests waiting on it: 503 now, not after the
    30 s backend timeout, and no request gets through."""
    store = MemoryStore()
    tok = issue(store, ("dns",))
    backend = SelfTimedSlow(store, fail=True)
    calls = AppCalls()
    app = flask_app(calls)
    mw = WSGIBearerGuard(app.wsgi_app, backend=backend, backend_timeout=30)
    app.wsgi_app = mw  # type: ignore[method-assign]
    started = time.monotonic()
    statuses = _threads_get(app, tok.token, 20)
    elapsed = time.monotonic() - started
    mw.close()
    assert statuses == [503] * 20
    assert elapsed < 10, elapsed
    assert calls.count == 0
    assert 1 <= backend.calls < 20  # followers shared the leader's (failed) call
