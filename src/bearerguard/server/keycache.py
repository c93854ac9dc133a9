"""The auth service's cache of key records: one store read per key and second, not per call.

Every ``/login`` and ``/introspect`` authenticates its caller's key. Reading the key
record from the store each time is the larger half of those endpoints' store work, and
the record changes rarely. `KeyCache` keeps the records of keys that *authenticated
successfully* (a caller without the secret cannot put anything in it), for at most
`ttl` seconds (default 1 s), in at most `max_entries` slots (oldest evicted first).

What it never changes:

* the secret is still checked on every call, in constant time, against the cached
  record's digests (`verify_secret`); a cached record only saves the read. A secret
  that does not match the cached record is checked against a fresh read too, so a
  secret rotated elsewhere works at once;
* a secret rotated out (grace 0, or once its grace is over) stops like a revoked key:
  the rotation is announced (``Invalidation("secret", key_id)``) and the record leaves
  the cache, so the old secret is refused at once where the announcement arrives and
  within `ttl` everywhere;
* key expiry and the rotation grace period are judged on the cached record at the
  time of the call;
* a key that belongs to an account still has its account checked on every call
  (`ClientAuthenticator`): a disabled account's keys still exist, so the store would
  not refuse their new tokens the way it refuses a revoked key's.

Revocation: the cache subscribes to the store's invalidations (`TokenStore.subscribe`):
over Redis pub/sub a revoked key, every key of a disabled account, and a key whose
secret was rotated leave the cache of every worker and replica as soon as the message
arrives; SQLite and memory stores announce only within their own process. Whatever
the transport does, no entry is used after `ttl`, so a revocation or rotation made
anywhere takes effect within `ttl` (1 s by default) on every worker. A store failure
empties the cache (the service's 503 handler): what comes back may not hold the keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..stores.base import KeyRecord
from ..tokens import Invalidation

__all__ = ["DEFAULT_KEY_CACHE_TTL", "KeyCache"]

DEFAULT_KEY_CACHE_TTL = 1.0
"""Seconds a key record is reused (the bound on revocation without pub/sub)."""


class KeyCache:
    """Key records by key id, each for at most `ttl` seconds (`ttl` 0: no caching).

    Thread-safe: invalidations arrive on the store's listener thread.
    """

    def __init__(
        self,
        ttl: float = DEFAULT_KEY_CACHE_TTL,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, KeyRecord]] = {}

    def get(self, key_id: str) -> KeyRecord | None:
        """The cached record of `key_id`, or None (never cached, dropped or too old)."""
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            self.drop(key_id)
            return None
        return entry[1]

    def put(self, record: KeyRecord) -> None:
        """Keep `record` (a key that has just authenticated) for `ttl` seconds."""
        if self.ttl <= 0:
            return
        with self._lock:
            entries = self._entries
            entries.pop(record.key_id, None)
            while len(entries) >= self.max_entries:
                # Dicts keep insertion order: the first entry is the oldest.
                del entries[next(iter(entries))]
            entries[record.key_id] = (self._clock() + self.ttl, record)

    def drop(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def invalidated(self, event: Invalidation) -> None:
        """A store invalidation: a revoked key (or a disabled account's key) leaves, and
        so does a key whose secret was rotated (the next call reads the new record)."""
        if event.kind in ("key", "secret"):
            self.drop(event.value)

    def __len__(self) -> int:
        return len(self._entries)
