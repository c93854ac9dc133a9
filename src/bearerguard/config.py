"""Configuration from the environment: `from_env()`.

The ``BEARERGUARD_*`` variables (docs/design.md, "Examples")::

    BEARERGUARD_INTROSPECTION_URL   RFC 7662 endpoint, e.g. http://127.0.0.1:8000/introspect
    BEARERGUARD_CLIENT_ID           Key ID the resource server introspects with
    BEARERGUARD_CLIENT_SECRET       its secret (create the key with ``--introspect``)
    BEARERGUARD_STORE               store URL when not introspecting
                                    (default ``sqlite:///bearerguard.db``)
    BEARERGUARD_TRUSTED_PROXIES     comma-separated IPs/CIDRs whose X-Forwarded-For is believed
    BEARERGUARD_JWT_ISSUER          an issuer of RFC 9068 JWT access tokens (JWTBackend)
    BEARERGUARD_JWKS_URL            its JWKS (optional: found through its metadata)
    BEARERGUARD_AUDIENCE            this API's name in tokens: audience= (any backend)
    BEARERGUARD_RESOURCE            this API's resource URL: RFC 9728 metadata on
    BEARERGUARD_TOKEN_FORMAT        ``bearerguard``: refuse tokens not shaped like those of
                                    ``bearerguard serve`` with 401, no lookup (the default
                                    over a store); ``any``: accept any b64token (the
                                    default over introspection)
    BEARERGUARD_RATE_LIMIT          ``RATE`` or ``RATE,BURST``: the middleware's
                                    ``rate_limit`` (requests per second per API key)

The three introspection variables together select `IntrospectionBackend`; setting only
some of them is an error (never a silent fall-back to another backend). Without them,
``BEARERGUARD_STORE`` selects `StoreBackend` over ``open_store(url)``. With
``BEARERGUARD_JWT_ISSUER`` the backend is ``ChainBackend([JWTBackend, that one])``, or
`JWTBackend` alone when neither introspection nor ``BEARERGUARD_STORE`` is set. The
JWT audience is ``BEARERGUARD_AUDIENCE``, else ``BEARERGUARD_RESOURCE``.
``BEARERGUARD_RESOURCE`` names the JWT issuer and the introspection URL's origin as
the authorization servers.

Usage::

    settings = from_env()
    app = BearerGuardMiddleware(app, backend=settings.backend, **settings.options)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from ._shell import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT_STORE,
    INTROSPECTION_URL,
    JWKS_URL,
    JWT_ISSUER,
    RATE_LIMIT,
    RESOURCE,
    STORE,
    TOKEN_FORMAT,
    TRUSTED_PROXIES,
    one_line,
    redact_url,
)
from .backends.base import DualBackend
from .backends.chain import ChainBackend
from .backends.introspection import IntrospectionBackend
from .backends.store import StoreBackend
from .clientip import ClientIPResolver
from .errors import BearerGuardError, ConfigurationError
from .options import AdapterOptions
from .ratelimit import RateLimit
from .resource import ResourceMetadata
from .stores import _faces, open_store

__all__ = ["DEFAULT_STORE", "ENV_VARS", "EnvSettings", "from_env"]

_TOKEN_FORMATS = {"bearerguard": "bearerguard", "any": None}

ENV_VARS = (
    INTROSPECTION_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    STORE,
    TRUSTED_PROXIES,
    JWT_ISSUER,
    JWKS_URL,
    AUDIENCE,
    RESOURCE,
    TOKEN_FORMAT,
    RATE_LIMIT,
)
"""Every variable `from_env` reads."""


@dataclass(frozen=True, slots=True)
class EnvSettings:
    """What `from_env` built: a backend and the middleware options that go with it.

    `source` says which backend was chosen, safe to print (``introspection <url>`` or
    ``store <url>``; never a secret). Call `close()` / ``await aclose()`` at shutdown.
    """

    backend: DualBackend
    trusted_proxies: tuple[str, ...] = ()
    source: str = field(default="", compare=False)
    audience: str | None = None
    resource_metadata: ResourceMetadata | None = None
    token_format: str = ""  # "": the backend's default; "bearerguard" or "any"
    rate_limit: RateLimit | None = None

    @property
    def options(self) -> AdapterOptions:
        """Keyword options for `BearerGuardMiddleware` / `WSGIBearerGuard` (and the
        framework integrations built on them).

        ``token_format`` is there only when ``BEARERGUARD_TOKEN_FORMAT`` is set;
        otherwise the middleware takes the backend's own default. ``rate_limit`` is
        there only when ``BEARERGUARD_RATE_LIMIT`` is set (a middleware option: a bare
        `Guard` takes the others).
        """
        options: AdapterOptions = {"trusted_proxies": self.trusted_proxies}
        if self.rate_limit is not None:
            options["rate_limit"] = self.rate_limit
        if self.audience is not None:
            options["audience"] = self.audience
        if self.resource_metadata is not None:
            options["resource_metadata"] = self.resource_metadata
        if self.token_format:
            options["token_format"] = _TOKEN_FORMATS[self.token_format]
        return options

    def close(self) -> None:
        """Release the backend's connections (sync face)."""
        _faces.close(self.backend)

    async def aclose(self) -> None:
        """Release the backend's connections, async clients included."""
        await _faces.aclose(self.backend)


def _get(environ: Mapping[str, str], name: str) -> str:
    # An empty variable counts as unset (``FOO= cmd`` is a common way to unset one).
    return environ.get(name, "").strip()


def _proxies(environ: Mapping[str, str]) -> tuple[str, ...]:
    items = tuple(p.strip() for p in _get(environ, TRUSTED_PROXIES).split(",") if p.strip())
    try:
        ClientIPResolver(items)  # fail now, naming the variable, not at the first request
    except ConfigurationError as exc:
        raise ConfigurationError(f"{TRUSTED_PROXIES}: {exc}") from None
    return items


def from_env(environ: Mapping[str, str] | None = None) -> EnvSettings:
    """Build the backend and middleware options from ``BEARERGUARD_*`` variables.

    `environ` defaults to `os.environ`; `JWTBackend` (the ``jwt`` extra) is imported
    only when an issuer is set. Returns `EnvSettings`; raises ConfigurationError naming
    the variable at fault (partial introspection settings, a bad URL, a bad trusted
    proxy, an issuer without an audience) — the message never contains the client secret.
    """
    env = os.environ if environ is None else environ
    proxies = _proxies(env)
    rate_limit = _rate_limit(env)
    token_format = _get(env, TOKEN_FORMAT).lower()
    if token_format and token_format not in _TOKEN_FORMATS:
        raise ConfigurationError(f"{TOKEN_FORMAT} must be 'bearerguard' or 'any'")
    issuer, jwks_url = _get(env, JWT_ISSUER), _get(env, JWKS_URL)
    audience, resource = _get(env, AUDIENCE) or None, _get(env, RESOURCE) or None
    if jwks_url and not issuer:
        raise ConfigurationError(f"{JWKS_URL} needs {JWT_ISSUER}")
    other = _other_backend(env, default_store=not issuer)
    servers: list[str] = []
    backend, source = other if other is not None else (None, "")
    if issuer:
        jwt_audience = audience or resource
        if jwt_audience is None:
            _close(backend)
            raise ConfigurationError(f"{JWT_ISSUER} needs {AUDIENCE} or {RESOURCE}")
        from .backends.jwt import JWTBackend

        try:
            jwt = JWTBackend(issuer, jwt_audience, jwks_url or None)
        except ConfigurationError as exc:
            _close(backend)
            raise ConfigurationError(f"{JWT_ISSUER}/{JWKS_URL}: {exc}") from None
        servers.append(issuer)
        source = f"jwt {issuer}" + (f" + {source}" if source else "")
        backend = jwt if backend is None else ChainBackend([jwt, backend])
    if isinstance(backend, IntrospectionBackend):
        url = httpx.URL(backend.url)
        servers.append(str(url.copy_with(path="/", query=None)).rstrip("/"))
    elif isinstance(backend, ChainBackend):
        servers += [
            str(httpx.URL(b.url).copy_with(path="/", query=None)).rstrip("/")
            for b in backend.backends
            if isinstance(b, IntrospectionBackend)
        ]
    # Without an issuer, _other_backend always selects one (the store by default).
    assert backend is not None
    metadata = None
    if resource is not None:
        try:
            metadata = ResourceMetadata(resource, tuple(servers))
        except ConfigurationError as exc:
            _close(backend)
            raise ConfigurationError(f"{RESOURCE}: {exc}") from None
    return EnvSettings(backend, proxies, source, audience, metadata, token_format, rate_limit)


def _rate_limit(environ: Mapping[str, str]) -> RateLimit | None:
    """``BEARERGUARD_RATE_LIMIT``: ``RATE`` or ``RATE,BURST`` (None when unset)."""
    value = _get(environ, RATE_LIMIT)
    if not value:
        return None
    rate, _, burst = value.partition(",")
    try:
        return RateLimit(float(rate), int(burst) if burst.strip() else 0)
    except (ValueError, ConfigurationError):
        raise ConfigurationError(
            f"{RATE_LIMIT} must be RATE or RATE,BURST (requests per second, then a whole "
            "number of requests), e.g. 10 or 10,20"
        ) from None


def _close(backend: object) -> None:
    with contextlib.suppress(Exception):
        _faces.close(backend)


def _other_backend(
    environ: Mapping[str, str], *, default_store: bool
) -> tuple[DualBackend, str] | None:
    """Introspection or the store, as the variables say; None when they say neither."""
    env = environ
    intro = {name: _get(env, name) for name in (INTROSPECTION_URL, CLIENT_ID, CLIENT_SECRET)}
    if any(intro.values()):
        missing = [name for name, value in intro.items() if not value]
        if missing:
            raise ConfigurationError(
                f"introspection needs {INTROSPECTION_URL}, {CLIENT_ID} and {CLIENT_SECRET}; "
                f"missing: {', '.join(missing)}"
            )
        url = intro[INTROSPECTION_URL]
        try:
            backend: DualBackend = IntrospectionBackend(url, intro[CLIENT_ID], intro[CLIENT_SECRET])
        except ConfigurationError as exc:
            raise ConfigurationError(f"{INTROSPECTION_URL}: {exc}") from None
        return backend, f"introspection {url}"
    if not default_store and not _get(env, STORE):
        return None
    url = _get(env, STORE) or DEFAULT_STORE
    try:
        store = open_store(url)
    except BearerGuardError as exc:
        # StoreUnavailable (cannot open the file, no Redis) is reported the same way:
        # at start-up, with the variable to fix.
        raise ConfigurationError(f"{STORE}: {one_line(exc, url)}") from None
    try:
        backend = StoreBackend(store)
    except BaseException:
        with contextlib.suppress(Exception):
            store.close()
        raise
    return backend, f"store {redact_url(url)}"
