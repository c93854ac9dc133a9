"""The auth service: a Starlette app issuing, introspecting and revoking tokens.

Endpoints (see `create_app`):

* ``POST /login`` — OAuth 2.0 client-credentials grant (RFC 6749 §4.4), the key sent as
  HTTP Basic (or ``client_id``/``client_secret`` form fields);
* ``POST /introspect`` — RFC 7662, for keys with the introspection right; an active
  token's answer has ``client_id`` (key id), ``scope`` (its APIs), ``exp``, ``iat``,
  ``token_type`` and the extension members ``ip`` (the bound address) and ``ttl`` (the
  sliding lifetime); a successful introspection counts as a use — when the form carries
  the extension member ``client_ip`` (the address of the request the resource server
  is checking), only if that is the token's own address (H4);
* ``POST /revoke`` — RFC 7009: a key revokes its own tokens, a key with the
  introspection right any token; someone else's token is left alone with the same 200
  (RFC 7009 §2.2 answers 200 for unknown tokens too), so the answer reveals nothing;
* ``GET /.well-known/oauth-authorization-server`` — RFC 8414 metadata;
* ``GET /health`` — liveness: the process answers (never touches the store);
* ``GET /ready`` — readiness: 200 while the store answers, 503 when it does not;
* ``GET /metrics`` — Prometheus counters (`ServiceMetrics`), when prometheus-client is
  installed (the ``prometheus`` extra); absent otherwise.

Security: tokens are 256-bit random strings stored only as SHA-256 digests, bound to
the address that obtained them (resolved with `ClientIPResolver`, so proxy trust is
configured in one place), and slide: each use moves expiry to ``now + token_ttl``.
Wrong secrets are throttled per existing key id and per source address (`LoginThrottle`,
or `SharedLoginThrottle` in Redis when the store is Redis: 5 failures within 60 s,
then a wrong guess gets 429 with ``Retry-After``);
the right secret is checked on every attempt and always accepted, so nobody can lock
a key's owner out (H3). Bodies are read with a hard size limit (on ``/introspect`` and
``/revoke`` large enough for any token the middleware accepts, H1) and parsed
strictly; bad input is a 4xx JSON error, a failing store a 503, never a 500. Tokens
and secrets are never logged: a token appears in logs only as its fingerprint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from ..clientip import ClientIPResolver
from ..credentials import DEFAULT_MAX_TOKEN_LENGTH
from ..errors import BackendUnavailable, ConfigurationError, log_safe, quote_param
from ..metrics import ServiceMetrics
from ..rfc7662 import introspection_answer, introspection_request, whole_seconds
from ..stores.base import (
    TokenRecord,
    TokenStore,
    new_token,
)
from ..tokens import fingerprint, token_digest
from .clients import ClientAuthenticator, invalid_client
from .forms import (
    MAX_HEADER_BYTES,
    BadRequest,
    parse_resources,
    parse_scope,
    read_body,
    read_form,
)
from .keycache import DEFAULT_KEY_CACHE_TTL, KeyCache
from .store import ServiceStore
from .throttle import Throttle, default_throttle

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "MAX_HEADER_BYTES",
    "TOKEN_BODY_LIMIT",
    "create_app",
    "token_body_limit",
]

logger = logging.getLogger("bearerguard.server")

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

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_REPEATABLE = frozenset({"resource"})


def _error(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 6749 §5.2 error response."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**_NO_STORE, **(headers or {})},
    )


class _Service:
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
    async def _form(self, request: Request, limit: int | None = None) -> dict[str, str]:
        limit = limit or self.max_body
        return await read_form(request, limit, self.body_timeout, repeatable=_REPEATABLE)

    async def read_body(self, request: Request) -> bytes:
        """The body (size and time bounded, headers too) for the admin API and the panel."""
        return await read_body(request, self.max_body, self.body_timeout)

    def client_ip(self, request: Request) -> str | None:
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
        return _error(exc.error, exc.description, exc.status, headers)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        """A failing store (`StoreUnavailable`, any `BackendUnavailable`): 503."""
        self.metrics.store_errors += 1
        return _error(
            "temporarily_unavailable", "The token store is unavailable", 503, {"Retry-After": "5"}
        )

    # -- endpoints --------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        grant = form.get("grant_type")
        if grant is None:
            raise BadRequest("invalid_request", "Missing grant_type")
        # Authenticate before judging the grant type, so a bad key always reads the
        # same whatever else the request says.
        key = await self.clients.authenticate(request, form)
        if grant != "client_credentials":
            raise BadRequest("unsupported_grant_type", "Only client_credentials is supported")
        requested = parse_scope(form.get("scope"))
        apis = key.apis
        if requested is not None:
            if not requested <= key.apis:
                raise BadRequest("invalid_scope", "The key does not grant the requested scope")
            apis = requested
        # RFC 8707 §2: the token is meant for these resources (its audience).
        audience = parse_resources(form.get("resource"))
        ip = self.client_ip(request)
        if ip is None:
            raise BadRequest("invalid_request", "Cannot determine the client address")
        token = new_token()
        digest = token_digest(token)
        now = self.clock()
        await self.store.put_token(
            TokenRecord(
                digest=digest,
                key_id=key.key_id,
                apis=apis,
                bound_ip=ip,
                issued_at=now,
                ttl=self.token_ttl,
                expires_at=now + self.token_ttl,
                audience=audience,
            )
        )
        self.metrics.tokens_issued += 1
        logger.info(
            "issued token %s to key %s at %s", fingerprint(digest), log_safe(key.key_id), ip
        )
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": whole_seconds(self.token_ttl),
            "token_type": "bearer",
        }
        if requested is not None:
            # RFC 6749 §5.1: scope is OPTIONAL when identical to the one requested.
            body["scope"] = " ".join(sorted(apis))
        return JSONResponse(body, headers=_NO_STORE)

    async def introspect(self, request: Request) -> Response:
        form = await self._form(request, self.token_body)
        key = await self.clients.authenticate(request, form)
        if not key.introspect:
            # RFC 7662 §2.1: the endpoint MUST require authorization of the caller.
            raise invalid_client("This key may not introspect tokens")
        try:
            token, client_ip = introspection_request(form)
        except ValueError as exc:
            raise BadRequest("invalid_request", str(exc)) from None
        record = None
        if len(token) <= self.max_token_length:
            record = await self.store.touch_token(token_digest(token), self.clock(), client_ip)
        self.metrics.introspections["inactive" if record is None else "active"] += 1
        return JSONResponse(introspection_answer(record), headers=_NO_STORE)

    async def revoke(self, request: Request) -> Response:
        form = await self._form(request, self.token_body)
        key = await self.clients.authenticate(request, form)
        token = form.get("token")
        if token is None:
            raise BadRequest("invalid_request", "Missing token")
        if len(token) <= self.max_token_length:
            digest = token_digest(token)
            record = await self.store.get_token(digest, self.clock())
            # A key revokes its own tokens; a key with the introspection right (a
            # resource server) may revoke any. Someone else's token is left alone with
            # the same 200, so the answer does not reveal that it exists.
            if record is not None and (record.key_id == key.key_id or key.introspect):
                await self.store.revoke_token(digest)
                self.metrics.revocations += 1
                logger.info("revoked token %s (by key %s)", fingerprint(digest), key.key_id)
        # RFC 7009 §2.2: 200 also for invalid or unknown tokens.
        return Response(status_code=200, headers=_NO_STORE)

    async def metadata(self, request: Request) -> Response:
        # Without an issuer the URLs follow the request's Host: no-store, so no cache
        # keeps what one client's Host header made of them (H7).
        issuer = self.issuer or str(request.base_url).rstrip("/")
        auth_methods = ["client_secret_basic", "client_secret_post"]
        return JSONResponse(
            {
                "issuer": issuer,
                "token_endpoint": issuer + "/login",
                "introspection_endpoint": issuer + "/introspect",
                "revocation_endpoint": issuer + "/revoke",
                "grant_types_supported": ["client_credentials"],
                # RFC 8707: /login takes resource; RFC 6750 §2.1: tokens go in a header.
                # (resource_indicators_supported is not IANA-registered; it says so.)
                "resource_indicators_supported": True,
                "response_types_supported": [],
                "token_endpoint_auth_methods_supported": auth_methods,
                "introspection_endpoint_auth_methods_supported": auth_methods,
                "revocation_endpoint_auth_methods_supported": auth_methods,
            },
            headers=_NO_STORE,
        )

    async def health(self, request: Request) -> Response:
        """Liveness: the process serves requests."""
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """Readiness: the store answers."""
        try:
            await self.store.ping()
        except BackendUnavailable:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})


def create_app(
    store: TokenStore,
    *,
    token_ttl: float = 300,
    trusted_proxies: Iterable[str] = (),
    issuer: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    login_throttle: Throttle | None = None,
    realm: str = "bearerguard",
    clock: Callable[[], float] = time.time,
    close_store: bool = False,
    metrics: ServiceMetrics | None = None,
    rotation_grace: float = 86400.0,
    panel_secure_cookies: bool | None = None,
    panel_api_url: str | None = None,
    key_cache_ttl: float = DEFAULT_KEY_CACHE_TTL,
) -> Starlette:
    """Build the auth service around `store` (from `bearerguard.stores.open_store`).

    `token_ttl` is the sliding lifetime of tokens in seconds (``expires_in``).
    `trusted_proxies` (IPs or CIDRs) are the peers whose ``X-Forwarded-For`` is read to
    find the client address a token is bound to; with none, the peer address is used.
    `issuer` is the public base URL announced in the RFC 8414 metadata (default: the
    request's own base URL, sent with ``Cache-Control: no-store`` — set it when the
    service is behind a proxy). `max_body` bounds ``/login`` bodies; ``/introspect``
    and ``/revoke`` take `token_body_limit(max_token_length)`, so any token a
    middleware with that `max_token_length` accepts fits (H1). `body_timeout` bounds
    the time to receive a body (408 after), and headers beyond `MAX_HEADER_BYTES` get
    431. `login_throttle` slows down wrong secrets per key id and per source address
    (default: 5 failures within 60 s, kept in Redis and so shared by every replica when
    the store is Redis, per process otherwise; the right secret always passes).
    `clock` gives
    wall-clock seconds. With `close_store`, the store is closed on shutdown. `metrics`
    collects the service's counters (a fresh `ServiceMetrics` by default, at
    ``app.state.metrics``), served at ``/metrics`` when prometheus-client is installed.
    `rotation_grace` is how long a rotated secret keeps working when the panel or the
    admin API rotates a key (default 24 h). The customer control panel is served under
    ``/panel/`` (`bearerguard.server.panel`) and the admin API under ``/admin/``
    (`bearerguard.server.admin`); the panel's cookies are ``Secure`` when the issuer is
    https (or when `panel_secure_cookies` says so); `panel_api_url` is the API URL its
    curl example calls (default: ``"$API_URL"``, for the customer to fill in).
    `key_cache_ttl` is how long a key record that authenticated is reused without a
    store read (`KeyCache`, default 1 s; 0 turns the cache off): the secret is still
    checked on every call, and a revoked key is refused within that time on every
    worker, at once where the store announces revocations (Redis pub/sub).

    Raises ConfigurationError for a bad option.
    """
    if not token_ttl > 0:
        raise ConfigurationError("token_ttl must be a positive number of seconds")
    if max_body < 256:
        raise ConfigurationError("max_body must be at least 256 bytes")
    if max_token_length < 1:
        raise ConfigurationError("max_token_length must be at least 1")
    if not body_timeout > 0:
        raise ConfigurationError("body_timeout must be a positive number of seconds")
    if not rotation_grace >= 0:
        raise ConfigurationError("rotation_grace must be a number of seconds, 0 or more")
    if not 0 <= key_cache_ttl <= 60:
        raise ConfigurationError("key_cache_ttl must be between 0 and 60 seconds")
    trusted_proxies = tuple(trusted_proxies)
    service = _Service(
        store,
        token_ttl=token_ttl,
        resolver=ClientIPResolver(trusted_proxies),
        issuer=issuer,
        max_body=max_body,
        max_token_length=max_token_length,
        body_timeout=body_timeout,
        throttle=login_throttle or default_throttle(store),
        realm=realm,
        clock=clock,
        metrics=metrics or ServiceMetrics(),
        rotation_grace=rotation_grace,
        key_cache_ttl=key_cache_ttl,
    )
    from .admin import admin_app
    from .panel import panel_app

    if panel_secure_cookies is None:
        panel_secure_cookies = bool(issuer and issuer.lower().startswith("https://"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if service.unsubscribe is not None:
                service.unsubscribe()
            if close_store:
                await service.store.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            {"error": "invalid_request", "error_description": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    app = Starlette(
        routes=[
            Route("/login", service.login, methods=["POST"]),
            Route("/introspect", service.introspect, methods=["POST"]),
            Route("/revoke", service.revoke, methods=["POST"]),
            Route("/.well-known/oauth-authorization-server", service.metadata, methods=["GET"]),
            Route("/health", service.health, methods=["GET"]),
            Route("/ready", service.ready, methods=["GET"]),
            *_metrics_routes(service.metrics),
            Mount("/admin", app=admin_app(service, trusted_proxies=trusted_proxies)),
            Mount(
                "/panel",
                app=panel_app(service, secure_cookies=panel_secure_cookies, api_url=panel_api_url),
            ),
        ],
        exception_handlers={
            HTTPException: http_error,
            BadRequest: service.bad_request,
            BackendUnavailable: service.unavailable,  # StoreUnavailable too
        },
        lifespan=lifespan,
    )
    app.state.bearerguard = service
    app.state.metrics = service.metrics
    return app


def _metrics_routes(metrics: ServiceMetrics) -> list[Route]:
    """``/metrics`` over a registry of this app's own, if prometheus-client is there."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from ..prometheus import ServiceCollector
    except ImportError:
        return []
    registry = CollectorRegistry()
    registry.register(ServiceCollector(metrics))

    async def scrape(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", scrape, methods=["GET"])]
