"""Stores of keys and tokens, opened by URL: ``memory://``, ``sqlite:///…``, ``redis://…``."""

from __future__ import annotations

from ..errors import ConfigurationError
from .base import (
    AsyncTokenStore,
    KeyRecord,
    StoreUnavailable,
    TokenRecord,
    TokenStore,
)
from .memory import MemoryStore

__all__ = [
    "AsyncTokenStore",
    "KeyRecord",
    "MemoryStore",
    "StoreUnavailable",
    "TokenRecord",
    "TokenStore",
    "open_store",
]


def open_store(url: str) -> MemoryStore:
    """Open the store named by `url`; raise ConfigurationError for a bad URL."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "memory":
        return MemoryStore(url)
    raise ConfigurationError(f"unsupported store URL: {url!r} (use memory://)")
