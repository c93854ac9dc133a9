"""Drive the core's generator by hand: no event loop, no server, an injected clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bearerguard import BackendUnavailable, Guard, TokenInfo
from bearerguard.flow import Allow, Deny, Lookup, RequestFacts
from bearerguard.tokens import token_key
from helpers import FakeClock

TOKEN = "tok-123"


def facts(token: str | None = TOKEN, *, ip: str = "127.0.0.1", path: str = "/x") -> RequestFacts:
    auth = (f"Bearer {token}",) if token is not None else ()
    return RequestFacts(path, auth, (), ip, ())


def info(clock: FakeClock, *, apis: tuple[str, ...] = ("dns",), ttl: float = 300) -> TokenInfo:
    return TokenInfo("key_1", frozenset(apis), "127.0.0.1", clock.now + ttl, ttl)


def run(guard: Guard, f: RequestFacts, answer: Any = None, api: str | None = None) -> Any:
    """Run one request; answer the lookup (if asked) with `answer`; return (decision, asked)."""
    flow = guard.authenticate(f, api)
    asked = 0
    try:
        step = next(flow)
        while True:
            assert isinstance(step, Lookup)
            assert step.key == token_key(step.token)
            asked += 1
            step = flow.throw(answer) if isinstance(answer, BaseException) else flow.send(answer)
    except StopIteration as stop:
        return stop.value, asked


def test_miss_then_hit(clock: FakeClock) -> None:
    g = Guard(clock=clock)
    d, asked = run(g, facts(), info(clock))
    assert isinstance(d, Allow) and asked == 1
    d, asked = run(g, facts(), None)
    assert isinstance(d, Allow) and asked == 0
    assert d.identity.key_id == "key_1"
    assert d.follow_up is None


def test_hit_past_touch_interval_asks_for_refresh(clock: FakeClock) -> None:
    g = Guard(clock=clock, touch_interval=5, cache_ttl=10)
    run(g, facts(), info(clock))
    clock.advance(4)
    d, _ = run(g, facts())
    assert d.follow_up is None
    clock.advance(2)
    d, asked = run(g, facts())
    assert asked == 0 and isinstance(d.follow_up, Lookup)
    # the refresh's answer replaces the entry and resets its clock
    g.refreshed(d.follow_up.key, info(clock))
    d, _ = run(g, facts())
    assert d.follow_up is None


def test_touch_interval_shrinks_for_short_tokens(clock: FakeClock) -> None:
    g = Guard(clock=clock, touch_interval=5)
    run(g, facts(), info(clock, ttl=3))
    clock.advance(1.01)
    d, _ = run(g, facts())
    assert d.follow_up is not None  # a third of the 3 s sliding TTL


def test_entry_never_outlives_token(clock: FakeClock) -> None:
    g = Guard(clock=clock, cache_ttl=10)
    run(g, facts(), info(clock, ttl=2))
    clock.advance(2.5)
    d, asked = run(g, facts(), None)  # entry gone: asks again, source says unknown
    assert asked == 1 and isinstance(d, Deny) and d.challenge.status == 401


def test_refresh_reporting_revocation_evicts(clock: FakeClock) -> None:
    g = Guard(clock=clock)
    run(g, facts(), info(clock))
    g.refreshed(token_key(TOKEN), None)
    d, asked = run(g, facts())
    assert asked == 0 and isinstance(d, Deny)  # negative cache answers


def test_failed_refresh_keeps_entry(clock: FakeClock) -> None:
    g = Guard(clock=clock)
    run(g, facts(), info(clock))
    g.refreshed(token_key(TOKEN), BackendUnavailable("down"))
    d, asked = run(g, facts())
    assert asked == 0 and isinstance(d, Allow)


def test_negative_cache_expires(clock: FakeClock) -> None:
    g = Guard(clock=clock, negative_cache_ttl=5)
    assert run(g, facts(), None)[1] == 1
    assert run(g, facts(), None)[1] == 0
    clock.advance(6)
    assert run(g, facts(), None)[1] == 1


def test_unknown_token_spray_cannot_evict_valid_tokens(clock: FakeClock) -> None:
    g = Guard(clock=clock, cache_maxsize=10, negative_cache_maxsize=10)
    run(g, facts(), info(clock))
    for i in range(1000):
        run(g, facts(f"junk{i}"), None)
    d, asked = run(g, facts())
    assert asked == 0 and isinstance(d, Allow)
    assert g.cache.negative_size <= 10


def test_scope_and_ip_checked_on_hits(clock: FakeClock) -> None:
    g = Guard(clock=clock)
    run(g, facts(), info(clock))
    d, asked = run(g, facts(), api="vps")
    assert asked == 0 and d.challenge.status == 403 and d.challenge.scope == "vps"
    d, asked = run(g, facts(ip="10.9.9.9"))
    assert asked == 0 and d.challenge.status == 401


def test_backend_failure_without_cache_is_503(clock: FakeClock) -> None:
    g = Guard(clock=clock, retry_after=9)
    d, asked = run(g, facts(), BackendUnavailable("down"))
    assert asked == 1
    assert d.challenge.status == 503 and d.challenge.retry_after == 9


def test_garbage_answer_is_503_and_not_cached(clock: FakeClock) -> None:
    g = Guard(clock=clock)
    d, _ = run(g, facts(), {"active": True})
    assert d.challenge.status == 503
    assert len(g.cache) == 0 and g.cache.negative_size == 0


def test_expired_answer_is_refused(clock: FakeClock) -> None:
    g = Guard(clock=clock)
    old = TokenInfo("k", frozenset({"dns"}), None, clock.now - 1, 300)
    d, _ = run(g, facts(), old)
    assert d.challenge.status == 401


def test_public_path_asks_nothing(clock: FakeClock) -> None:
    g = Guard(clock=clock, public_paths=["/health"])
    d, asked = run(g, facts(None, path="/health"))
    assert isinstance(d, Allow) and d.identity is None and asked == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cache_ttl": 0},
        {"touch_interval": -1},
        {"cache_maxsize": 0},
        {"realm": "a\nb"},
        {"public_paths": ["health"]},
        {"trusted_proxies": ["nope"]},
        {"stale_if_error": float("nan")},
        {"max_token_length": 0},
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any]) -> None:
    from bearerguard import ConfigurationError

    with pytest.raises(ConfigurationError):
        Guard(**kwargs)


token_infos = st.builds(
    TokenInfo,
    st.text(max_size=5),
    st.frozensets(st.sampled_from(["dns", "vps"])),
    st.sampled_from([None, "127.0.0.1", "10.0.0.1"]),
    st.one_of(st.none(), st.floats(1.7e9 - 10, 1.7e9 + 1000)),
    st.one_of(st.none(), st.floats(0.1, 600)),
)
answers = st.one_of(
    st.none(),
    token_infos,
    st.just(BackendUnavailable("down")),
    st.integers(),
)


ADDRESSES = ["127.0.0.1", "10.0.0.1", "203.0.113.7"]
BOUND = TokenInfo("key_1", frozenset({"dns"}), "10.0.0.1", 1.7e9 + 60, 300)


def test_any_request_gives_a_known_status() -> None:
    """Random requests and answers: a known status, and an Allow only when it is right."""
    allowed: list[TokenInfo] = []

    @settings(max_examples=300, database=None)
    @given(
        st.one_of(
            st.lists(st.text(max_size=40), max_size=2),
            st.just([f"Bearer {TOKEN}"]),  # well-formed: the answer decides
        ),
        st.one_of(st.just([]), st.lists(st.text(max_size=10), max_size=2)),
        st.one_of(st.none(), st.sampled_from(ADDRESSES), st.text(max_size=12)),
        st.lists(st.one_of(st.sampled_from(ADDRESSES), st.text(max_size=12)), max_size=2),
        st.one_of(answers, token_infos),  # more TokenInfo answers: more Allows to check
        st.sampled_from([None, "dns", "vps"]),
    )
    # Allows of bound and expiring tokens, whatever the random draw brings.
    @example([f"Bearer {TOKEN}"], [], "10.0.0.1", [], BOUND, "dns")
    @example([f"Bearer {TOKEN}"], [], "127.0.0.1", ["10.0.0.1"], BOUND, None)
    def check(
        auth: list[str],
        query: list[str],
        peer: str | None,
        xff: list[str],
        answer: Any,
        api: str | None,
    ) -> None:
        clock = FakeClock(1.7e9)
        g = Guard(clock=clock, query_token=True, trusted_proxies=["127.0.0.0/8"])
        f = RequestFacts("/x", tuple(auth), tuple(query), peer, tuple(xff))
        d, _ = run(g, f, answer, api)
        if isinstance(d, Allow):
            assert d.identity is not None
            assert isinstance(answer, TokenInfo)
            assert api is None or api in d.identity.apis
            # Only from the address the token is bound to, and only before it expires.
            assert answer.bound_ip is None or answer.bound_ip == d.identity.client_ip
            assert answer.expires_at is None or answer.expires_at > clock.now
            allowed.append(answer)
        else:
            assert d.challenge.status in {400, 401, 403, 503}
            header = d.challenge.to_header(g.realm)
            assert header.startswith('Bearer realm="api"')

    check()
    # The checks above ran on real Allows, bound and expiring ones among them.
    assert any(a.bound_ip is not None for a in allowed), allowed
    assert any(a.expires_at is not None for a in allowed), len(allowed)


def test_evict_ignores_what_is_not_a_digest(clock: FakeClock) -> None:
    g = Guard(clock=clock)
    run(g, facts(), info(clock))
    g.cache.evict("not-hex")
    assert len(g.cache) == 1
    g.cache.evict(token_key(TOKEN).hex())
    assert len(g.cache) == 0


def test_a_due_refresh_is_asked_for_once_per_touch_interval(clock: FakeClock) -> None:
    g = Guard(clock=clock, touch_interval=5, cache_ttl=10)
    run(g, facts(), info(clock))
    clock.advance(6)
    d, _ = run(g, facts())
    assert d.follow_up is not None
    # The refresh has not landed yet: the next hits neither ask again nor leave the
    # cached path, until the entry's own freshness ends.
    d, _ = run(g, facts())
    assert d.follow_up is None
    header = f"Bearer {TOKEN}".encode()
    assert g.cached_identity(header, "127.0.0.1") is not None
    clock.advance(3.9)  # 9.9 s old: still fresh
    assert g.cached_identity(header, "127.0.0.1") is not None
    clock.advance(0.2)  # 10.1 s old: past fresh_until, the cached path steps aside
    assert g.cached_identity(header, "127.0.0.1") is None
