"""The adapters' hot path (`Guard.cached_identity`) is a memo of the full flow."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bearerguard import Guard, TokenInfo
from bearerguard.flow import Allow, RequestFacts
from bearerguard.tokens import token_key
from helpers import FakeClock

TOKEN = "abc.DEF-123_~+/=="


@settings(max_examples=400)
@given(
    apis=st.frozensets(st.sampled_from(["dns", "vps"])),
    bound=st.sampled_from([None, "127.0.0.1", "10.0.0.1"]),
    life=st.one_of(st.none(), st.floats(0.5, 100)),
    ttl=st.one_of(st.none(), st.floats(0.5, 100)),
    later=st.floats(0, 30),
    peer=st.sampled_from([None, "127.0.0.1", "::ffff:127.0.0.1", "10.0.0.1", "bogus"]),
    api=st.sampled_from([None, "dns", "vps"]),
    ip_binding=st.booleans(),
    proxies=st.sampled_from([(), ("10.0.0.0/8",)]),
    xff=st.sampled_from([(), ("127.0.0.1",)]),
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "BeArEr", "Basic"]),
    spaces=st.sampled_from([" ", "  "]),
)
def test_hot_path_agrees_with_full_flow(
    apis: frozenset[str],
    bound: str | None,
    life: float | None,
    ttl: float | None,
    later: float,
    peer: str | None,
    api: str | None,
    ip_binding: bool,
    proxies: tuple[str, ...],
    xff: tuple[str, ...],
    scheme: str,
    spaces: str,
) -> None:
    clock = FakeClock(1.7e9)
    g = Guard(api=api, ip_binding=ip_binding, trusted_proxies=proxies, clock=clock)
    expires = None if life is None else clock.now + life
    g.cache.put(token_key(TOKEN), TokenInfo("key_1", apis, bound, expires, ttl), clock.now)
    clock.advance(later)
    header = f"{scheme}{spaces}{TOKEN}"
    fast = g.cached_identity(header.encode(), peer, bool(xff))
    flow = g.authenticate(RequestFacts("/x", (header,), (), peer, xff))
    try:
        next(flow)
        slow: Any = "asked the backend"
    except StopIteration as stop:
        slow = stop.value
    if fast is None:
        return  # the full flow decides; nothing to compare
    assert isinstance(slow, Allow), slow
    assert slow.follow_up is None
    assert slow.identity is not None
    assert (fast.key_id, fast.apis, fast.client_ip, fast.fingerprint) == (
        slow.identity.key_id,
        slow.identity.apis,
        slow.identity.client_ip,
        slow.identity.fingerprint,
    )


def test_hot_path_taken_for_plain_cached_hit() -> None:
    clock = FakeClock(1.7e9)
    g = Guard(api="dns", clock=clock)
    info = TokenInfo("key_1", frozenset({"dns"}), "127.0.0.1", clock.now + 300, 300)
    g.cache.put(token_key(TOKEN), info, clock.now)
    first = g.cached_identity(f"Bearer {TOKEN}".encode(), "127.0.0.1")
    assert first is not None and first.key_id == "key_1"
    assert g.cached_identity(f"Bearer {TOKEN}".encode(), "127.0.0.1") is first  # memoised
    assert g.cached_identity(f"Bearer {TOKEN}".encode(), "127.0.0.2") is None
    assert g.cached_identity(f"Basic {TOKEN}".encode(), "127.0.0.1") is None
