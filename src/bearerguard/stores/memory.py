"""`memory://`: a store in this process's memory, for tests and single-process use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ..tokens import Invalidation
from .base import (
    KeyRecord,
    LocalSubscribers,
    TokenRecord,
    new_key,
)

__all__ = ["MemoryStore"]

_SWEEP_EVERY = 60.0
_SWEEP_MIN = 1024


class MemoryStore:
    """A thread-safe store held in dicts; both faces, no I/O.

    Subscribers are called synchronously, in the revoking thread. Expired tokens are
    swept out when tokens are stored (at most once a minute, or when the table has
    doubled since the last sweep), so a long-running ``serve --store memory://`` does
    not grow without bound.
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._keys: dict[str, KeyRecord] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._subscribers = LocalSubscribers()
        self._last_sweep = time.monotonic()
        self._sweep_at = _SWEEP_MIN

    # -- keys -------------------------------------------------------------------------
    def create_key(
        self, apis: Iterable[str], *, introspect: bool = False, now: float | None = None
    ) -> tuple[KeyRecord, str]:
        record, secret = new_key(apis, introspect=introspect, now=now)
        with self._lock:
            self._keys[record.key_id] = record
        return record, secret

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            return self._keys.get(key_id)

    def list_keys(self) -> list[KeyRecord]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda k: (k.created_at, k.key_id))

    def revoke_key(self, key_id: str) -> bool:
        with self._lock:
            found = self._keys.pop(key_id, None) is not None
            doomed = [d for d, t in self._tokens.items() if t.key_id == key_id]
            for d in doomed:
                del self._tokens[d]
        if found or doomed:
            self._subscribers.announce(Invalidation("key", key_id))
        return found

    # -- tokens -----------------------------------------------------------------------
    def put_token(self, record: TokenRecord) -> None:
        with self._lock:
            # A login racing with the key's revocation must not leave a live token.
            if record.key_id in self._keys:
                self._tokens[record.digest] = record
            mono = time.monotonic()
            if len(self._tokens) >= self._sweep_at or mono - self._last_sweep >= _SWEEP_EVERY:
                self._sweep(record.issued_at, mono)

    def _sweep(self, now: float, mono: float) -> None:
        # Called with the lock held. Amortised: the table at least doubles between sweeps
        # that the clock did not ask for.
        tokens = self._tokens
        for digest in [d for d, t in tokens.items() if now >= t.expires_at]:
            del tokens[digest]
        self._last_sweep = mono
        self._sweep_at = max(_SWEEP_MIN, 2 * len(tokens))

    def touch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        with self._lock:
            record = self._tokens.get(digest)
            if record is None:
                return None
            if now >= record.expires_at:
                del self._tokens[digest]
                return None
            if record.counts_from(client_ip):
                record = self._tokens[digest] = record.touched(now)
            return record

    def get_token(self, digest: str, now: float) -> TokenRecord | None:
        with self._lock:
            record = self._tokens.get(digest)
        if record is None or now >= record.expires_at:
            return None
        return record

    def revoke_token(self, digest: str) -> bool:
        with self._lock:
            found = self._tokens.pop(digest, None) is not None
        if found:
            self._subscribers.announce(Invalidation("token", digest))
        return found

    # -- invalidations ----------------------------------------------------------------
    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Call `callback` for revocations made through this store, in the revoking thread."""
        return self._subscribers.subscribe(callback)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    # -- async face: no I/O, so the same calls ----------------------------------------
    async def acreate_key(
        self, apis: Iterable[str], *, introspect: bool = False, now: float | None = None
    ) -> tuple[KeyRecord, str]:
        return self.create_key(apis, introspect=introspect, now=now)

    async def aget_key(self, key_id: str) -> KeyRecord | None:
        return self.get_key(key_id)

    async def alist_keys(self) -> list[KeyRecord]:
        return self.list_keys()

    async def arevoke_key(self, key_id: str) -> bool:
        return self.revoke_key(key_id)

    async def aput_token(self, record: TokenRecord) -> None:
        self.put_token(record)

    async def atouch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        return self.touch_token(digest, now, client_ip)

    async def aget_token(self, digest: str, now: float) -> TokenRecord | None:
        return self.get_token(digest, now)

    async def arevoke_token(self, digest: str) -> bool:
        return self.revoke_token(digest)

    async def aping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
