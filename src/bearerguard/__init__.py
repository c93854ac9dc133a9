"""bearerguard: guard HTTP APIs behind a central auth service with Bearer tokens."""

from __future__ import annotations

from typing import Any

from .asgi import BearerGuardMiddleware
from .backends import (
    AsyncTokenBackend,
    ChainBackend,
    IntrospectionBackend,
    StoreBackend,
    TokenBackend,
)
from .cache import TokenCache
from .clientip import ClientIPResolver
from .errors import BackendUnavailable, BearerGuardError, Challenge, ConfigurationError
from .flow import Guard
from .resource import ResourceMetadata
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
    "ChainBackend",
    "Challenge",
    "ClientIPResolver",
    "ConfigurationError",
    "Guard",
    "Identity",
    "IntrospectionBackend",
    "Invalidation",
    "JWTBackend",
    "ResourceMetadata",
    "StoreBackend",
    "TokenBackend",
    "TokenCache",
    "TokenInfo",
    "WSGIBearerGuard",
    "__version__",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # JWTBackend needs the jwt extra (PyJWT): imported on first use only.
    if name == "JWTBackend":
        from .backends.jwt import JWTBackend

        return JWTBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
