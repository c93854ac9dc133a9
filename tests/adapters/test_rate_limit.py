"""``rate_limit`` through both adapters, per process (a memory store): 429 with
``Retry-After`` and the RateLimit fields, the app not run; the fields on allowed answers
too; public paths and refused requests not counted; nothing added without the option."""

from __future__ import annotations

from collections.abc import Callable

from adapter_harness import Harness
from bearerguard import StoreBackend
from bearerguard.ratelimit import LimitedASGI, LimitedWSGI, RateLimit
from bearerguard.stores import MemoryStore
from helpers import issue
from integration_support import bearer


def test_each_key_gets_its_burst_then_429(harness: Callable[..., Harness]) -> None:
    store = MemoryStore()
    first, second = issue(store), issue(store)
    h = harness(StoreBackend(store), public_paths=["/health"], rate_limit=RateLimit(0.01, burst=3))
    assert h.middleware.limiter is not None and not h.middleware.limiter.shared
    allowed = [h.get("/whoami", bearer(first.token)) for _ in range(3)]
    assert [r.status_code for r in allowed] == [200, 200, 200]
    # An allowed answer carries the fields too: requests left, seconds until the burst
    # is whole again (100 s per request spent).
    assert [r.headers["ratelimit"] for r in allowed] == [
        '"per-key";r=2;t=100',
        '"per-key";r=1;t=200',
        '"per-key";r=0;t=300',
    ]
    assert {r.headers["ratelimit-policy"] for r in allowed} == {'"per-key";q=3;w=300'}
    ran = h.calls.count
    r = h.get("/whoami", bearer(first.token))
    assert r.status_code == 429
    assert h.calls.count == ran  # the app did not run
    assert r.json() == {
        "error": "rate_limited",
        "error_description": "Too many requests for this API key; retry in 100 s",
    }
    assert r.headers["retry-after"] == "100"
    assert r.headers["ratelimit-policy"] == '"per-key";q=3;w=300'
    assert r.headers["ratelimit"] == '"per-key";r=0;t=100'
    assert r.headers["cache-control"] == "no-store"
    # Another key, public paths and refused requests are not held back or counted.
    assert h.get("/whoami", bearer(second.token)).status_code == 200
    assert h.get("/health").status_code == 200
    assert h.get("/whoami", bearer(first.token), ip="192.0.2.9").status_code == 401


def test_without_the_option_nothing_is_wrapped(harness: Callable[..., Harness]) -> None:
    store = MemoryStore()
    who = issue(store)
    h = harness(StoreBackend(store))
    assert h.middleware.limiter is None
    assert not isinstance(h.middleware.app, (LimitedASGI, LimitedWSGI))
    for _ in range(20):
        r = h.get("/whoami", bearer(who.token))
        assert r.status_code == 200 and "ratelimit" not in r.headers
