"""Token backends: where the middleware asks whether a token is active."""

from __future__ import annotations

from .base import AsyncTokenBackend, Invalidation, InvalidationSource, TokenBackend
from .store import StoreBackend

__all__ = [
    "AsyncTokenBackend",
    "Invalidation",
    "InvalidationSource",
    "StoreBackend",
    "TokenBackend",
]
