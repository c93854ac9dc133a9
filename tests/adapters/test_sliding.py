"""Sliding expiry through the cached middleware, with a fake clock (no sleeping)."""

from __future__ import annotations

from collections.abc import Callable

from adapter_harness import Harness
from bearerguard import StoreBackend
from bearerguard.stores import MemoryStore
from bearerguard.tokens import token_digest
from helpers import FakeClock, issue

Make = Callable[..., Harness]


def test_cache_hits_keep_the_token_alive_at_the_source(harness: Make, clock: FakeClock) -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",), ttl=30, now=clock.now)
    h = harness(StoreBackend(store, clock=clock), clock=clock, cache_ttl=10, touch_interval=5)
    headers = {"Authorization": f"Bearer {tok.token}"}
    digest = token_digest(tok.token)
    lookups = 0
    original = store.touch_token

    def counting(d: str, now: float, client_ip: str | None = None) -> object:
        nonlocal lookups
        lookups += 1
        return original(d, now, client_ip)

    store.touch_token = counting  # type: ignore[method-assign]
    # Use the token every 2 s for 10 minutes: 20 times its 30 s sliding TTL.
    for _ in range(300):
        r = h.get("/whoami", headers)
        assert r.status_code == 200, r.text
        h.settle()
        clock.advance(2)
    record = store.get_token(digest, clock.now)
    assert record is not None
    # The source saw a use at least every touch interval (plus one request gap).
    assert record.expires_at >= clock.now + 30 - 5 - 2 - 2
    # …and far fewer lookups than requests: hits were served from the cache.
    assert lookups <= 300 // 2


def test_idle_token_refused_within_ttl_plus_touch_interval(harness: Make, clock: FakeClock) -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",), ttl=30, now=clock.now)
    h = harness(StoreBackend(store, clock=clock), clock=clock, cache_ttl=10, touch_interval=5)
    headers = {"Authorization": f"Bearer {tok.token}"}
    for _ in range(10):
        assert h.get("/whoami", headers).status_code == 200
        h.settle()
        clock.advance(1)
    last_use = clock.now - 1
    # The uses slid the expiry at the source: without that the token would lapse 30 s
    # after issue, long before the idle deadline below, and the 401 would prove nothing.
    record = store.get_token(token_digest(tok.token), clock.now)
    assert record is not None
    assert record.expires_at >= last_use + 30 - 5
    # Idle from here on: by ttl + touch interval after the last use it must be refused.
    clock.advance(30 + 5 - 1)
    assert clock.now == last_use + 30 + 5
    assert h.get("/whoami", headers).status_code == 401


def test_idle_after_single_use(harness: Make, clock: FakeClock) -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",), ttl=30, now=clock.now)
    h = harness(StoreBackend(store, clock=clock), clock=clock, cache_ttl=10, touch_interval=5)
    headers = {"Authorization": f"Bearer {tok.token}"}
    assert h.get("/whoami", headers).status_code == 200
    clock.advance(29)
    assert h.get("/whoami", headers).status_code == 200
    h.settle()
    clock.advance(30 + 5)
    assert h.get("/whoami", headers).status_code == 401
