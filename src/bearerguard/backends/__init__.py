"""Token backends: where the middleware asks whether a token is active."""

from __future__ import annotations

from .base import AsyncTokenBackend, Invalidation, InvalidationSource, TokenBackend
from .breaker import CircuitBreaker
from .introspection import IntrospectionBackend
from .store import StoreBackend

__all__ = [
    "AsyncTokenBackend",
    "CircuitBreaker",
    "IntrospectionBackend",
    "Invalidation",
    "InvalidationSource",
    "StoreBackend",
    "TokenBackend",
]
