"""OpenTelemetry traces (bearerguard.otel) with the SDK's in-memory exporter.

Both adapters, on the real apps of adapter_harness: span names, attributes, parent and
child links, the cached path's attributes on the server span, and no token in any span.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from adapter_harness import Harness
from bearerguard import BackendUnavailable, StoreBackend, TokenInfo
from bearerguard.otel import (
    BACKEND_LATENCY,
    BACKEND_SPAN,
    CACHE,
    CLIENT_IP,
    DECISION_SPAN,
    ERROR,
    FINGERPRINT,
    KEY_ID,
    OUTCOME,
    TracedBackend,
    TracedGuard,
)
from bearerguard.stores import MemoryStore
from bearerguard.tokens import fingerprint, token_key
from django_harness import DjangoHarness, factory
from helpers import SECRETS, Issued, issue, secrets_in


class Traced:
    """A harness whose guard and backend are traced into an in-memory exporter."""

    def __init__(self, kind: str, backend: object, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test-server")
        guard = TracedGuard(tracer_provider=self.provider, **options)
        traced = TracedBackend(backend, tracer_provider=self.provider)
        self.harness = Harness(kind, traced, guard=guard)

    def get(self, path: str, token: str | None = None, *, server_span: bool = True) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        if not server_span:
            return self.harness.get(path, headers)
        with self.tracer.start_as_current_span("GET " + path, kind=SpanKind.SERVER):
            return self.harness.get(path, headers)

    def close(self) -> None:
        self.harness.close()
        self.provider.shutdown()

    def spans(self) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans


@pytest.fixture(params=["asgi", "wsgi"])
def traced(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from factory(functools.partial(Traced, request.param))


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    names = [s.name for s in spans]
    assert len(names) == len(set(names)), names
    return {s.name: s for s in spans}


def assert_no_secret(spans: list[ReadableSpan]) -> None:
    text = "\n".join(s.to_json() for s in spans)
    assert not secrets_in(text), "a token or secret in a span"


@pytest.fixture
def dns(store: MemoryStore) -> Issued:
    return issue(store, ("dns", "vps"))


def test_miss_then_hit(traced: Any, store: MemoryStore, dns: Issued) -> None:
    t = traced(StoreBackend(store), api="dns")
    assert t.get("/whoami", dns.token).status_code == 200
    spans = t.spans()
    assert_no_secret(spans)
    named = by_name(spans)
    assert set(named) == {"GET /whoami", DECISION_SPAN, BACKEND_SPAN}
    server, decision, lookup = named["GET /whoami"], named[DECISION_SPAN], named[BACKEND_SPAN]
    # One trace: server → bearerguard.authenticate → bearerguard.backend.lookup
    assert decision.context.trace_id == lookup.context.trace_id == server.context.trace_id
    assert decision.parent is not None and decision.parent.span_id == server.context.span_id
    assert lookup.parent is not None and lookup.parent.span_id == decision.context.span_id
    assert decision.kind == SpanKind.INTERNAL and lookup.kind == SpanKind.CLIENT
    fp = fingerprint(token_key(dns.token))
    attrs = dict(decision.attributes or {})
    assert attrs.pop(BACKEND_LATENCY) > 0
    assert attrs == {
        OUTCOME: "allowed",
        CACHE: "miss",
        KEY_ID: dns.key_id,
        FINGERPRINT: fp,
        CLIENT_IP: "127.0.0.1",
    }
    assert dict(lookup.attributes or {}) == {
        "bearerguard.backend": "StoreBackend(MemoryStore)",
        FINGERPRINT: fp,
        "bearerguard.backend.result": "active",
    }
    # The lookup lies inside the decision, the decision inside the request.
    assert decision.start_time <= lookup.start_time <= lookup.end_time <= decision.end_time

    # Cached path: no span of its own, the decision on the server's span.
    assert t.get("/whoami", dns.token).status_code == 200
    (server,) = t.spans()
    assert dict(server.attributes or {}) == {
        OUTCOME: "allowed",
        CACHE: "hit",
        KEY_ID: dns.key_id,
        FINGERPRINT: fp,
        CLIENT_IP: "127.0.0.1",
    }
    # Without a recording span the cached path records nothing, and still answers.
    assert t.get("/whoami", dns.token, server_span=False).status_code == 200
    assert t.spans() == []


def test_refusals(traced: Any, store: MemoryStore) -> None:
    vps = issue(store, ("vps",))
    t = traced(StoreBackend(store), api="dns", public_paths=["/health"])
    assert t.get("/whoami", "unknown-token").status_code == 401
    named = by_name(t.spans())
    assert named[DECISION_SPAN].attributes is not None
    assert named[DECISION_SPAN].attributes[OUTCOME] == "401"
    assert named[DECISION_SPAN].attributes[ERROR] == "invalid_token"
    assert named[DECISION_SPAN].attributes[CACHE] == "miss"
    assert named[BACKEND_SPAN].attributes is not None
    assert named[BACKEND_SPAN].attributes["bearerguard.backend.result"] == "inactive"

    assert t.get("/whoami", vps.token).status_code == 403  # miss: looked up
    assert t.get("/whoami", vps.token).status_code == 403  # hit: no lookup
    spans = t.spans()
    decisions = [s for s in spans if s.name == DECISION_SPAN]
    assert [d.attributes[CACHE] for d in decisions if d.attributes] == ["miss", "hit"]
    assert [s.name for s in spans].count(BACKEND_SPAN) == 1
    last = dict(decisions[1].attributes or {})
    assert (last[OUTCOME], last[ERROR], last[KEY_ID]) == ("403", "insufficient_scope", vps.key_id)
    assert BACKEND_LATENCY not in last

    assert t.get("/health").status_code == 200
    assert t.get("/whoami", "two words").status_code == 400
    public, malformed = (s for s in t.spans() if s.name == DECISION_SPAN)
    assert dict(public.attributes or {}) == {OUTCOME: "public"}
    assert dict(malformed.attributes or {}) == {OUTCOME: "400", ERROR: "invalid_request"}
    assert_no_secret(spans)


class Failing:
    """A backend whose error message quotes the token, as a careless one might."""

    self_timed = True

    def lookup(self, token: str) -> TokenInfo | None:
        raise BackendUnavailable(f"cannot look up {token}")

    async def alookup(self, token: str) -> TokenInfo | None:
        return self.lookup(token)


def test_backend_failure_is_an_error_span_without_the_message(traced: Any) -> None:
    t = traced(Failing())
    token = "a-token-that-must-not-leak-1234"
    SECRETS.add(token)
    try:
        assert t.get("/whoami", token).status_code == 503
        spans = t.spans()
        named = by_name(spans)
        decision, lookup = named[DECISION_SPAN], named[BACKEND_SPAN]
        assert decision.status.status_code == StatusCode.ERROR
        assert decision.attributes is not None and decision.attributes[OUTCOME] == "503"
        assert lookup.status.status_code == StatusCode.ERROR
        assert lookup.status.description == "BackendUnavailable"
        assert lookup.events == ()  # no exception event: its message quotes the token
        assert lookup.parent is not None and lookup.parent.span_id == decision.context.span_id
        assert_no_secret(spans)
    finally:
        SECRETS.discard(token)


def test_traced_backend_keeps_the_faces_it_wraps() -> None:
    class SyncOnly:
        def lookup(self, token: str) -> TokenInfo | None:
            return None

    class AsyncOnly:
        async def alookup(self, token: str) -> TokenInfo | None:
            return None

    sync_only, async_only = TracedBackend(SyncOnly()), TracedBackend(AsyncOnly())
    assert callable(getattr(sync_only, "lookup", None))
    assert getattr(sync_only, "alookup", None) is None
    assert getattr(async_only, "lookup", None) is None
    assert callable(getattr(async_only, "alookup", None))
    store = StoreBackend(MemoryStore())
    assert TracedBackend(store).self_timed is True
    assert TracedBackend(store).subscribe == store.subscribe


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_django_settings_take_the_traced_classes(
    kind: str, store: MemoryStore, dns: Issued
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    backend = TracedBackend(StoreBackend(store), tracer_provider=provider)
    h = DjangoHarness(kind, backend, guard=TracedGuard(tracer_provider=provider))
    try:
        with provider.get_tracer("test").start_as_current_span("server"):
            assert h.get("/whoami", {"Authorization": f"Bearer {dns.token}"}).status_code == 200
        named = by_name(list(exporter.get_finished_spans()))
        decision, lookup = named[DECISION_SPAN], named[BACKEND_SPAN]
        assert decision.parent is not None
        assert decision.parent.span_id == named["server"].context.span_id
        assert lookup.parent is not None and lookup.parent.span_id == decision.context.span_id
        assert decision.attributes is not None and decision.attributes[KEY_ID] == dns.key_id
    finally:
        h.close()
        provider.shutdown()
