"""A backend that answers nonsense (neither TokenInfo nor None): fail closed, trust nothing.

The outcome has its own sentinel (`flow.BAD_ANSWER`), not a fake `TokenInfo`: nothing
about it can reach the policy, the cache or a stale entry.
"""

from __future__ import annotations

from typing import Any

import pytest

from bearerguard import BackendUnavailable, Guard, TokenInfo
from bearerguard.flow import BAD_ANSWER, Allow, Deny, Lookup, RequestFacts
from helpers import FakeClock

TOKEN = "tok-nonsense-1"
FACTS = RequestFacts("/x", (f"Bearer {TOKEN}",), (), "127.0.0.1", ())


def run(guard: Guard, answer: Any) -> tuple[Any, int]:
    flow = guard.authenticate(FACTS)
    asked = 0
    try:
        step = next(flow)
        while True:
            assert isinstance(step, Lookup)
            asked += 1
            step = flow.throw(answer) if isinstance(answer, BaseException) else flow.send(answer)
    except StopIteration as stop:
        return stop.value, asked


def test_the_sentinel_is_not_token_info() -> None:
    assert not isinstance(BAD_ANSWER, TokenInfo)


@pytest.mark.parametrize(
    "nonsense", [{"active": True}, "key_1", 1, True, b"", BAD_ANSWER], ids=repr
)
def test_nonsense_with_a_stale_entry_is_503_not_the_stale_entry(
    clock: FakeClock, nonsense: object
) -> None:
    g = Guard(clock=clock, cache_ttl=10, stale_if_error=300)
    good = TokenInfo("key_1", frozenset({"dns"}), "127.0.0.1", clock.now + 3600, 3600)
    d, _ = run(g, good)
    assert isinstance(d, Allow)
    clock.advance(11)  # past fresh, within stale_if_error
    d, asked = run(g, BackendUnavailable("down"))
    assert asked == 1 and isinstance(d, Allow)  # the stale entry serves an outage
    d, asked = run(g, nonsense)
    assert asked == 1 and isinstance(d, Deny)
    assert d.challenge.status == 503
    assert d.fingerprint  # logged by fingerprint, never the token
    # The stale entry was neither used nor replaced: the next outage still serves it.
    d, _ = run(g, BackendUnavailable("down"))
    assert isinstance(d, Allow) and d.identity.key_id == "key_1"
