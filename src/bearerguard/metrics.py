"""Counters and a latency histogram for the middleware, cheap enough for the cached path.

`Metrics` is plain Python with no dependency; pass one to a middleware
(``metrics=Metrics()``) and read `snapshot()`, or export it with
`bearerguard.prometheus` (the ``prometheus`` extra). Without ``metrics=`` nothing is
counted and the cached path pays one attribute test.

Counters are bumped without a lock: under heavy thread contention an increment can
rarely be lost. That costs a count, never a decision.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

__all__ = ["Metrics", "OUTCOMES", "ServiceMetrics"]

OUTCOMES = ("allowed", "public", "400", "401", "403", "503")
"""Labels of `Metrics.requests`: the decision for each request."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """What one middleware (or several sharing it) did.

    Fields: `requests` by outcome (`OUTCOMES`; allowed requests answered by the cached
    path are `hot_hits`, folded into ``allowed`` by `snapshot`); `cache_hits`,
    `cache_misses`, `negative_hits`, `stale_served`, `refreshes`, `refresh_failures`;
    backend `calls`, `failures` and a latency histogram (`LATENCY_BUCKETS` seconds).
    """

    def __init__(self) -> None:
        self.requests: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.hot_hits = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.negative_hits = 0
        self.stale_served = 0
        self.refreshes = 0
        self.refresh_failures = 0
        self.backend_calls = 0
        self.backend_failures = 0
        self._lock = threading.Lock()
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0

    def backend_call(self, seconds: float, ok: bool) -> None:
        """Record one backend lookup that took `seconds` (ok: answered, else failed)."""
        with self._lock:
            self.backend_calls += 1
            if not ok:
                self.backend_failures += 1
            self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._latency_sum += seconds

    def latency(self) -> tuple[list[tuple[float, int]], int, float]:
        """Cumulative histogram: ([(upper bound, count ≤ bound)…, (inf, total)], count, sum)."""
        with self._lock:
            counts = list(self._buckets)
            total_sum = self._latency_sum
        cumulative: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return cumulative, running, total_sum

    def snapshot(self) -> dict[str, Any]:
        """All counters as plain values (cached-path hits folded into allowed/cache_hits)."""
        requests = dict(self.requests)
        requests["allowed"] += self.hot_hits
        return {
            "requests": requests,
            "cache_hits": self.cache_hits + self.hot_hits,
            "cache_misses": self.cache_misses,
            "negative_hits": self.negative_hits,
            "stale_served": self.stale_served,
            "refreshes": self.refreshes,
            "refresh_failures": self.refresh_failures,
            "backend_calls": self.backend_calls,
            "backend_failures": self.backend_failures,
        }


class ServiceMetrics:
    """What the auth service (`bearerguard serve`) did, for `/metrics`.

    `tokens_issued`; `secret_checks` (client secrets compared: every authentication
    attempt, throttled or not); `login_failures` (bad key or secret) and `throttled`
    (wrong secrets refused with 429 by the failed-login slowdown); `introspections` by
    result (``active``/``inactive``); `revocations`; `store_errors` (requests answered
    503 because the store failed).
    """

    def __init__(self) -> None:
        self.tokens_issued = 0
        self.secret_checks = 0
        self.login_failures = 0
        self.throttled = 0
        self.introspections: dict[str, int] = {"active": 0, "inactive": 0}
        self.revocations = 0
        self.store_errors = 0

    def snapshot(self) -> dict[str, Any]:
        """All counters as plain values."""
        return {
            "tokens_issued": self.tokens_issued,
            "secret_checks": self.secret_checks,
            "login_failures": self.login_failures,
            "throttled": self.throttled,
            "introspections": dict(self.introspections),
            "revocations": self.revocations,
            "store_errors": self.store_errors,
        }
