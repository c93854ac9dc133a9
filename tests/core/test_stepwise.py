"""`Guard.begin` and `Guard.settle`, the adapters' way through the core, against the
generator (`Guard.authenticate`) that a wrapping guard (TracedGuard) is driven by."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bearerguard import BackendUnavailable, Guard, TokenInfo
from bearerguard.flow import Allow, Deny, Lookup, Pending, RequestFacts
from bearerguard.metrics import Metrics
from helpers import FakeClock

TOKENS = ("tok-a", "tok-b")
ADDRESSES = ("127.0.0.1", "10.0.0.9")


def _facts(token: str, ip: str) -> RequestFacts:
    return RequestFacts("/x", (f"Bearer {token}",), (), ip, ())


def _answer(kind: str, clock: FakeClock) -> Any:
    if kind == "active":
        return TokenInfo("key_1", frozenset({"dns"}), "127.0.0.1", clock.now + 30, 30)
    if kind == "other_api":
        return TokenInfo("key_2", frozenset({"ssl"}), None, clock.now + 30, 30)
    if kind == "down":
        return BackendUnavailable("down")
    if kind == "junk":
        return "not a TokenInfo"
    return None


def _by_generator(guard: Guard, facts: RequestFacts, answer: Any) -> tuple[Any, int]:
    flow = guard.authenticate(facts)
    asked = 0
    try:
        next(flow)
        while True:
            asked += 1
            if isinstance(answer, BaseException):
                flow.throw(answer)
            else:
                flow.send(answer)
    except StopIteration as stop:
        return stop.value, asked


def _by_steps(guard: Guard, facts: RequestFacts, answer: Any) -> tuple[Any, int]:
    step = guard.begin(facts)
    if not isinstance(step, Pending):
        return step, 0
    assert isinstance(step.lookup, Lookup)
    return guard.settle(step, answer), 1


def _seen(decision: Any) -> tuple[Any, ...]:
    if isinstance(decision, Deny):
        return ("deny", decision.challenge, decision.key_id, decision.client_ip)
    ident = decision.identity
    follow = decision.follow_up
    return (
        "allow",
        None if ident is None else (ident.key_id, ident.client_ip, ident.apis),
        None if follow is None else (follow.key, follow.client_ip),
    )


def _guard(clock: FakeClock) -> Guard:
    return Guard(
        api="dns",
        clock=clock,
        metrics=Metrics(),
        cache_ttl=10,
        touch_interval=3,
        negative_cache_ttl=4,
        stale_if_error=5,
    )


REQUESTS = st.lists(
    st.tuples(
        st.sampled_from(TOKENS),
        st.sampled_from(ADDRESSES),
        st.sampled_from(("active", "other_api", "unknown", "down", "junk")),
        st.sampled_from((0.0, 0.5, 2.0, 3.5, 6.0, 12.0)),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(REQUESTS)
def test_the_steps_decide_as_the_generator_does(requests: list[Any]) -> None:
    """Any sequence of requests, answers, failures and waits: the same decisions, the
    same lookups asked, the same counts, from two guards driven the two ways."""
    clocks = FakeClock(), FakeClock()
    guards = _guard(clocks[0]), _guard(clocks[1])
    for token, ip, kind, wait in requests:
        seen = []
        for guard, clock, way in zip(guards, clocks, (_by_generator, _by_steps), strict=True):
            clock.advance(wait)
            decision, asked = way(guard, _facts(token, ip), _answer(kind, clock))
            seen.append((_seen(decision), asked))
        assert seen[0] == seen[1]
    first, second = (g.metrics for g in guards)
    assert first is not None and second is not None
    assert vars(first).keys() == vars(second).keys()
    for name, value in vars(first).items():
        if not name.startswith("_"):
            assert getattr(second, name) == value, name


def test_a_decision_is_observed_once_whichever_way(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """`begin` observes the decisions it makes itself, `settle` the rest: each request
    is counted, logged and hooked once."""
    hooked: list[Any] = []
    guard = Guard(
        api="dns", clock=clock, metrics=Metrics(), on_decision=lambda f, d: hooked.append(d)
    )
    step = guard.begin(_facts("tok-a", "127.0.0.1"))
    assert isinstance(step, Pending) and hooked == []
    with caplog.at_level(logging.INFO, logger="bearerguard"):
        refused = guard.settle(step, None)
    assert isinstance(refused, Deny) and hooked == [refused]
    assert len([r for r in caplog.records if r.getMessage().startswith("refused 401")]) == 1
    again = guard.begin(_facts("tok-a", "127.0.0.1"))  # cached as unknown: no lookup
    assert isinstance(again, Deny) and hooked == [refused, again]
    fresh = guard.begin(_facts("tok-b", "127.0.0.1"))
    assert isinstance(fresh, Pending)
    allowed = guard.settle(fresh, _answer("active", clock))
    assert isinstance(allowed, Allow) and hooked[-1] is allowed
    assert guard.metrics is not None
    assert guard.metrics.requests["401"] == 2 and guard.metrics.requests["allowed"] == 1


def test_only_a_guard_that_wraps_the_generator_is_driven_through_it() -> None:
    class Wrapping(Guard):
        def authenticate(self, facts: RequestFacts, api: str | None = None) -> Any:
            return Guard.authenticate(self, facts, api)

    class Counting(Guard):
        pass

    assert Guard().stepwise and Counting().stepwise
    assert not Wrapping().stepwise


def test_a_stale_entry_is_judged_by_the_clock_after_the_failed_lookup(clock: FakeClock) -> None:
    """With ``stale_if_error``, an entry may be served while the backend is down, up to
    its stale time: measured when the lookup has failed, not when it started."""
    guard = Guard(api="dns", clock=clock, cache_ttl=10, stale_if_error=5)
    first = guard.begin(_facts("tok-a", "127.0.0.1"))
    assert isinstance(first, Pending)
    assert isinstance(guard.settle(first, _answer("active", clock)), Allow)
    clock.advance(14)  # past fresh (10 s), inside stale (15 s)
    served = guard.begin(_facts("tok-a", "127.0.0.1"))
    assert isinstance(served, Pending) and served.entry is not None
    assert isinstance(guard.settle(served, BackendUnavailable("down")), Allow)
    clock.advance(0.5)
    waited = guard.begin(_facts("tok-a", "127.0.0.1"))
    assert isinstance(waited, Pending)
    clock.advance(1)  # the lookup took its time and failed: now past the stale time
    refused = guard.settle(waited, BackendUnavailable("down"))
    assert isinstance(refused, Deny) and refused.challenge.status == 503
