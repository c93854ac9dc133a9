"""Prometheus export of a middleware's `Metrics` (the ``prometheus`` extra).

::

    from bearerguard.metrics import Metrics
    from bearerguard.prometheus import metrics_asgi_app, register

    metrics = Metrics()
    app = BearerGuardMiddleware(app, backend=backend, metrics=metrics,
                                public_paths=["/metrics"])
    register(metrics, backend=backend)          # into prometheus_client's default registry
    # mount metrics_asgi_app() at /metrics (or metrics_wsgi_app() for WSGI)

Values are read from `Metrics` at scrape time, so the request path pays no Prometheus
cost. Metric names (all prefixed ``bearerguard_``):

==========================================  =========  ==================================
name                                        type       labels
==========================================  =========  ==================================
bearerguard_requests_total                  counter    outcome: allowed public 400 401
                                                       403 503
bearerguard_cache_events_total              counter    event: hit miss negative_hit
                                                       stale_served refresh
                                                       refresh_failure
bearerguard_backend_calls_total             counter    result: ok failed
bearerguard_backend_latency_seconds         histogram
bearerguard_breaker_state                   gauge      state: closed open half_open
                                                       (introspection backend only)
==========================================  =========  ==================================

`bearerguard serve` exports its own counters (`ServiceCollector`) at ``/metrics`` when
prometheus-client is installed: ``bearerguard_service_tokens_issued_total``,
``…_secret_checks_total``, ``…_login_failures_total``, ``…_throttled_total``,
``…_introspections_total{result}``, ``…_revocations_total``, ``…_store_errors_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .metrics import Metrics, ServiceMetrics

__all__ = [
    "MiddlewareCollector",
    "ServiceCollector",
    "metrics_asgi_app",
    "metrics_wsgi_app",
    "register",
]

_BREAKER_STATES = ("closed", "open", "half_open")


class MiddlewareCollector:
    """A Prometheus collector reading a `Metrics` (and the backend's breaker) on scrape."""

    def __init__(self, metrics: Metrics, *, backend: object = None) -> None:
        self.metrics = metrics
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        snap = self.metrics.snapshot()
        requests = CounterMetricFamily(
            "bearerguard_requests", "Requests by decision", labels=["outcome"]
        )
        for outcome, n in snap["requests"].items():
            requests.add_metric([outcome], n)
        yield requests
        cache = CounterMetricFamily(
            "bearerguard_cache_events", "Token cache events", labels=["event"]
        )
        for event, field in (
            ("hit", "cache_hits"),
            ("miss", "cache_misses"),
            ("negative_hit", "negative_hits"),
            ("stale_served", "stale_served"),
            ("refresh", "refreshes"),
            ("refresh_failure", "refresh_failures"),
        ):
            cache.add_metric([event], snap[field])
        yield cache
        calls = CounterMetricFamily(
            "bearerguard_backend_calls", "Backend lookups", labels=["result"]
        )
        calls.add_metric(["ok"], snap["backend_calls"] - snap["backend_failures"])
        calls.add_metric(["failed"], snap["backend_failures"])
        yield calls
        buckets, _count, total = self.metrics.latency()
        latency = HistogramMetricFamily(
            "bearerguard_backend_latency_seconds", "Backend lookup latency"
        )
        latency.add_metric(
            [],
            [("+Inf" if b == float("inf") else repr(b), n) for b, n in buckets],
            total,
        )
        yield latency
        breaker = getattr(self.backend, "breaker", None)
        state = getattr(breaker, "state", None)
        if isinstance(state, str):
            gauge = GaugeMetricFamily(
                "bearerguard_breaker_state", "Circuit breaker state", labels=["state"]
            )
            for name in _BREAKER_STATES:
                gauge.add_metric([name], 1.0 if state == name else 0.0)
            yield gauge


class ServiceCollector:
    """A Prometheus collector for the auth service's `ServiceMetrics`."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self.metrics.snapshot()
        for name, doc in (
            ("tokens_issued", "Tokens issued by /login"),
            ("secret_checks", "Client secrets checked (every attempt, throttled or not)"),
            ("login_failures", "Client authentications refused (bad key or secret)"),
            ("throttled", "Client authentications refused by the failed-login slowdown"),
            ("revocations", "Tokens revoked through /revoke"),
            ("store_errors", "Requests answered 503 because the store failed"),
        ):
            counter = CounterMetricFamily(f"bearerguard_service_{name}", doc)
            counter.add_metric([], snap[name])
            yield counter
        intro = CounterMetricFamily(
            "bearerguard_service_introspections", "Introspections by result", labels=["result"]
        )
        for result, n in snap["introspections"].items():
            intro.add_metric([result], n)
        yield intro


def register(
    metrics: Metrics, *, backend: object = None, registry: CollectorRegistry = REGISTRY
) -> MiddlewareCollector:
    """Register a collector for `metrics` in `registry`; return it (to unregister)."""
    collector = MiddlewareCollector(metrics, backend=backend)
    registry.register(collector)
    return collector


def metrics_asgi_app(registry: CollectorRegistry = REGISTRY) -> Callable[..., Any]:
    """An ASGI app answering Prometheus scrapes from `registry`."""
    app: Callable[..., Any] = make_asgi_app(registry)
    return app


def metrics_wsgi_app(registry: CollectorRegistry = REGISTRY) -> Callable[..., Any]:
    """A WSGI app answering Prometheus scrapes from `registry`."""
    app: Callable[..., Any] = make_wsgi_app(registry)
    return app
