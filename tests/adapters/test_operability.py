"""Metrics, refusal logs and the audit hook, on a real Starlette and a real Flask app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from adapter_harness import Harness
from bearerguard import BackendUnavailable, StoreBackend, TokenInfo
from bearerguard.flow import Allow, Deny, RequestFacts
from bearerguard.metrics import Metrics
from bearerguard.prometheus import metrics_asgi_app, metrics_wsgi_app, register
from bearerguard.stores import MemoryStore
from bearerguard.stores.base import new_token
from bearerguard.tokens import fingerprint, token_digest
from helpers import FakeClock, issue

Make = Callable[..., Harness]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scripted(h: Harness, store: MemoryStore) -> tuple[Any, Any]:
    dns = issue(store, ("dns",))
    vps = issue(store, ("vps",))
    assert h.get("/health").status_code == 200  # public
    assert h.get("/whoami").status_code == 401  # no credentials
    assert h.get("/whoami", {"Authorization": "Bearer a b"}).status_code == 400
    unknown = new_token()  # shaped like a real token, so the store backend looks it up
    assert h.get("/whoami", bearer(unknown)).status_code == 401  # miss
    assert h.get("/whoami", bearer(unknown)).status_code == 401  # negative hit
    for _ in range(3):  # one miss, then two hits (cached fast path)
        assert h.get("/whoami", bearer(dns.token)).status_code == 200
    assert h.get("/whoami", bearer(vps.token)).status_code == 403  # miss, wrong API
    assert h.get("/whoami", bearer(dns.token), ip="127.0.0.9").status_code == 401  # hit
    return dns, vps


def test_exact_counts_after_a_scripted_sequence(harness: Make) -> None:
    store = MemoryStore()
    metrics = Metrics()
    h = harness(StoreBackend(store), api="dns", public_paths=["/health"], metrics=metrics)
    scripted(h, store)
    snap = metrics.snapshot()
    assert snap["requests"] == {
        "allowed": 3,
        "public": 1,
        "400": 1,
        "401": 4,
        "403": 1,
        "503": 0,
    }
    assert snap["cache_misses"] == 3
    assert snap["negative_hits"] == 1
    assert snap["cache_hits"] == 3  # two fast-path hits, one slow-path hit (wrong address)
    assert snap["backend_calls"] == 3
    assert snap["backend_failures"] == 0
    _, count, total = metrics.latency()
    assert count == 3 and total >= 0


def test_backend_failures_and_503_are_counted(harness: Make) -> None:
    class Down:
        def lookup(self, token: str) -> TokenInfo | None:
            raise BackendUnavailable("down")

    metrics = Metrics()
    h = harness(Down(), metrics=metrics)
    assert h.get("/whoami", bearer("tok")).status_code == 503
    snap = metrics.snapshot()
    assert snap["requests"]["503"] == 1
    assert snap["backend_calls"] == 1 and snap["backend_failures"] == 1


def test_prometheus_scrape_over_http(harness: Make) -> None:
    store = MemoryStore()
    metrics = Metrics()
    h = harness(StoreBackend(store), api="dns", public_paths=["/health"], metrics=metrics)
    scripted(h, store)
    registry = CollectorRegistry()
    register(metrics, registry=registry)
    if h.kind == "asgi":
        app = metrics_asgi_app(registry)

        async def scrape() -> str:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://m") as c:
                return (await c.get("/metrics")).text

        text = asyncio.run(scrape())
    else:
        transport = httpx.WSGITransport(app=metrics_wsgi_app(registry))
        with httpx.Client(transport=transport, base_url="http://m") as c:
            text = c.get("/metrics").text
    assert 'bearerguard_requests_total{outcome="allowed"} 3.0' in text
    assert 'bearerguard_requests_total{outcome="401"} 4.0' in text
    assert 'bearerguard_cache_events_total{event="miss"} 3.0' in text
    assert 'bearerguard_backend_calls_total{result="ok"} 3.0' in text
    assert "bearerguard_backend_latency_seconds_count 3.0" in text


def test_one_info_line_per_refusal_with_fields(
    harness: Make, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    vps = issue(store, ("vps",))
    h = harness(StoreBackend(store), api="dns")
    with caplog.at_level(logging.DEBUG, logger="bearerguard"):
        assert h.get("/whoami", bearer(vps.token)).status_code == 403
        assert h.get("/whoami", bearer(vps.token)).status_code == 403
    lines = [r for r in caplog.records if r.name == "bearerguard" and r.levelno == logging.INFO]
    assert len(lines) == 2
    msg = lines[0].getMessage()
    assert "refused 403 insufficient_scope" in msg
    assert f"key_id={vps.key_id}" in msg
    assert "client_ip=127.0.0.1" in msg
    assert f"token={fingerprint(token_digest(vps.token))}" in msg
    assert vps.token not in msg


def test_nothing_logged_for_allowed_requests_above_debug(
    harness: Make, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    dns = issue(store, ("dns",))
    h = harness(StoreBackend(store))
    with caplog.at_level(logging.INFO, logger="bearerguard"):
        for _ in range(3):
            assert h.get("/whoami", bearer(dns.token)).status_code == 200
    assert [r for r in caplog.records if r.name.startswith("bearerguard")] == []


def test_on_decision_hook_sees_every_decision(harness: Make) -> None:
    store = MemoryStore()
    dns = issue(store, ("dns",))
    seen: list[tuple[str, str]] = []

    def hook(facts: RequestFacts, decision: Allow | Deny) -> None:
        kind = "allow" if isinstance(decision, Allow) else str(decision.challenge.status)
        seen.append((facts.path, kind))

    h = harness(StoreBackend(store), on_decision=hook)
    for _ in range(3):
        assert h.get("/whoami", bearer(dns.token)).status_code == 200
    assert h.get("/whoami").status_code == 401
    assert seen == [("/whoami", "allow")] * 3 + [("/whoami", "401")]


def test_failing_hook_never_fails_the_request(
    harness: Make, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(facts: RequestFacts, decision: Allow | Deny) -> None:
        raise RuntimeError("audit sink down")

    h = harness(StoreBackend(MemoryStore()), on_decision=hook)
    with caplog.at_level(logging.ERROR, logger="bearerguard"):
        assert h.get("/whoami").status_code == 401
    assert any("on_decision hook failed" in r.getMessage() for r in caplog.records)


def test_fake_clock_metrics_refresh(harness: Make, clock: FakeClock) -> None:
    store = MemoryStore()
    dns = issue(store, ("dns",), now=clock.now)
    metrics = Metrics()
    h = harness(StoreBackend(store, clock=clock), clock=clock, metrics=metrics)
    assert h.get("/whoami", bearer(dns.token)).status_code == 200
    clock.advance(6)  # past the touch interval: the hit asks for a background refresh
    assert h.get("/whoami", bearer(dns.token)).status_code == 200
    h.settle()
    assert metrics.snapshot()["refreshes"] == 1


def _readme_scrape() -> list[str]:
    """The scrape lines shown in the README after "A scrape after five allowed …"."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = text.split("A scrape after five allowed requests with one token and two refusals:")[1]
    lines = block.split("```")[1].strip().splitlines()
    assert lines
    return lines


def test_the_readme_scrape_example_is_what_a_scrape_shows(harness: Make) -> None:
    """README: "A scrape after five allowed requests with one token and two refusals"."""
    store = MemoryStore()
    metrics = Metrics()
    h = harness(StoreBackend(store), api="dns", metrics=metrics)
    tok = issue(store, ("dns",))
    for _ in range(5):
        assert h.get("/whoami", bearer(tok.token)).status_code == 200
    # Shaped like a real token, so it is looked up (once; then the negative cache).
    unknown = new_token()
    for _ in range(2):
        assert h.get("/whoami", bearer(unknown)).status_code == 401
    registry = CollectorRegistry()
    register(metrics, registry=registry)
    transport = httpx.WSGITransport(app=metrics_wsgi_app(registry))
    with httpx.Client(transport=transport, base_url="http://m") as c:
        scraped = c.get("/metrics").text.splitlines()
    for line in _readme_scrape():
        assert line in scraped, line
