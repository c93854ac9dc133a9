"""The validation cache: what we know about recently seen tokens, and for how long.

It keeps the cache and expiry guarantees G1 to G5 of docs/design.md.

Keyed by the token's SHA-256 digest (32 raw bytes), never the token. Two caches, so
that a spray of unknown tokens can only evict other unknown tokens (G5):

* positives: one `Entry` per active token. It is fresh for min(cache TTL, the token's
  own remaining life), so an entry never outlives the token (G2), and may be served
  `stale_if_error` seconds longer, still capped by the token's life, only while the
  backend is down. Bounded by `maxsize`, oldest-fetched first out;
* negatives: digests the backend called unknown, each with the time it is forgotten,
  in a plain dict in insertion order (so also in expiry order), bounded by
  `negative_maxsize`, oldest first out.

A hit older than the touch interval (`Entry.refresh_at`) asks for a refresh: the adapter
looks the token up again in the background, which counts as a use at the source, so
steady traffic keeps a sliding token alive (G1) and revocations show up within the
touch interval. The cache makes no I/O and never waits: the adapters do that.

Positives live in a plain dict rather than a cachetools class: the cached path reads
it without a lock (a dict lookup is atomic), and an entry costs a dict slot instead of
the extra order and expiry records of `TLRUCache`. Writers hold a lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from cachetools import TTLCache

from .errors import ConfigurationError
from .tokens import Identity, TokenInfo

__all__ = ["Entry", "LingeringEntry", "TokenCache"]


class Entry:
    """A cached positive answer and the times that govern it.

    `identity` memoises the `Identity` last handed to the app for this token, so the
    cached path does not build one per request. Without ``stale_if_error`` an entry is
    not served past `fresh_until`, so `stale_until` is that same time and costs no
    slot (four slots fit a smaller allocation class than five: 64 bytes, not 80).
    """

    __slots__ = ("fresh_until", "identity", "info", "refresh_at")

    def __init__(self, info: TokenInfo, fresh_until: float, refresh_at: float) -> None:
        self.info = info
        self.fresh_until = fresh_until
        self.refresh_at = refresh_at
        self.identity: Identity | None = None

    @property
    def stale_until(self) -> float:
        """Until when the entry may be served while the backend is down."""
        return self.fresh_until


class LingeringEntry(Entry):
    """An `Entry` of a cache with ``stale_if_error``: served stale until `stale_until`."""

    __slots__ = ("_stale_until",)

    def __init__(
        self, info: TokenInfo, fresh_until: float, refresh_at: float, stale_until: float
    ) -> None:
        super().__init__(info, fresh_until, refresh_at)
        self._stale_until = stale_until

    @property
    def stale_until(self) -> float:
        return self._stale_until


_T = TypeVar("_T")
# Revocations are remembered this long: longer than any lookup can take (backend
# timeouts are seconds), so an answer that left before a revocation lands before this.
_GONE_TTL = 120.0
_GONE_MAX = 10_000
_SHARED_MAX = 65_536
# Addresses and deadlines are shared among the entries written lately: a table that
# starts over when full, so a cache of tokens that share nothing pays little for it.
_RECENT_MAX = 4096
# Deadlines are computed from the put time rounded down to this grid (in seconds, a
# power of two, so exact): entries written within one tick share their float objects.
_TICK = 1 / 1024


def _share(table: dict[Any, Any], value: _T, limit: int = _SHARED_MAX) -> _T:
    """The copy of `value` kept in `table` (adding it while the table has room).

    With `limit` below `_SHARED_MAX` the table keeps the recent values: it is emptied
    when full, and what entries already hold stays shared.
    """
    kept = table.get(value)
    if kept is not None:
        return cast(_T, kept)
    if len(table) >= limit:
        if limit == _SHARED_MAX:
            return value
        table.clear()
    table[value] = value
    return value


def _trim_negatives(neg: dict[bytes, float], now: float, maxsize: int) -> None:
    # With the lock held: drop a couple of expired negatives from the old end, and the
    # oldest ones beyond maxsize.
    for _ in range(2):
        oldest = next(iter(neg))
        if neg[oldest] > now:
            break
        del neg[oldest]
    while len(neg) > maxsize:
        del neg[next(iter(neg))]


def _positive(name: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be a positive number of seconds")
    return float(value)


def _as_key(digest: str | bytes) -> bytes | None:
    if isinstance(digest, bytes):
        return digest
    try:
        return bytes.fromhex(digest)
    except ValueError:
        return None  # not a digest: nothing of ours can match it


class TokenCache:
    """Bounded TTL cache of token answers; thread-safe, clock injected.

    `ttl` caps how long an answer is trusted (and so how late a revocation is seen
    over introspection, G3); `touch_interval` is how old a hit may be before it asks
    for a refresh; it shrinks to a third of a token's sliding TTL for short-lived
    tokens. `negative_ttl` is how long "unknown" is remembered. Keys are raw SHA-256
    digests (`bearerguard.tokens.token_key`); `evict` also takes the hex form.
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
        self.maxsize = maxsize
        self.ttl = _positive("cache_ttl", ttl)
        self.touch_interval = _positive("touch_interval", touch_interval)
        self.negative_ttl = _positive("negative_cache_ttl", negative_ttl)
        if stale_if_error < 0 or not math.isfinite(stale_if_error):
            raise ConfigurationError("stale_if_error must be zero or a positive number")
        self.stale_if_error = float(stale_if_error)
        self.clock = clock
        self._lock = threading.Lock()
        self._pos: dict[bytes, Entry] = {}
        self._shared: dict[Any, Any] = {}
        self._shared_ips: dict[str, str] = {}
        self._shared_times: dict[float, float] = {}
        self.negative_maxsize = negative_maxsize
        self._neg: dict[bytes, float] = {}
        # Tokens (raw digests) and key ids revoked lately: an answer that was already
        # on its way when the revocation arrived must not put them back (P).
        self._gone: TTLCache[bytes | str, bool] = TTLCache(_GONE_MAX, _GONE_TTL, timer=clock)
        # When the latest of them is forgotten: past it, nothing is revoked (no lock).
        self._gone_until = -math.inf
        # The cached path reads this directly: no lock, no method call.
        self.peek = self._pos.get

    def get(self, key: bytes) -> tuple[Entry | None, bool]:
        """Return (positive entry or None, whether the key is cached as unknown)."""
        entry = self._pos.get(key)
        if entry is not None:
            if self.clock() < entry.stale_until:
                return entry, False
            with self._lock:
                if self._pos.get(key) is entry:
                    del self._pos[key]
        # A dict lookup is atomic: no lock. An expired negative is dropped by a write.
        gone = self._neg.get(key)
        return None, gone is not None and self.clock() < gone

    def put(
        self, key: bytes, info: TokenInfo | None, now: float, *, counted: bool = True
    ) -> Entry | None:
        """Record the backend's answer for `key` at time `now`.

        `counted` False: the lookup did not count as a use at the source (it came from
        another address than the token's), so the entry asks for a refresh at its
        first hit by the holder instead of a touch interval later (H4).
        """
        if info is None:
            neg = self._neg
            with self._lock:
                self._pos.pop(key, None)
                neg.pop(key, None)  # re-inserted at the end: insertion order is expiry order
                neg[key] = now + self.negative_ttl
                _trim_negatives(neg, now, self.negative_maxsize)
            return None
        life = math.inf if info.expires_at is None else info.expires_at - now
        if life <= 0:
            with self._lock:
                self._pos.pop(key, None)
            return None
        info = self._shrink(info)
        # Deadlines from the put time rounded down (never later than before), each
        # shared with the entries written in the same tick; one the token's own
        # expiry caps is that expiry itself (G2), so it costs no object either.
        tick = math.floor(now / _TICK) * _TICK
        fresh = min(self.ttl, life)
        fresh_until = self._deadline(info, tick, fresh, life)
        refresh_at = now
        if counted:
            refresh_at = min(self._deadline(info, tick, self.touch_for(info), life), fresh_until)
        if self.stale_if_error:
            stale_until = self._deadline(info, tick, fresh + self.stale_if_error, life)
            entry: Entry = LingeringEntry(info, fresh_until, refresh_at, stale_until)
        else:
            entry = Entry(info, fresh_until, refresh_at)
        pos, neg = self._pos, self._neg
        with self._lock:
            if key in neg:
                del neg[key]
            # Re-insert at the end: dict order is then oldest-fetched first, which is
            # the eviction order, and entries in use are re-fetched every touch.
            pos.pop(key, None)
            pos[key] = entry
            self._trim(now)
        return entry

    def record(self, key: bytes, info: TokenInfo | None, asker: str | None) -> TokenInfo | None:
        """Cache a backend answer for `key`, asked from `asker`; return what now stands.

        A token revoked meanwhile stays refused (P). The source counted the lookup as a
        use unless it came from another address than the token's (H4); then the
        holder's next hit asks for a refresh.
        """
        now = self.clock()
        if info is not None and now < self._gone_until and self.revoked(key, info.key_id):
            info = None
        counted = info is None or asker is None or info.bound_ip in (None, asker)
        self.put(key, info, now, counted=counted)
        return info

    def touch_for(self, info: TokenInfo) -> float:
        """How old a hit on `info` may be before it asks for a refresh.

        The touch interval, shrunk to a third of the token's sliding TTL so a short
        token is touched at the source well before it lapses there.
        """
        return min(self.touch_interval, info.ttl / 3) if info.ttl else self.touch_interval

    def _deadline(self, info: TokenInfo, tick: float, after: float, life: float) -> float:
        """`tick` + `after`, capped by the token's expiry, as a shared float object."""
        if after >= life and info.expires_at is not None:
            return info.expires_at
        at = tick + after
        return self._shared_times.get(at) or _share(self._shared_times, at, _RECENT_MAX)

    def _shrink(self, info: TokenInfo) -> TokenInfo:
        # Many tokens share a key id, an API set, a TTL and often an address: keep one
        # copy of each, so 100,000 cached tokens cost a few hundred bytes each. Two
        # bounded tables, so many distinct addresses cannot crowd out the key ids.
        # The constructor, not dataclasses.replace: this runs on every miss, and replace
        # costs several times as much (docs/benchmarks.md, the cold paths).
        # `get(v) or _share(…)`: a value already kept costs a dict lookup, not a call
        # (one kept as falsy, an empty API set, takes the call, to the same result).
        shared, ips = self._shared, self._shared_ips
        bound_ip, ttl = info.bound_ip, info.ttl
        return TokenInfo(
            shared.get(info.key_id) or _share(shared, info.key_id),
            shared.get(info.apis) or _share(shared, info.apis),
            bound_ip and (ips.get(bound_ip) or _share(ips, bound_ip, _RECENT_MAX)),
            info.expires_at,
            ttl and (shared.get(ttl) or _share(shared, ttl)),
            info.claims,
            info.audience,
        )

    def _trim(self, now: float) -> None:
        # Called with the lock held. Drop a couple of expired entries from the old end
        # on every write, and the oldest ones beyond maxsize.
        pos = self._pos
        for _ in range(2):
            if not pos:
                break  # e.g. the only entry was already stale when it went in
            oldest = next(iter(pos))
            if pos[oldest].stale_until > now:
                break
            del pos[oldest]
        while len(pos) > self.maxsize:
            del pos[next(iter(pos))]

    def revoked(self, key: bytes, key_id: str) -> bool:
        """Whether the token `key`, or its key `key_id`, was revoked lately (evicted).

        An answer that says otherwise was on its way before the revocation: stale.
        """
        if self.clock() >= self._gone_until:
            return False  # no revocation in the last _GONE_TTL seconds: the usual case
        with self._lock:
            return key in self._gone or key_id in self._gone

    def evict(self, digest: str | bytes) -> None:
        """Forget one token (it was revoked); `digest` raw or hex."""
        key = _as_key(digest)
        if key is None:
            return
        with self._lock:
            self._pos.pop(key, None)
            self._gone[key] = True
            self._gone_until = self.clock() + _GONE_TTL

    def evict_key(self, key_id: str) -> int:
        """Forget every token of one API key (the key was revoked); return how many."""
        with self._lock:
            self._gone[key_id] = True
            self._gone_until = self.clock() + _GONE_TTL
            doomed = [k for k, e in self._pos.items() if e.info.key_id == key_id]
            for k in doomed:
                del self._pos[k]
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._pos.clear()
            self._neg.clear()

    def __len__(self) -> int:
        return len(self._pos)

    @property
    def negative_size(self) -> int:
        return len(self._neg)
