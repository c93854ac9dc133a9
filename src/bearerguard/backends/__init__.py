"""Token backends: where the middleware asks whether a token is active.

`JWTBackend` is imported on first use: it needs the ``jwt`` extra (PyJWT).
"""

from __future__ import annotations

from typing import Any

from .base import AsyncTokenBackend, Invalidation, InvalidationSource, TokenBackend
from .breaker import CircuitBreaker
from .chain import ChainBackend
from .introspection import IntrospectionBackend
from .store import StoreBackend

__all__ = [
    "AsyncTokenBackend",
    "ChainBackend",
    "CircuitBreaker",
    "IntrospectionBackend",
    "Invalidation",
    "InvalidationSource",
    "JWTBackend",
    "StoreBackend",
    "TokenBackend",
]


def __getattr__(name: str) -> Any:
    if name == "JWTBackend":
        from .jwt import JWTBackend

        return JWTBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
