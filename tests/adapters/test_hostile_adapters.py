"""Issue 12 (hostile traffic) through both adapters, over a real memory store.

The holder of a token connects from 127.0.0.2, the attacker from 127.0.0.3.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from adapter_harness import AppCalls, Harness, starlette_app
from bearerguard import BearerGuardMiddleware, StoreBackend
from bearerguard.stores import MemoryStore
from bearerguard.stores.base import new_token
from bearerguard.tokens import TokenInfo, token_digest, token_key
from helpers import FakeClock, issue

Make = Callable[..., Harness]
HOLDER = "127.0.0.2"
ATTACKER = "127.0.0.3"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Counting:
    """A StoreBackend that counts lookups and the addresses they came from."""

    def __init__(self, store: MemoryStore, clock: Any = None) -> None:
        self.inner = StoreBackend(store, clock=clock) if clock else StoreBackend(store)
        self.asked: list[str | None] = []
        self.token_format = self.inner.token_format
        self.self_timed = True

    def lookup(self, token: str, client_ip: str | None = None) -> TokenInfo | None:
        self.asked.append(client_ip)
        return self.inner.lookup(token, client_ip)


# -- H2: token format ------------------------------------------------------------------
def test_store_backend_refuses_malformed_tokens_without_a_lookup(harness: Make) -> None:
    store = MemoryStore()
    backend = Counting(store)
    h = harness(backend)
    good = new_token()
    bad_checksum = good[:-1] + ("1" if good[-1] == "0" else "0")  # never the real checksum
    junk = ["a" * 53, "bgt_" + "a" * 49, "/" * 4096, bad_checksum]
    for token in junk:
        r = h.get("/whoami", bearer(token))
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert backend.asked == []
    good = issue(store)
    assert h.get("/whoami", bearer(good.token)).status_code == 200
    assert backend.asked == ["127.0.0.1"]
    # Turned off explicitly, junk is looked up (and is unknown).
    h2 = harness(backend, token_format=None)
    assert h2.get("/whoami", bearer("a" * 53)).status_code == 401
    assert len(backend.asked) == 2


# -- H6: bad input is 4xx whatever the options -----------------------------------------
def test_query_tokens_with_many_fields_are_4xx_never_500(harness: Make) -> None:
    store = MemoryStore()
    good = issue(store)
    h = harness(StoreBackend(store), query_token=True)
    many = "&".join(f"f{i}=1" for i in range(500))
    assert h.get(f"/whoami?{many}&access_token={good.token}").status_code == 200
    r = h.get(f"/whoami?access_token={good.token}&{many}&access_token={good.token}")
    assert r.status_code == 400
    assert h.get(f"/whoami?{many}&access_token=").status_code == 400
    assert h.get(f"/whoami?{many}").status_code == 401


# -- H4: refused requests keep nothing alive --------------------------------------------
def test_refused_address_neither_extends_nor_delays_the_refresh(
    harness: Make, clock: FakeClock
) -> None:
    store = MemoryStore()
    tok = issue(store, ip=HOLDER, ttl=30, now=clock.now)
    digest = token_digest(tok.token)
    backend = Counting(store, clock)
    h = harness(backend, clock=clock, cache_ttl=10, touch_interval=5)
    assert h.get("/whoami", bearer(tok.token), ip=HOLDER).status_code == 200
    clock.advance(6)  # a refresh is due
    entry = h.guard.cache.peek(token_key(tok.token))
    due = entry.refresh_at
    for _ in range(50):
        assert h.get("/whoami", bearer(tok.token), ip=ATTACKER).status_code == 401
    h.settle()
    assert entry.refresh_at == due  # K: the refusals moved nothing
    assert backend.asked == [HOLDER]  # and asked nothing
    record = store.get_token(digest, clock.now)
    assert record is not None and record.expires_at == pytest.approx(clock.now - 6 + 30)
    # The holder's next request takes the refresh, which extends at the source.
    assert h.get("/whoami", bearer(tok.token), ip=HOLDER).status_code == 200
    h.settle()
    assert backend.asked == [HOLDER, HOLDER]
    record = store.get_token(digest, clock.now)
    assert record is not None and record.expires_at == pytest.approx(clock.now + 30)


def test_keep_alive_attack_lets_the_token_expire(harness: Make, clock: FakeClock) -> None:
    """C: a copied token sent from elsewhere, every second, after its holder stopped."""
    store = MemoryStore()
    tok = issue(store, ip=HOLDER, ttl=30, now=clock.now)
    backend = Counting(store, clock)
    h = harness(backend, clock=clock, cache_ttl=10, touch_interval=5)
    assert h.get("/whoami", bearer(tok.token), ip=HOLDER).status_code == 200
    last_use = clock.now
    for _ in range(60):
        clock.advance(1)
        assert h.get("/whoami", bearer(tok.token), ip=ATTACKER).status_code == 401
        h.settle()
    assert ATTACKER in backend.asked  # cache misses did go to the store...
    # ...and extended nothing: the token expired 30 s after its holder's last use.
    assert store.get_token(token_digest(tok.token), last_use + 30) is None
    assert h.get("/whoami", bearer(tok.token), ip=HOLDER).status_code == 401


def test_an_attacker_miss_makes_the_holders_next_hit_refresh(
    harness: Make, clock: FakeClock
) -> None:
    store = MemoryStore()
    tok = issue(store, ip=HOLDER, ttl=30, now=clock.now)
    backend = Counting(store, clock)
    h = harness(backend, clock=clock, cache_ttl=10, touch_interval=5)
    # The attacker's lookup fills the cache but counts as no use at the source...
    assert h.get("/whoami", bearer(tok.token), ip=ATTACKER).status_code == 401
    assert backend.asked == [ATTACKER]
    # ...so the holder's first hit refreshes at once, and its use counts.
    clock.advance(1)
    assert h.get("/whoami", bearer(tok.token), ip=HOLDER).status_code == 200
    h.settle()
    assert backend.asked == [ATTACKER, HOLDER]
    record = store.get_token(token_digest(tok.token), clock.now)
    assert record is not None and record.expires_at == pytest.approx(clock.now + 30)


# -- Q: tiny cache TTLs are never a 500 -------------------------------------------------
def test_tiny_cache_ttl_is_never_a_500(harness: Make) -> None:
    store = MemoryStore()
    good = issue(store)
    h = harness(StoreBackend(store), cache_ttl=1e-9)
    for _ in range(3):
        assert h.get("/whoami", bearer(good.token)).status_code == 200


# -- H5: log injection ---------------------------------------------------------------
def test_no_request_forges_a_log_line(harness: Make, caplog: pytest.LogCaptureFixture) -> None:
    h = harness(StoreBackend(MemoryStore()))
    with caplog.at_level(logging.INFO, logger="bearerguard"):
        for path in ("/who%0Aami", "/x%0D%0Aforged", "/x%E2%80%A8forged", "/x%1B%5B2J"):
            assert h.get(path, bearer(new_token())).status_code in (401, 404)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("bearerguard")]
    assert len(lines) == 4
    for line in lines:
        assert line.isprintable(), line


# -- H2 and H4 under concurrency (ASGI, async backend) ----------------------------------
class Gate:
    """A store backend whose lookups for tokens other than `free` wait for `open`."""

    self_timed = True

    def __init__(self, store: MemoryStore) -> None:
        self.inner = StoreBackend(store)
        self.open = asyncio.Event()
        self.free: set[str] = set()
        self.asked: list[tuple[str, str | None]] = []
        self.waiting = 0
        self.peak = 0

    async def alookup(self, token: str, client_ip: str | None = None) -> TokenInfo | None:
        self.asked.append((token, client_ip))
        if token not in self.free:
            self.waiting += 1
            self.peak = max(self.peak, self.waiting)
            try:
                await self.open.wait()
            finally:
                self.waiting -= 1
        return await self.inner.alookup(token, client_ip)


async def _get(app: Any, token: str, ip: str) -> int:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return (await c.get("/whoami", headers=bearer(token))).status_code


def test_a_spray_from_one_address_cannot_starve_the_holder() -> None:
    """G: 64 junk lookups in flight from one address; the holder's new token is 200."""
    store = MemoryStore()
    holder = issue(store, ip=HOLDER)
    backend = Gate(store)
    backend.free.add(holder.token)
    mw = BearerGuardMiddleware(starlette_app(AppCalls()), backend=backend, max_in_flight=16)

    async def main() -> tuple[list[int], int, int]:
        spray = [asyncio.ensure_future(_get(mw, new_token(), ATTACKER)) for _ in range(64)]
        await asyncio.sleep(0.05)
        held = backend.waiting
        status = await _get(mw, holder.token, HOLDER)
        backend.open.set()
        return [*await asyncio.gather(*spray)], held, status

    statuses, held, status = asyncio.run(main())
    mw.close()
    assert status == 200
    assert held == 8  # the attacker holds at most half the slots
    assert statuses.count(503) == 56 and statuses.count(401) == 8


def test_a_refresh_never_waits_behind_a_spray() -> None:
    store = MemoryStore()
    holder = issue(store, ip=HOLDER)
    backend = Gate(store)
    backend.free.add(holder.token)
    clock = FakeClock()
    backend.inner = StoreBackend(store, clock=clock)
    mw = BearerGuardMiddleware(
        starlette_app(AppCalls()), backend=backend, clock=clock, max_in_flight=16
    )

    async def main() -> None:
        assert await _get(mw, holder.token, HOLDER) == 200
        # Four addresses fill every request slot with lookups that never end.
        spray = [
            asyncio.ensure_future(_get(mw, new_token(), f"127.0.1.{i % 4}")) for i in range(32)
        ]
        await asyncio.sleep(0.05)
        assert backend.waiting == 16
        assert await _get(mw, new_token(), "127.0.1.9") == 503  # no slot left
        clock.advance(6)  # the holder's token is due for a refresh
        before = len(backend.asked)
        assert await _get(mw, holder.token, HOLDER) == 200
        for _ in range(100):
            await asyncio.sleep(0.001)
            if (holder.token, HOLDER) in backend.asked[before:]:
                break
        assert (holder.token, HOLDER) in backend.asked[before:]  # the refresh went out
        backend.open.set()
        await asyncio.gather(*spray)

    asyncio.run(main())
    mw.close()


def test_an_attacker_leading_the_lookup_does_not_swallow_the_holders_use() -> None:
    """Single-flight is per (token, address): the holder's own lookup extends the token."""
    store = MemoryStore()
    clock = FakeClock()
    holder = issue(store, ip=HOLDER, ttl=30, now=clock.now)
    backend = Gate(store)
    backend.inner = StoreBackend(store, clock=clock)
    mw = BearerGuardMiddleware(starlette_app(AppCalls()), backend=backend, clock=clock)

    async def main() -> tuple[int, int, list[int]]:
        clock.advance(10)
        first = asyncio.ensure_future(_get(mw, holder.token, ATTACKER))
        await asyncio.sleep(0.02)  # the attacker leads a lookup for the holder's token
        mine = [asyncio.ensure_future(_get(mw, holder.token, HOLDER)) for _ in range(5)]
        await asyncio.sleep(0.02)
        backend.open.set()
        return await first, len(backend.asked), list(await asyncio.gather(*mine))

    attacker, calls, statuses = asyncio.run(main())
    mw.close()
    assert attacker == 401 and statuses == [200] * 5
    # One call for the attacker's address, one for the holder's five (G4 per address).
    assert sorted(ip or "" for _, ip in backend.asked) == [HOLDER, ATTACKER]
    assert calls == 2
    record = store.get_token(token_digest(holder.token), clock.now)
    assert record is not None and record.expires_at == pytest.approx(clock.now + 30)
