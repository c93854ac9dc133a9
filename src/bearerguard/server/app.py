"""The auth service: a Starlette app issuing, introspecting and revoking tokens.

`create_app` checks the options and wires the parts into one app: the OAuth endpoints
(`bearerguard.server.endpoints`, over the state in `bearerguard.server.service`),
``GET /metrics`` (Prometheus counters from `ServiceMetrics`, when prometheus-client is
installed: the ``prometheus`` extra), the panel under ``/panel/`` and the admin API
under ``/admin/``, the exception handlers, and the lifespan that closes the store.

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

import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from ..clientip import ClientIPResolver
from ..credentials import DEFAULT_MAX_TOKEN_LENGTH
from ..errors import BackendUnavailable, ConfigurationError
from ..metrics import ServiceMetrics
from ..stores.base import TokenStore
from .endpoints import Endpoints
from .forms import MAX_HEADER_BYTES, BadRequest
from .keycache import DEFAULT_KEY_CACHE_TTL
from .service import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BODY,
    TOKEN_BODY_LIMIT,
    _Service,
    token_body_limit,
)
from .throttle import Throttle, default_throttle

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "MAX_HEADER_BYTES",
    "TOKEN_BODY_LIMIT",
    "create_app",
    "token_body_limit",
]


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
            *Endpoints(service).routes(),
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
