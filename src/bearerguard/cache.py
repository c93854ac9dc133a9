"""The validation cache: what we know about recently seen tokens, and for how long.

Keyed by the token's SHA-256 digest, never the token. Two caches, so that a spray of
unknown tokens can only evict other unknown tokens (G5):

* positives: `Entry` per active token, living min(cache TTL, the token's own remaining
  life) so an entry never outlives the token (G2), plus `stale_if_error` seconds of
  grace, still capped by the token's life, for use only while the backend is down;
* negatives: digests the backend called unknown, for a short TTL.

Every hit older than the touch interval asks for a refresh (`Entry.refresh_at`): the
edge looks the token up again in the background, which counts as a use at the source,
so steady traffic keeps a sliding token alive (G1) and revocations show up within the
touch interval. The cache makes no I/O and never waits: the edges do that.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache, TTLCache

from .errors import ConfigurationError
from .tokens import TokenInfo

__all__ = ["Entry", "TokenCache"]


@dataclass(slots=True)
class Entry:
    """A cached positive answer and the times that govern it."""

    info: TokenInfo
    fresh_until: float
    refresh_at: float
    stale_until: float


def _positive(name: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be a positive number of seconds")
    return float(value)


class TokenCache:
    """Bounded TTL cache of token answers; thread-safe, clock injected.

    `ttl` caps how long an answer is trusted (and so how late a revocation is seen
    over introspection, G3); `touch_interval` is how old a hit may be before it asks
    for a refresh; it shrinks to a third of a token's sliding TTL for short-lived
    tokens. `negative_ttl` is how long "unknown" is remembered.
    """

    def __init__(
        self,
        *,
        maxsize: int = 100_000,
        ttl: float = 10.0,
        touch_interval: float = 5.0,
        negative_maxsize: int = 10_000,
        negative_ttl: float = 5.0,
        stale_if_error: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if maxsize < 1 or negative_maxsize < 1:
            raise ConfigurationError("cache sizes must be at least 1")
        self.ttl = _positive("cache_ttl", ttl)
        self.touch_interval = _positive("touch_interval", touch_interval)
        self.negative_ttl = _positive("negative_cache_ttl", negative_ttl)
        if stale_if_error < 0 or not math.isfinite(stale_if_error):
            raise ConfigurationError("stale_if_error must be zero or a positive number")
        self.stale_if_error = float(stale_if_error)
        self.clock = clock
        self._lock = threading.Lock()
        self._pos: TLRUCache[str, Entry] = TLRUCache(
            maxsize, ttu=lambda _k, e, _now: e.stale_until, timer=clock
        )
        self._neg: TTLCache[str, bool] = TTLCache(negative_maxsize, negative_ttl, timer=clock)

    def get(self, digest: str) -> tuple[Entry | None, bool]:
        """Return (positive entry or None, whether the digest is cached as unknown)."""
        with self._lock:
            entry = self._pos.get(digest)
            if entry is not None:
                return entry, False
            return None, digest in self._neg

    def put(self, digest: str, info: TokenInfo | None, now: float) -> Entry | None:
        """Record the backend's answer for `digest` at time `now`."""
        if info is None:
            with self._lock:
                self._pos.pop(digest, None)
                self._neg[digest] = True
            return None
        life = math.inf if info.expires_at is None else info.expires_at - now
        if life <= 0:
            with self._lock:
                self._pos.pop(digest, None)
            return None
        fresh = min(self.ttl, life)
        touch = self.touch_interval
        if info.ttl:
            touch = min(touch, info.ttl / 3)
        entry = Entry(
            info,
            fresh_until=now + fresh,
            refresh_at=now + min(touch, fresh),
            stale_until=now + min(fresh + self.stale_if_error, life),
        )
        with self._lock:
            self._neg.pop(digest, None)
            self._pos[digest] = entry
        return entry

    def evict(self, digest: str) -> None:
        """Forget one token (it was revoked)."""
        with self._lock:
            self._pos.pop(digest, None)

    def evict_key(self, key_id: str) -> int:
        """Forget every token of one API key (the key was revoked); return how many."""
        with self._lock:
            doomed = [d for d, e in self._pos.items() if e.info.key_id == key_id]
            for d in doomed:
                self._pos.pop(d, None)
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._pos.clear()
            self._neg.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pos)

    @property
    def negative_size(self) -> int:
        with self._lock:
            return len(self._neg)
