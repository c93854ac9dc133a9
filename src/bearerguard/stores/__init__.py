"""Stores of keys and tokens, opened by URL: ``memory://``, ``sqlite:///…``, ``redis://…``.

Redis also as ``rediss://`` (TLS), ``redis+sentinel://host:port[,…]/SERVICE[/DB]`` and
``redis+cluster://host:port[,…]`` (with ``rediss+`` for TLS); see
`bearerguard.stores.redis`.

`RedisStore` needs the ``redis`` extra (``pip install bearerguard[redis]``); it is
imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .base import (
    AsyncTokenStore,
    KeyRecord,
    StoreUnavailable,
    TokenRecord,
    TokenStore,
)
from .memory import MemoryStore
from .sqlite import SQLiteStore

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = [
    "AsyncTokenStore",
    "KeyRecord",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "StoreUnavailable",
    "TokenRecord",
    "TokenStore",
    "open_store",
]

_HINT = (
    "use memory://, sqlite:///relative.db, sqlite:////absolute.db, redis://host:port/db, "
    "redis+sentinel://host:port,…/SERVICE or redis+cluster://host:port,…"
)


def open_store(url: str) -> MemoryStore | SQLiteStore | RedisStore:
    """Open the store named by `url`.

    Raises ConfigurationError (one line) for a bad URL or a missing client library, and
    StoreUnavailable when a SQLite file cannot be opened. A Redis store connects
    lazily: call ``ping()`` to check the server answers.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"bad store URL: {_HINT}")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ConfigurationError(f"bad store URL {url!r}: memory:// takes no path")
        return MemoryStore(url)
    if scheme == "sqlite":
        return SQLiteStore(url)
    if scheme.partition("+")[0] in ("redis", "rediss"):
        # redis+sentinel, redis+cluster and their TLS forms are checked by the store.
        redis_store = _redis_store_class()
        return redis_store(url)
    # Only the scheme is echoed: the rest of a URL may hold a password.
    raise ConfigurationError(f"unsupported store URL scheme {scheme[:20]!r}: {_HINT}")


def _redis_store_class() -> type[RedisStore]:
    try:
        from .redis import RedisStore
    except ImportError:
        raise ConfigurationError(
            "redis:// stores need the redis package: pip install 'bearerguard[redis]'"
        ) from None
    return RedisStore


def __getattr__(name: str) -> Any:
    # Lazy export: importing bearerguard.stores must not require the redis package.
    if name == "RedisStore":
        return _redis_store_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
