"""`memory://`: a store in this process's memory, for tests and single-process use."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import replace

from ..tokens import Invalidation
from .accounts import AccountRecord, SessionRecord
from .base import (
    KeyRecord,
    TokenRecord,
    page_of,
    rotated,
)
from .local import LocalStore

__all__ = ["MemoryStore"]

_SWEEP_EVERY = 60.0
_SWEEP_MIN = 1024


class MemoryStore(LocalStore):
    """A thread-safe store held in dicts; both faces, no I/O.

    Subscribers are called synchronously, in the revoking thread. Expired tokens are
    swept out when tokens are stored (at most once a minute, or when the table has
    doubled since the last sweep), so a long-running ``serve --store memory://`` does
    not grow without bound.
    """

    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self.url = url
        self._lock = threading.Lock()
        self._keys: dict[str, KeyRecord] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._accounts: dict[str, AccountRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._last_sweep = time.monotonic()
        self._sweep_at = _SWEEP_MIN

    # -- keys (create_key: KeyMaker) --------------------------------------------------
    def _add_key(self, record: KeyRecord) -> None:
        with self._lock:
            self._keys[record.key_id] = record

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            return self._keys.get(key_id)

    def list_keys(
        self, account: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[KeyRecord]:
        with self._lock:
            keys = [k for k in self._keys.values() if account is None or k.account == account]
        return page_of(keys, after, limit)

    def rotate_key(
        self, key_id: str, *, grace: float, now: float | None = None
    ) -> tuple[KeyRecord, str] | None:
        now = time.time() if now is None else now
        with self._lock:
            record = self._keys.get(key_id)
            if record is None:
                return None
            record, secret = rotated(record, grace, now)
            self._keys[key_id] = record
        self._subscribers.announce(Invalidation("secret", key_id))
        return record, secret

    # -- accounts and panel sessions ----------------------------------------------------
    def create_account(self, record: AccountRecord) -> bool:
        with self._lock:
            if record.name in self._accounts:
                return False
            self._accounts[record.name] = record
        return True

    def get_account(self, name: str) -> AccountRecord | None:
        with self._lock:
            return self._accounts.get(name)

    def list_accounts(self) -> list[AccountRecord]:
        with self._lock:
            return sorted(self._accounts.values(), key=lambda a: (a.created_at, a.name))

    def set_account_apis(self, name: str, apis: Iterable[str]) -> bool:
        with self._lock:
            record = self._accounts.get(name)
            if record is None:
                return False
            self._accounts[name] = replace(record, apis=frozenset(apis))
        return True

    def disable_account(self, name: str) -> bool:
        with self._lock:
            record = self._accounts.get(name)
            if record is None:
                return False
            self._accounts[name] = replace(record, disabled=True)
            key_ids = {k.key_id for k in self._keys.values() if k.account == name}
            for digest in [d for d, t in self._tokens.items() if t.key_id in key_ids]:
                del self._tokens[digest]
            for digest in [d for d, s in self._sessions.items() if s.account == name]:
                del self._sessions[digest]
        for key_id in sorted(key_ids):
            self._subscribers.announce(Invalidation("key", key_id))
        return True

    def put_session(self, record: SessionRecord) -> None:
        with self._lock:
            self._sessions[record.digest] = record
            now = time.time()
            if len(self._sessions) > 1000:  # forget expired sessions now and then
                for digest in [d for d, s in self._sessions.items() if s.expires_at <= now]:
                    del self._sessions[digest]

    def get_session(self, digest: str, now: float) -> SessionRecord | None:
        with self._lock:
            record = self._sessions.get(digest)
        return record if record is not None and now < record.expires_at else None

    def delete_session(self, digest: str) -> None:
        with self._lock:
            self._sessions.pop(digest, None)

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
            key = self._keys.get(record.key_id)
            if key is not None:
                self._tokens[record.digest] = record
                self._keys[key.key_id] = replace(key, last_used_at=record.issued_at)
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

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
