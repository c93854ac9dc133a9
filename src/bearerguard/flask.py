"""Flask integration: the `BearerGuard` extension, `require_api` and `current_identity`.

::

    guard = BearerGuard(backend=StoreBackend(open_store(url)), public_paths=["/health"])

    def create_app() -> Flask:
        app = Flask(__name__)
        guard.init_app(app)
        app.register_blueprint(dns)
        return app

    @dns.get("/zones")
    @require_api("dns")
    def zones():
        return {"key_id": current_identity.key_id}

`init_app` wraps ``app.wsgi_app`` with `WSGIBearerGuard`, so every request is decided by
the core before Flask routes it, and refusals are the middleware's RFC 6750 answers.
`require_api` adds a per-view requirement on top; its 403 is rendered from the same
`Challenge`. To require an API for a whole blueprint::

    @bp.before_request
    @require_api("dns")
    def _needs_dns() -> None:
        return None

Security: do not put ``werkzeug.middleware.proxy_fix.ProxyFix`` *outside* the guard
(``app.wsgi_app = ProxyFix(app.wsgi_app)`` after `init_app`): it would rewrite
``REMOTE_ADDR`` from ``X-Forwarded-For`` before the guard sees it. Configure proxy trust
with the ``trusted_proxies`` option only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flask import Flask, Response, current_app, request
from werkzeug.local import LocalProxy

from .errors import MISSING, Challenge, quote_param
from .tokens import Identity
from .wsgi import WSGIBearerGuard

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from typing_extensions import Unpack

    from .backends.base import TokenBackend
    from .options import AdapterOptions

__all__ = ["BearerGuard", "current_identity", "get_identity", "require_api"]

F = TypeVar("F", bound=Callable[..., Any])

EXTENSION_KEY = "bearerguard"
ENVIRON_KEY = "bearerguard.identity"


def get_identity() -> Identity | None:
    """The `Identity` of the current request, or None (public path, no request)."""
    identity = request.environ.get(ENVIRON_KEY)
    return identity if isinstance(identity, Identity) else None


current_identity: Identity = LocalProxy(get_identity)  # type: ignore[assignment]
"""The current request's `Identity` (a proxy; falsy on public paths)."""


class BearerGuard:
    """Flask extension: guard every request of the app with bearer tokens.

    ``BearerGuard(app, backend=…, api=None, **options)`` or, for app factories,
    ``guard = BearerGuard(backend=…)`` then ``guard.init_app(app)`` (one extension may
    serve several apps; each gets its own cache). `backend` needs a sync ``lookup``.
    `api`: the API every protected request needs (None: any valid token). The other
    options are `WSGIBearerGuard`'s and `Guard`'s (``public_paths``, ``trusted_proxies``,
    ``realm``, ``backend_timeout``, …).

    Raises ConfigurationError from `init_app` for options that cannot work.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        backend: TokenBackend,
        **options: Unpack[AdapterOptions],
    ) -> None:
        self.backend = backend
        self.api = options.get("api")
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> WSGIBearerGuard:
        """Wrap `app`'s WSGI app with the guard; return the `WSGIBearerGuard`."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("BearerGuard is already initialised on this app")
        middleware = WSGIBearerGuard(
            cast("WSGIApplication", app.wsgi_app),
            backend=self.backend,
            **self.options,
        )
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = middleware
        return middleware

    @staticmethod
    def middleware_for(app: Flask) -> WSGIBearerGuard:
        """The `WSGIBearerGuard` `init_app` installed on `app` (RuntimeError if none)."""
        middleware = app.extensions.get(EXTENSION_KEY)
        if not isinstance(middleware, WSGIBearerGuard):
            # A programming error: refuse loudly rather than let a view run unguarded.
            raise RuntimeError("require_api needs BearerGuard(app) or guard.init_app(app)")
        return middleware


def _challenge_response(challenge: Challenge, realm: str) -> Response:
    return Response(
        challenge.to_body(), status=challenge.status, headers=challenge.to_headers(realm)
    )


def require_api(api: str) -> Callable[[F], F]:
    """Decorate a view so it runs only for tokens whose key has API `api`.

    Otherwise the answer is 403 ``insufficient_scope`` with ``scope="<api>"`` in the
    challenge, or 401 when the request carries no identity (e.g. the path was made
    public): a view that needs an API never runs unauthenticated.
    """
    quote_param(api)  # an API name that cannot go in a challenge fails here, not per request

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            middleware = BearerGuard.middleware_for(current_app)
            identity = get_identity()
            challenge = MISSING if identity is None else middleware.guard.check_api(identity, api)
            if challenge is not None:
                return _challenge_response(challenge, middleware.guard.realm)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
