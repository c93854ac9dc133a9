"""OpenTelemetry traces of bearerguard's decisions and backend calls (the ``otel`` extra).

::

    from bearerguard.otel import TracedBackend, TracedGuard

    app = BearerGuardMiddleware(
        app,
        backend=TracedBackend(IntrospectionBackend(...)),
        guard=TracedGuard(public_paths=["/health"]),      # Guard's options
    )

(Django: ``BEARERGUARD = {"BACKEND": TracedBackend(…), "GUARD": TracedGuard(…)}``.)

What a trace shows:

- a ``bearerguard.authenticate`` span (INTERNAL, child of the current span, e.g. the
  server's) for each decision the core makes, with the attributes below;
- under it, a ``bearerguard.backend.lookup`` span (CLIENT) for each backend call, so
  introspection or Redis time is visible; spans that instrumented clients (httpx,
  redis) make inside the call nest under it;
- the cached path (a fresh cache hit, about a microsecond) makes no span of its own: it
  sets the same attributes on the current span, when that span is recording.

Attributes (`OUTCOME` … `BACKEND_LATENCY`): ``bearerguard.outcome`` (``allowed``,
``public``, ``400``, ``401``, ``403``, ``503``, as `bearerguard.metrics.OUTCOMES`),
``bearerguard.error`` (the RFC 6750 code of a refusal), ``bearerguard.cache`` (``hit``
or ``miss``), ``bearerguard.key_id``, ``bearerguard.token.fingerprint`` (12 hex digits
of the token's SHA-256, as in the logs), ``bearerguard.client_ip``,
``bearerguard.backend.latency_ms`` (time spent waiting for the backend). No token,
secret or exception message is ever put in a span: a failed backend call records the
exception's type only.

Without these classes nothing here is imported and nothing is paid. A backend that is
only sync runs in a worker thread under ASGI; its lookup span then starts a new trace.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from . import __version__
from .errors import BackendUnavailable
from .flow import Allow, Decision, Guard, Lookup, RequestFacts
from .tokens import Identity, TokenInfo, fingerprint, token_key

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .backends.base import AsyncTokenBackend, TokenBackend
    from .options import GuardOptions

__all__ = [
    "BACKEND_LATENCY",
    "BACKEND_SPAN",
    "CACHE",
    "CLIENT_IP",
    "DECISION_SPAN",
    "ERROR",
    "FINGERPRINT",
    "KEY_ID",
    "OUTCOME",
    "TracedBackend",
    "TracedGuard",
]

DECISION_SPAN = "bearerguard.authenticate"
BACKEND_SPAN = "bearerguard.backend.lookup"

OUTCOME = "bearerguard.outcome"
ERROR = "bearerguard.error"
CACHE = "bearerguard.cache"
KEY_ID = "bearerguard.key_id"
FINGERPRINT = "bearerguard.token.fingerprint"
CLIENT_IP = "bearerguard.client_ip"
BACKEND_LATENCY = "bearerguard.backend.latency_ms"
BACKEND = "bearerguard.backend"
RESULT = "bearerguard.backend.result"

_get_current_span = trace.get_current_span


def _tracer(provider: TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer("bearerguard", __version__, provider)


def _decision_attributes(decision: Decision) -> dict[str, Any]:
    if isinstance(decision, Allow):
        ident = decision.identity
        if ident is None:
            return {OUTCOME: "public"}
        return _identity_attributes(ident)
    ch = decision.challenge
    attrs: dict[str, Any] = {OUTCOME: str(ch.status)}
    if ch.error is not None:
        attrs[ERROR] = ch.error
    if decision.key_id is not None:
        attrs[KEY_ID] = decision.key_id
    if decision.fingerprint is not None:
        attrs[FINGERPRINT] = decision.fingerprint
    if decision.client_ip is not None:
        attrs[CLIENT_IP] = decision.client_ip
    return attrs


def _identity_attributes(ident: Identity) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        OUTCOME: "allowed",
        KEY_ID: ident.key_id,
        FINGERPRINT: ident.fingerprint,
    }
    if ident.client_ip is not None:
        attrs[CLIENT_IP] = ident.client_ip
    return attrs


class TracedGuard(Guard):
    """A `Guard` that records each decision as a span (module docstring).

    Takes `Guard`'s keyword options, plus `tracer_provider` (default: the global one).
    """

    def __init__(
        self, *, tracer_provider: TracerProvider | None = None, **options: Unpack[GuardOptions]
    ) -> None:
        super().__init__(**options)
        self.tracer = _tracer(tracer_provider)

    def cached_identity(
        self, authorization: bytes, peer: str | None, forwarded: bool = False
    ) -> Identity | None:
        """`Guard.cached_identity`, noting a hit on the current span when it records."""
        ident = Guard.cached_identity(self, authorization, peer, forwarded)
        if ident is not None:
            span = _get_current_span()
            if span.is_recording():
                attrs = _identity_attributes(ident)
                attrs[CACHE] = "hit"
                span.set_attributes(attrs)
        return ident

    def authenticate(
        self, facts: RequestFacts, api: str | None = None
    ) -> Generator[Lookup, TokenInfo | None, Decision]:
        """`Guard.authenticate` inside a ``bearerguard.authenticate`` span.

        While the adapter asks the backend, that span is the current one, so the
        backend's span is its child.
        """
        span = self.tracer.start_span(DECISION_SPAN, kind=SpanKind.INTERNAL)
        flow = Guard.authenticate(self, facts, api)
        waited = 0.0
        lookups = 0
        try:
            step = next(flow)
            while True:
                lookups += 1
                thrown: BackendUnavailable | None = None
                answer: TokenInfo | None = None
                started = time.perf_counter()
                ctx_token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    answer = yield step
                except BackendUnavailable as exc:  # what adapters throw in
                    thrown = exc
                finally:
                    otel_context.detach(ctx_token)
                    waited += time.perf_counter() - started
                step = flow.send(answer) if thrown is None else flow.throw(thrown)
        except StopIteration as stop:
            decision: Decision = stop.value
            attrs = _decision_attributes(decision)
            if FINGERPRINT in attrs:
                attrs[CACHE] = "miss" if lookups else "hit"
            if lookups:
                attrs[BACKEND_LATENCY] = waited * 1000.0
            span.set_attributes(attrs)
            if attrs[OUTCOME] == "503":
                span.set_status(Status(StatusCode.ERROR, "backend unavailable"))
            return decision
        finally:
            span.end()


class TracedBackend:
    """Wrap a backend so that each call is a ``bearerguard.backend.lookup`` span.

    It has the faces the wrapped backend has (``lookup`` and/or ``alookup``), and
    passes ``self_timed``, ``subscribe``, ``close`` and ``aclose`` through. Attributes:
    ``bearerguard.backend`` (the backend's class, and its store's), the token's
    fingerprint, ``bearerguard.backend.result`` (``active``, ``inactive`` or ``error``).
    """

    lookup: Callable[[str], Any]
    alookup: Callable[[str], Any]

    def __init__(
        self,
        backend: TokenBackend | AsyncTokenBackend,
        *,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.backend = backend
        self.tracer = _tracer(tracer_provider)
        name = type(backend).__name__
        store = getattr(backend, "store", None)
        self.name = f"{name}({type(store).__name__})" if store is not None else name
        inner_lookup = getattr(backend, "lookup", None)
        inner_alookup = getattr(backend, "alookup", None)
        if callable(inner_lookup):
            self._inner_lookup = inner_lookup
            self.lookup = self._lookup
        if callable(inner_alookup):
            self._inner_alookup = inner_alookup
            self.alookup = self._alookup

    def __getattr__(self, name: str) -> Any:
        # self_timed, subscribe, close, aclose, …: whatever the wrapped backend has.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.backend, name)

    @contextlib.contextmanager
    def _span(self, token: str) -> Iterator[Callable[[Any], Any]]:
        """A lookup span around the block; the block passes its answer through `done`."""
        span = self.tracer.start_span(
            BACKEND_SPAN,
            kind=SpanKind.CLIENT,
            attributes={BACKEND: self.name, FINGERPRINT: fingerprint(token_key(token))},
        )

        def done(result: Any) -> Any:
            span.set_attribute(RESULT, "inactive" if result is None else "active")
            return result

        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                yield done
        except BaseException as exc:
            # The type only: a message could quote the token (a custom backend's, say).
            span.set_attribute(RESULT, "error")
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()

    def _lookup(self, token: str) -> Any:
        with self._span(token) as done:
            return done(self._inner_lookup(token))

    async def _alookup(self, token: str) -> Any:
        with self._span(token) as done:
            return done(await self._inner_alookup(token))
