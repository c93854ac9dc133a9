"""The ``rate_limit`` core: GCRA steps, option checking and the 429's fields (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from bearerguard import BearerGuardMiddleware, WSGIBearerGuard
from bearerguard.errors import ConfigurationError
from bearerguard.ratelimit import RateLimit, RateLimiter, gcra, ratelimit_key
from helpers import FakeClock


def test_a_burst_then_the_steady_rate(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(2, burst=3), clock=clock)
    verdicts = [limiter.local("key_a") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[3].retry_after == pytest.approx(0.5)
    # Another key has a bucket of its own.
    assert limiter.local("key_b").allowed
    clock.advance(0.5)
    assert limiter.local("key_a").allowed
    assert not limiter.local("key_a").allowed
    clock.advance(10)  # full again, never more than the burst
    assert [limiter.local("key_a").allowed for _ in range(4)] == [True, True, True, False]


def test_refused_requests_do_not_push_the_next_one_back(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(1, burst=1), clock=clock)
    assert limiter.local("k").allowed
    for _ in range(20):
        assert not limiter.local("k").allowed
    clock.advance(1.0)
    assert limiter.local("k").allowed


def test_gcra_leaves_the_tat_alone_on_a_refusal() -> None:
    limit = RateLimit(10, burst=1)
    tat, verdict = gcra(None, 100.0, limit)
    assert verdict.allowed and tat == pytest.approx(100.1)
    again, refused = gcra(tat, 100.0, limit)
    assert again is None and not refused.allowed
    assert refused.retry_after == pytest.approx(0.1)


def test_the_process_table_is_bounded(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(1, burst=1, max_keys=3), clock=clock)
    for i in range(10):
        limiter.local(f"key_{i}")
    assert len(limiter._tats) == 3


def test_the_429_fields() -> None:
    limiter = RateLimiter(RateLimit(0.5, burst=4))
    verdict = gcra(None, 0.0, RateLimit(0.5, burst=1))[1]
    assert verdict.allowed
    refused = gcra(2.0, 0.0, RateLimit(0.5, burst=1))[1]  # the next one is 2 s away
    headers, body = limiter.refusal(refused)
    fields = dict(headers)
    assert fields["retry-after"] == "2"
    # draft-ietf-httpapi-ratelimit-headers: structured-field lists of one policy item.
    assert fields["ratelimit-policy"] == '"per-key";q=4;w=8'
    assert fields["ratelimit"] == '"per-key";r=0;t=2'
    assert fields["content-type"] == "application/json"
    assert fields["content-length"] == str(len(body))
    assert b'"error":"rate_limited"' in body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10, RateLimit(10, burst=10)),
        (0.5, RateLimit(0.5, burst=1)),
        ((5, 20), RateLimit(5, burst=20)),
        (RateLimit(3, burst=7), RateLimit(3, burst=7)),
    ],
)
def test_option_values(value: object, expected: RateLimit) -> None:
    assert RateLimit.of(value) == expected


@pytest.mark.parametrize(
    "value",
    [0, -1, float("nan"), float("inf"), True, "10", (5,), (5, 2.5), (5, -1), [5, 10], {"rate": 5}],
)
@pytest.mark.parametrize("adapter", [BearerGuardMiddleware, WSGIBearerGuard])
def test_bad_values_are_refused_at_construction(value: Any, adapter: Any) -> None:
    class Backend:
        def lookup(self, token: str) -> None:
            return None

    with pytest.raises(ConfigurationError, match="rate_limit"):
        adapter(lambda *a: None, backend=Backend(), rate_limit=value)


def test_redis_keys_have_the_key_id_as_hash_tag() -> None:
    assert ratelimit_key("bg", "key_0123abcd") == "bg:ratelimit:{key_0123abcd}"
    odd = ratelimit_key("bg", "a}b{c")
    assert odd.startswith("bg:ratelimit:{") and odd.count("{") == 1 and odd.endswith("}")


@pytest.mark.parametrize("rate", [3, 7, 0.3, 10, 1 / 3])
@pytest.mark.parametrize("burst", [1, 5, 6])
def test_the_whole_burst_passes_at_once_whatever_the_float_rounding(
    clock: FakeClock, rate: float, burst: int
) -> None:
    limiter = RateLimiter(RateLimit(rate, burst=burst), clock=clock)
    assert [limiter.local("k").allowed for _ in range(burst + 1)] == [True] * burst + [False]
