"""Django integration: middleware for sync and async Django, `require_api`, DRF classes.

settings.py::

    MIDDLEWARE = [
        # after AuthenticationMiddleware when USER is on, so ours sets request.user last
        "bearerguard.django.BearerGuardMiddleware",
        ...
    ]
    BEARERGUARD = {
        "PUBLIC_PATHS": ["/health"],   # any Guard/middleware option, upper-case
        "USER": True,                  # request.user = APIKeyUser for allowed requests
        # "BACKEND": StoreBackend(open_store("redis://…")),   default: from_env()
    }

views.py::

    @require_api("dns")
    def zones(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"key_id": request.bearerguard.key_id})

The middleware decides every request before Django routes it, through one of the two
adapters: the sync chain through `WSGIBearerGuard`, the async chain (ASGI Django with
async-capable middleware around it) through `BearerGuardMiddleware`, so a sync Django process
never starts an event loop and an async one never blocks it. Refusals are the same
RFC 6750 answers (status, JSON body, ``WWW-Authenticate``) as every other adapter.
An allowed request carries its `Identity` in ``request.bearerguard`` (None on a public
path), as ``request.META["bearerguard.identity"]`` too.

``BEARERGUARD`` keys: ``BACKEND`` (a backend object or the dotted path of one, or of a
zero-argument factory; unset: `bearerguard.config.from_env`, whose trusted proxies are
used unless ``TRUSTED_PROXIES`` is given), ``USER`` (bool), and the keyword options of
`Guard` and the middleware in upper case (``API``, ``PUBLIC_PATHS``,
``TRUSTED_PROXIES``, ``REALM``, ``CACHE_TTL``, ``BACKEND_TIMEOUT``, …). Public paths
match ``request.path_info`` (without a ``SCRIPT_NAME`` prefix). ``RATE_LIMIT``
(`bearerguard.ratelimit`) answers 429 to an API key over its rate, before the view runs.

Django REST framework (``BearerGuardAuthentication``, ``HasAPI``, imported from here
but loaded only when used)::

    class Zones(APIView):
        authentication_classes = [BearerGuardAuthentication]
        permission_classes = [HasAPI("dns")]

Security: the peer address is ``REMOTE_ADDR`` as the server gives it; do not let a
middleware before this one rewrite it from ``X-Forwarded-For``. Configure proxy trust
with ``TRUSTED_PROXIES`` only.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.module_loading import import_string

from .asgi import BearerGuardMiddleware as _ASGIGuard
from .errors import MISSING, Challenge, ConfigurationError, quote_param
from .flow import Deny, Guard
from .ratelimit import RateLimiter, Verdict
from .tokens import Identity
from .wsgi import WSGIBearerGuard

if TYPE_CHECKING:
    from ._drf import BearerGuardAuthentication, HasAPI

__all__ = [
    "APIKeyUser",
    "BearerGuardAuthentication",
    "BearerGuardMiddleware",
    "HasAPI",
    "challenge_for",
    "challenge_response",
    "require_api",
]

F = TypeVar("F", bound=Callable[..., Any])
GetResponse = Callable[[HttpRequest], Any]

IDENTITY_KEY = "bearerguard.identity"
GUARD_KEY = "bearerguard.guard"
_LOCAL = {"BACKEND", "USER"}


class APIKeyUser:
    """A lightweight ``request.user`` for a request allowed by an API key (no database).

    `key_id` doubles as ``username``, ``pk`` and ``id``; `apis` are the key's APIs.
    It has no Django permissions (``has_perm`` is False): check APIs with `require_api`.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.key_id = self.username = self.pk = self.id = identity.key_id
        self.apis = identity.apis

    def get_username(self) -> str:
        return self.key_id

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perms: object, obj: object = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def __str__(self) -> str:
        return self.key_id

    def __repr__(self) -> str:
        return f"APIKeyUser({self.key_id!r})"


def _resolve_backend(value: Any) -> Any:
    if isinstance(value, str):
        value = import_string(value)
        if callable(value) and not hasattr(value, "lookup") and not hasattr(value, "alookup"):
            value = value()
    return value


def _options(conf: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(backend, keyword options) from ``settings.BEARERGUARD``.

    Settings are untyped: the middlewares check the backend's faces and the options
    when they are built, and a bad one becomes ImproperlyConfigured.
    """
    options = {k.lower(): v for k, v in conf.items() if k not in _LOCAL}
    if "BACKEND" in conf:
        return _resolve_backend(conf["BACKEND"]), options
    from .config import from_env

    env = from_env()
    for key, value in env.options.items():
        options.setdefault(key, value)
    return env.backend, options


def challenge_response(challenge: Challenge, realm: str) -> HttpResponse:
    """`challenge` as a Django response: status, ``WWW-Authenticate``, JSON body."""
    response = HttpResponse(challenge.to_body(), status=challenge.status)
    for name, value in challenge.to_headers(realm):
        response[name] = value
    return response


def _limited(limiter: RateLimiter, verdict: Verdict) -> HttpResponse:
    """The ``RATE_LIMIT`` refusal (429) as a Django response."""
    headers, body = limiter.refusal(verdict)
    response = HttpResponse(body, status=429)
    for name, value in headers:
        response[name] = value
    return response


def _with_fields(
    response: HttpResponseBase, limiter: RateLimiter, verdict: Verdict
) -> HttpResponseBase:
    """An allowed response with the ``RATE_LIMIT`` fields (``RateLimit``, its policy)."""
    for name, value in limiter.fields(verdict):
        response[name] = value
    return response


class BearerGuardMiddleware:
    """Django middleware: check the bearer token of every request (sync or async).

    Configured from ``settings.BEARERGUARD`` (module docstring); a bad setting raises
    ImproperlyConfigured when Django loads the middleware. `guard` is the `Guard`.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        conf = getattr(settings, "BEARERGUARD", {})
        if not isinstance(conf, Mapping):
            raise ImproperlyConfigured("settings.BEARERGUARD must be a dict")
        self.set_user = bool(conf.get("USER", False))
        self.is_async = iscoroutinefunction(get_response)
        try:
            backend, options = _options(conf)
            if self.is_async:
                markcoroutinefunction(self)
                self.adapter: _ASGIGuard | WSGIBearerGuard = _ASGIGuard(
                    _unreachable_asgi, backend=backend, **options
                )
            else:
                self.adapter = WSGIBearerGuard(_unreachable_wsgi, backend=backend, **options)
        except (ConfigurationError, TypeError) as exc:
            raise ImproperlyConfigured(f"settings.BEARERGUARD: {exc}") from exc
        self.guard: Guard = self.adapter.guard
        self.limiter = self.adapter.limiter

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        meta = request.META
        identity = self._cached(meta)
        if identity is None:
            assert isinstance(self.adapter, WSGIBearerGuard)
            decision = self.adapter.decide(_environ(request))
            if isinstance(decision, Deny):
                return challenge_response(decision.challenge, self.guard.realm)
            identity = decision.identity
        if self.limiter is not None and identity is not None:
            verdict = self.limiter.check(identity.key_id)
            if not verdict.allowed:
                return _limited(self.limiter, verdict)
            self._attach(request, identity)
            return _with_fields(self.get_response(request), self.limiter, verdict)
        self._attach(request, identity)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        identity = self._cached(request.META)
        if identity is None:
            assert isinstance(self.adapter, _ASGIGuard)
            decision = await self.adapter.decide(_scope(request))
            if isinstance(decision, Deny):
                return challenge_response(decision.challenge, self.guard.realm)
            identity = decision.identity
        verdict = None
        if self.limiter is not None and identity is not None:
            verdict = await self.limiter.acheck(identity.key_id)
            if not verdict.allowed:
                return _limited(self.limiter, verdict)
        self._attach(request, identity)
        response = await cast("Awaitable[HttpResponseBase]", self.get_response(request))
        if self.limiter is not None and verdict is not None:
            return _with_fields(response, self.limiter, verdict)
        return response

    def _cached(self, meta: Mapping[str, Any]) -> Identity | None:
        # The adapters' hot path: one Authorization value whose token is fresh in the cache.
        auth = meta.get("HTTP_AUTHORIZATION")
        if auth is None or not auth.isascii():
            return None
        return self.guard.cached_identity(
            auth.encode(), meta.get("REMOTE_ADDR"), "HTTP_X_FORWARDED_FOR" in meta
        )

    def _attach(self, request: HttpRequest, identity: Identity | None) -> None:
        request.bearerguard = identity  # type: ignore[attr-defined]
        request.META[GUARD_KEY] = self.guard
        if identity is not None:
            request.META[IDENTITY_KEY] = identity
            if self.set_user:
                request.user = APIKeyUser(identity)  # type: ignore[assignment]

    def close(self) -> None:
        """Stop listening for revocations and release worker threads."""
        self.adapter.close()


def _environ(request: HttpRequest) -> dict[str, Any]:
    # Under WSGI, META is the environ; under ASGI, Django builds the same keys. Public
    # paths match path_info, under both.
    meta = request.META
    return {**meta, "PATH_INFO": request.path_info or "/"}


def _latin1(value: str) -> bytes:
    # META values are latin-1 text in both Django handlers; anything else cannot be a
    # valid token and is refused by the core as malformed, never a 500.
    return value.encode("latin-1", "replace")


def _scope(request: HttpRequest) -> dict[str, Any]:
    """An ASGI HTTP scope with what the core reads, from either kind of Django request."""
    meta = request.META
    headers: list[tuple[bytes, bytes]] = []
    auth = meta.get("HTTP_AUTHORIZATION")
    if auth is not None:
        headers.append((b"authorization", _latin1(auth)))
    xff = meta.get("HTTP_X_FORWARDED_FOR")
    if xff is not None:
        headers.append((b"x-forwarded-for", _latin1(xff)))
    peer = meta.get("REMOTE_ADDR")
    return {
        "type": "http",
        "path": request.path_info or "/",
        "headers": headers,
        "query_string": _latin1(meta.get("QUERY_STRING", "")),
        "client": (peer, 0) if peer else None,
    }


async def _unreachable_asgi(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("bearerguard.django drives the ASGI guard itself")  # pragma: no cover


def _unreachable_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    raise RuntimeError("bearerguard.django drives the WSGI guard itself")  # pragma: no cover


def challenge_for(request: HttpRequest, api: str | None) -> tuple[Challenge | None, str]:
    """Decide a per-view requirement: (the refusal or None, the realm to render it in).

    `api` None asks only for an identity (any valid token); no identity (a public path)
    is a 401. Raises ImproperlyConfigured when the middleware did not run.
    """
    guard = request.META.get(GUARD_KEY)
    if not isinstance(guard, Guard):
        # A programming error: refuse loudly rather than let a view run unguarded.
        raise ImproperlyConfigured(
            "bearerguard: add 'bearerguard.django.BearerGuardMiddleware' to MIDDLEWARE"
        )
    identity = getattr(request, "bearerguard", None)
    if not isinstance(identity, Identity):
        return MISSING, guard.realm
    if api is None:
        return None, guard.realm
    return guard.check_api(identity, api), guard.realm


def require_api(api: str) -> Callable[[F], F]:
    """Decorate a view (sync or async) so it runs only for keys with API `api`.

    Otherwise the answer is 403 ``insufficient_scope`` with ``scope="<api>"``, or 401
    when the request has no identity (its path is public). For a class-based view, use
    ``method_decorator(require_api("dns"), name="dispatch")``.
    """
    quote_param(api)  # an API name that cannot go in a challenge fails here, not per request

    def decorate(view: F) -> F:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                challenge, realm = challenge_for(request, api)
                if challenge is not None:
                    return challenge_response(challenge, realm)
                return await view(request, *args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            challenge, realm = challenge_for(request, api)
            if challenge is not None:
                return challenge_response(challenge, realm)
            return view(request, *args, **kwargs)

        return cast(F, wrapper)

    return decorate


def __getattr__(name: str) -> Any:
    # The DRF classes live in their own module: plain Django projects never import DRF.
    if name in ("BearerGuardAuthentication", "HasAPI"):
        from . import _drf

        return getattr(_drf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
