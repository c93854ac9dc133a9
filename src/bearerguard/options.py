"""The keyword options of `Guard` and the middlewares, as types mypy can check.

The ASGI and WSGI middlewares, the Flask extension and `TracedGuard` take these as
``**options`` (``Unpack[…]``), so a misspelt or mistyped option is a type error rather
than a TypeError at start-up::

    GuardOptions         every keyword `Guard` takes (api, realm, public_paths, …)
    └── MiddlewareOptions    what the ASGI/WSGI middlewares pass on to `Guard`
        └── AdapterOptions       + backend_timeout, max_in_flight, guard, rate_limit: everything
                                   the Flask extension passes through to the middleware

Every key is optional (``total=False``); the defaults and meanings are `Guard`'s and
the middlewares' own (their docstrings). `EnvSettings.options` is a `GuardOptions`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from .cache import TokenCache
    from .flow import Decision, Guard, RequestFacts
    from .metrics import Metrics
    from .ratelimit import RateLimit
    from .resource import ResourceMetadata

__all__ = ["AdapterOptions", "GuardOptions", "MiddlewareOptions"]


class GuardOptions(TypedDict, total=False):
    """The keyword options of `Guard` (its docstring says what each one does)."""

    api: str | None
    public_paths: Iterable[str]
    trusted_proxies: Iterable[str]
    realm: str
    query_token: bool
    websocket_query_token: bool
    ip_binding: bool
    audience: str | Iterable[str] | None
    require_audience: bool
    resource_metadata: ResourceMetadata | Mapping[str, Any] | str | None
    cache_ttl: float
    cache_maxsize: int
    negative_cache_ttl: float
    negative_cache_maxsize: int
    touch_interval: float
    stale_if_error: float
    max_token_length: int
    token_format: str | None
    retry_after: int
    clock: Callable[[], float]
    cache: TokenCache | None
    metrics: Metrics | None
    on_decision: Callable[[RequestFacts, Decision], None] | None


class MiddlewareOptions(GuardOptions, total=False):
    """The options the middlewares pass on to `Guard` (today exactly `GuardOptions`)."""


class AdapterOptions(MiddlewareOptions, total=False):
    """`MiddlewareOptions` plus the middlewares' own keywords, for code that wraps them."""

    backend_timeout: float
    max_in_flight: int
    guard: Guard | None
    rate_limit: RateLimit | float | tuple[float, int] | None
