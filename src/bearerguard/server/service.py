"""The auth service's state: options, store, key cache, throttle and client authentication.

`_Service` holds what the endpoints (`bearerguard.server.endpoints`), the admin API and
the panel share: the store, the key cache kept fresh by revocation announcements, the
login throttle and client authentication, the bounded body and form readers, and the
exception handlers that turn `BadRequest` and a failing store into RFC 6749 §5.2 JSON
errors. The body limits are here too.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..clientip import ClientIPResolver
from ..credentials import DEFAULT_MAX_TOKEN_LENGTH
from ..errors import quote_param
from ..metrics import ServiceMetrics
from ..stores.base import TokenStore
from .clients import ClientAuthenticator
from .forms import BadRequest, read_body, read_form
from .keycache import DEFAULT_KEY_CACHE_TTL, KeyCache
from .store import ServiceStore
from .throttle import Throttle

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "NO_STORE",
    "TOKEN_BODY_LIMIT",
    "error_response",
    "token_body_limit",
]

DEFAULT_MAX_BODY = 8192
"""Largest request body accepted on ``/login``, in bytes (larger: 413 ``invalid_request``)."""


def token_body_limit(max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH) -> int:
    """Largest body of ``/introspect`` and ``/revoke``: room for any accepted token (H1).

    A token of `max_token_length` b64token characters form-encodes to at most three
    bytes a character (``/`` is ``%2F``); 2 KiB more holds the other members
    (``token_type_hint``, ``client_ip``, ``client_id`` and ``client_secret``).
    """
    return 3 * max_token_length + 2048


TOKEN_BODY_LIMIT = token_body_limit()
"""`token_body_limit` for the middleware's default ``max_token_length`` (14,336 bytes)."""

DEFAULT_BODY_TIMEOUT = 10.0
"""Seconds a client has to send the whole request body (then 408)."""

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""Headers of every answer that carries a token or an error (RFC 6749 §5.1)."""
_REPEATABLE = frozenset({"resource"})
"""Form members that may repeat (RFC 8707 ``resource``)."""


def error_response(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 6749 §5.2 error response."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


class _Service:
    """The service's state, shared by the endpoints, the admin API and the panel."""

    def __init__(
        self,
        store: TokenStore,
        *,
        token_ttl: float,
        resolver: ClientIPResolver,
        issuer: str | None,
        max_body: int,
        max_token_length: int,
        body_timeout: float,
        throttle: Throttle,
        realm: str,
        clock: Callable[[], float],
        metrics: ServiceMetrics,
        rotation_grace: float = 86400.0,
        key_cache_ttl: float = DEFAULT_KEY_CACHE_TTL,
    ) -> None:
        self.store = ServiceStore(store)
        self.keys = KeyCache(key_cache_ttl)
        # Revoked keys leave the cache when the store announces it (Redis: pub/sub, every
        # worker and replica); the TTL bounds it when no announcement comes.
        self.unsubscribe = (
            self.store.subscribe(self.keys.invalidated) if key_cache_ttl > 0 else None
        )
        self.rotation_grace = float(rotation_grace)
        self.metrics = metrics
        self.token_ttl = float(token_ttl)
        self.resolver = resolver
        self.issuer = issuer.rstrip("/") if issuer else None
        self.max_body = max_body
        self.max_token_length = max_token_length
        self.token_body = max(max_body, token_body_limit(max_token_length))
        self.body_timeout = body_timeout
        self.throttle = throttle
        self.clock = clock
        self.basic_challenge = f"Basic realm={quote_param(realm)}"
        self.clients = ClientAuthenticator(
            self.store,
            throttle=throttle,
            metrics=metrics,
            clock=clock,
            resolver=resolver,
            keys=self.keys,
        )

    # -- shared steps -----------------------------------------------------------------
    async def read_form(self, request: Request, limit: int | None = None) -> dict[str, str]:
        """The form (size and time bounded; `limit` defaults to `max_body`)."""
        limit = limit or self.max_body
        return await read_form(request, limit, self.body_timeout, repeatable=_REPEATABLE)

    async def read_body(self, request: Request) -> bytes:
        """The body (size and time bounded, headers too) for the admin API and the panel."""
        return await read_body(request, self.max_body, self.body_timeout)

    def client_ip(self, request: Request) -> str | None:
        """The address a token for this request is bound to (proxy trust applied)."""
        return self.clients.client_ip(request)

    # -- errors: exception handlers of the whole app (the admin API's too) ------------
    async def bad_request(self, request: Request, exc: Exception) -> Response:
        """A `BadRequest` as an RFC 6749 §5.2 JSON error (401: with a Basic challenge)."""
        assert isinstance(exc, BadRequest)
        headers: dict[str, str] = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = self.basic_challenge
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return error_response(exc.error, exc.description, exc.status, headers)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        """A failing store (`StoreUnavailable`, any `BackendUnavailable`): 503.

        The key cache is emptied too: a store that failed may come back without what it
        held (a Redis restarted empty, a failover that lost writes) and its
        announcements may have been lost meanwhile, so the next call reads each key anew.
        """
        self.metrics.store_errors += 1
        self.keys.clear()
        return error_response(
            "temporarily_unavailable", "The token store is unavailable", 503, {"Retry-After": "5"}
        )
