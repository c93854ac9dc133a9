"""bearerguard: guard HTTP APIs behind a central auth service with Bearer tokens."""

from __future__ import annotations

from .asgi import BearerGuardMiddleware
from .backends import AsyncTokenBackend, IntrospectionBackend, StoreBackend, TokenBackend
from .cache import TokenCache
from .clientip import ClientIPResolver
from .errors import BackendUnavailable, BearerGuardError, Challenge, ConfigurationError
from .flow import Guard
from .stores import open_store
from .tokens import Identity, Invalidation, TokenInfo
from .wsgi import WSGIBearerGuard

# The only place the version is written: the build reads it from here
# (pyproject.toml, tool.setuptools.dynamic). Releases: see CHANGELOG.md.
__version__ = "0.2.0.dev0"

__all__ = [
    "AsyncTokenBackend",
    "BackendUnavailable",
    "BearerGuardError",
    "BearerGuardMiddleware",
    "Challenge",
    "ClientIPResolver",
    "ConfigurationError",
    "Guard",
    "Identity",
    "IntrospectionBackend",
    "Invalidation",
    "StoreBackend",
    "TokenBackend",
    "TokenCache",
    "TokenInfo",
    "WSGIBearerGuard",
    "__version__",
    "open_store",
]
