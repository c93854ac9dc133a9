"""The cache's deadlines: never later than the rules allow, and cheap to hold."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from bearerguard.cache import Entry, TokenCache
from bearerguard.tokens import TokenInfo

TICK = 1 / 1024


@given(
    now=st.floats(1e9, 2e9),
    ttl=st.floats(0.01, 100),
    touch=st.floats(0.01, 100),
    life=st.one_of(st.none(), st.floats(0.001, 500)),
    token_ttl=st.one_of(st.none(), st.floats(0.01, 500)),
    stale=st.sampled_from([0.0, 0.5, 30.0]),
    counted=st.booleans(),
)
def test_deadlines_never_later_than_the_rules(
    now: float,
    ttl: float,
    touch: float,
    life: float | None,
    token_ttl: float | None,
    stale: float,
    counted: bool,
) -> None:
    cache = TokenCache(ttl=ttl, touch_interval=touch, stale_if_error=stale, clock=lambda: now)
    expires = None if life is None else now + life
    entry = cache.put(
        b"k" * 32, TokenInfo("key", frozenset(), None, expires, token_ttl), now, counted=counted
    )
    if expires is not None and expires <= now:
        assert entry is None
        return
    assert entry is not None
    cap = math.inf if expires is None else expires
    # G2: never past the token's expiry nor the cache TTL; at most one tick early.
    assert entry.fresh_until <= min(now + ttl, cap)
    assert entry.fresh_until >= min(now + ttl, cap) - TICK
    assert entry.refresh_at <= entry.fresh_until  # the cached path relies on it
    assert entry.stale_until <= min(now + ttl + stale, cap)
    assert entry.stale_until >= entry.fresh_until
    if not counted:
        assert entry.refresh_at == now


def test_entries_of_one_tick_share_their_deadlines() -> None:
    now = 1.7e9
    cache = TokenCache(ttl=10, touch_interval=5, clock=lambda: now)
    a = cache.put(b"a" * 32, TokenInfo("k", frozenset({"dns"}), "10.0.0.1", now + 300), now)
    b = cache.put(b"b" * 32, TokenInfo("k", frozenset({"dns"}), "10.0.0.1", now + 300), now + 1e-4)
    assert isinstance(a, Entry) and isinstance(b, Entry)
    assert a.fresh_until is b.fresh_until and a.refresh_at is b.refresh_at
    assert a.info.bound_ip is b.info.bound_ip and a.info.apis is b.info.apis
    # An entry capped by its token's expiry holds that expiry itself.
    c = cache.put(b"c" * 32, TokenInfo("k", frozenset(), None, now + 3), now)
    assert c is not None and c.fresh_until is c.info.expires_at
