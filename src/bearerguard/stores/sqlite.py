"""`sqlite:///path`: keys and tokens in one SQLite file, shared by processes on one machine.

The file is opened in WAL mode with a busy timeout, so several processes (auth-service
workers, resource servers using `StoreBackend`, the CLI) can read and write it at once.
Each thread gets its own connection; every connection runs in autocommit mode, and the
few multi-statement changes run in ``BEGIN IMMEDIATE`` transactions.

Durability: ``synchronous = NORMAL`` in WAL mode. A commit is not synced to disk, so a
power loss or OS crash (not a crash of the process) can undo the last commits: tokens
issued or extended just before it are lost (their holders log in again), and a
revocation made just before it can come undone. Each WAL checkpoint syncs.

The async face of the calls the auth service makes on every request (`aget_key`,
`aput_token`, `atouch_token`, `aget_token`) runs each statement on the event loop's own
thread, on a connection that never waits for a lock (busy timeout 0): a one-row
statement costs less than the hand-off to a worker thread. When another connection
holds the write lock, that attempt changes nothing and the call runs again in a worker
thread, with the busy timeout, so the event loop never waits on a lock. Those
connections do not checkpoint the WAL on commit (a checkpoint syncs the file): every
`CHECKPOINT_EVERY` such calls, a worker thread checkpoints it and deletes expired tokens.

Security notes: only SHA-256 digests of tokens and key secrets are written to the file;
still, whoever can write the file can mint tokens, so a file the store creates is
readable and writable by its owner only (0600, and so are its -wal and -shm files).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..errors import ConfigurationError
from ..tokens import Invalidation
from .accounts import AccountRecord, SessionRecord
from .base import (
    KeyRecord,
    StoreUnavailable,
    TokenRecord,
    parse_key_cursor,
    rotated,
)
from .local import LocalStore
from .sqlite_conn import Connections, sqlite_path
from .sqlite_schema import (
    ABSENT_KEY_ROW,
    ACCOUNT_FIELDS,
    HAS_RETURNING,
    KEY_FIELDS,
    SESSION_FIELDS,
    SQL_GET,
    SQL_GET_KEY,
    SQL_PUT,
    SQL_PUT_KEY,
    SQL_TOUCH,
    SQL_TOUCH_RETURNING,
    account_from_row,
    apis_to_db,
    create_or_migrate,
    key_to_row,
    token_from_row,
)
from .sqlite_schema import key_from_row as _key_from_row  # a test spies on it here

__all__ = ["CHECKPOINT_EVERY", "SQLiteStore", "sqlite_path"]

# Expired rows are deleted at most this often (seconds), when a token is stored.
_PURGE_EVERY = 60.0

CHECKPOINT_EVERY = 256
"""Calls on the event loop's no-wait connection between two checkpoints of the WAL
(module docstring); a login or an introspection writes a few pages."""

P = ParamSpec("P")
R = TypeVar("R")


class _Busy(Exception):
    """The no-wait connection found the file locked by another connection."""


class _Inline(threading.local):
    active = False


def _busy(exc: sqlite3.Error) -> bool:
    # SQLITE_BUSY / SQLITE_LOCKED (sqlite_errorcode is Python 3.11+; the text is not).
    return isinstance(exc, sqlite3.OperationalError) and "is locked" in str(exc)


def _inline_first(
    method: Callable[Concatenate[SQLiteStore, P], R],
) -> Callable[Concatenate[SQLiteStore, P], Coroutine[Any, Any, R]]:
    """The async twin of `method` that runs it on the calling thread's no-wait
    connection, and again in a worker thread when that finds the file locked."""
    name = method.__name__

    @functools.wraps(method)
    async def face(self: SQLiteStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        call: Callable[P, R] = getattr(self, name)
        try:
            with self._no_wait():
                result = call(*args, **kwargs)
        except _Busy:
            return await asyncio.to_thread(call, *args, **kwargs)
        self._inline_calls += 1
        if self._inline_calls >= CHECKPOINT_EVERY:
            self._inline_calls = 0
            await asyncio.to_thread(self._maintain)
        return result

    face.__name__ = "a" + name
    face.__qualname__ = "SQLiteStore.a" + name
    return face


class SQLiteStore(LocalStore):
    """A store in one SQLite file; both faces (the async one runs in worker threads).

    ``SQLiteStore("sqlite:///bearerguard.db", busy_timeout=5.0)``. The file and its
    tables are created if missing; construction raises StoreUnavailable when the file
    cannot be opened. `busy_timeout` is how long a write waits for another writer before
    giving up with StoreUnavailable ("database is locked" never escapes as anything else).

    `touch_token` is one ``UPDATE … RETURNING`` statement, so concurrent uses from
    several processes never lose an extension (expiry only moves forward). Expired
    tokens are purged now and then when new tokens are stored.

    `subscribe` delivers revocations made through this object only (and in the revoking
    thread): other processes sharing the file are not told, and rely on the middleware's
    cache lifetime to notice a revocation (docs/design.md G3: over SQLite
    that is the cache TTL, not 1 s).
    Use Redis when revocations must reach running middlewares at once.
    """

    #: Every call waits on the file: the async face runs them in worker threads.
    blocking = True

    def __init__(self, url: str, *, busy_timeout: float = 5.0) -> None:
        if not busy_timeout >= 0:
            raise ConfigurationError("busy_timeout must be a non-negative number of seconds")
        super().__init__()
        self.url = url
        self.path = sqlite_path(url)
        self._connections = Connections(self.path, float(busy_timeout))
        self._nowait = Connections(self.path, 0.0, checkpoint=False)
        self._inline = _Inline()
        self._inline_calls = 0
        self._closed = False
        self._last_purge = 0.0
        with self._errors("open"):
            conn = self._conn()
            self._exec_script(conn)

    # -- connections ------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use in each thread and process)."""
        if self._closed:
            raise StoreUnavailable("SQLite store is closed")
        if self._inline.active:
            return self._nowait.get()
        return self._connections.get()

    @contextmanager
    def _no_wait(self) -> Iterator[None]:
        """Run this thread's calls on its no-wait connection (module docstring)."""
        self._inline.active = True
        try:
            yield
        finally:
            self._inline.active = False

    def _maintain(self) -> None:
        """Checkpoint the WAL and delete expired tokens (in a worker thread)."""
        with self._errors("checkpoint"):
            conn = self._conn()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._maybe_purge(conn, time.time())

    def _exec_script(self, conn: sqlite3.Connection) -> None:
        with self._transaction(conn):
            create_or_migrate(conn)

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate sqlite3 errors at one boundary: all become StoreUnavailable."""
        try:
            yield
        except sqlite3.Error as exc:
            if self._inline.active and _busy(exc):
                raise _Busy from exc
            raise StoreUnavailable(f"SQLite store {what} failed: {exc}") from exc
        except (ValueError, TypeError) as exc:  # a row we cannot read: garbage
            raise StoreUnavailable(f"SQLite store {what} returned bad data") from exc

    # -- keys (create_key: KeyMaker) --------------------------------------------------
    def _add_key(self, record: KeyRecord) -> None:
        with self._errors("create_key"):
            self._conn().execute(SQL_PUT_KEY, key_to_row(record))

    def rotate_key(
        self, key_id: str, *, grace: float, now: float | None = None
    ) -> tuple[KeyRecord, str] | None:
        now = time.time() if now is None else now
        with self._errors("rotate_key"):
            conn = self._conn()
            with self._transaction(conn):
                row = conn.execute(SQL_GET_KEY, (key_id,)).fetchone()
                if row is None:
                    return None
                record, secret = rotated(_key_from_row(row), grace, now)
                conn.execute(
                    "UPDATE bg_keys SET secret_digest = ?, old_secret_digest = ?, "
                    "old_secret_until = ? WHERE key_id = ?",
                    (
                        record.secret_digest,
                        record.old_secret_digest,
                        record.old_secret_until,
                        key_id,
                    ),
                )
        # In this process only (as revocations): other processes on the file read the
        # new secret once their key cache's TTL has passed.
        self._subscribers.announce(Invalidation("secret", key_id))
        return record, secret

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._errors("get_key"):
            row = self._conn().execute(SQL_GET_KEY, (key_id,)).fetchone()
            if row is None:
                _key_from_row(ABSENT_KEY_ROW)
                return None
            return _key_from_row(row)

    def list_keys(
        self, account: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[KeyRecord]:
        where: list[str] = []
        params: list[Any] = []
        if account is not None:
            where.append("account = ?")
            params.append(account)
        if after is not None:
            created, key_id = parse_key_cursor(after)
            where.append("(created_at > ? OR (created_at = ? AND key_id > ?))")
            params += [created, created, key_id]
        sql = f"SELECT {KEY_FIELDS} FROM bg_keys"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, key_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._errors("list_keys"):
            rows = self._conn().execute(sql, params).fetchall()
            return [_key_from_row(r) for r in rows]

    # -- accounts and panel sessions ----------------------------------------------------
    def create_account(self, record: AccountRecord) -> bool:
        with self._errors("create_account"):
            cursor = self._conn().execute(
                f"INSERT OR IGNORE INTO bg_accounts ({ACCOUNT_FIELDS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?)",
                (
                    record.name,
                    record.password_hash,
                    apis_to_db(record.apis),
                    int(record.disabled),
                    record.created_at,
                ),
            )
            return cursor.rowcount > 0

    def get_account(self, name: str) -> AccountRecord | None:
        with self._errors("get_account"):
            row = (
                self._conn()
                .execute(
                    f"SELECT {ACCOUNT_FIELDS} FROM bg_accounts WHERE name = ?",  # noqa: S608
                    (name,),
                )
                .fetchone()
            )
            return None if row is None else account_from_row(row)

    def list_accounts(self) -> list[AccountRecord]:
        with self._errors("list_accounts"):
            rows = (
                self._conn()
                .execute(
                    f"SELECT {ACCOUNT_FIELDS} FROM bg_accounts ORDER BY created_at, name"  # noqa: S608
                )
                .fetchall()
            )
            return [account_from_row(r) for r in rows]

    def set_account_apis(self, name: str, apis: Iterable[str]) -> bool:
        with self._errors("set_account_apis"):
            cursor = self._conn().execute(
                "UPDATE bg_accounts SET apis = ? WHERE name = ?", (apis_to_db(apis), name)
            )
            return cursor.rowcount > 0

    def disable_account(self, name: str) -> bool:
        with self._errors("disable_account"):
            conn = self._conn()
            with self._transaction(conn):
                found = conn.execute(
                    "UPDATE bg_accounts SET disabled = 1 WHERE name = ?", (name,)
                ).rowcount
                key_ids = [
                    str(r[0])
                    for r in conn.execute("SELECT key_id FROM bg_keys WHERE account = ?", (name,))
                ]
                conn.execute(
                    "DELETE FROM bg_tokens WHERE key_id IN "
                    "(SELECT key_id FROM bg_keys WHERE account = ?)",
                    (name,),
                )
                conn.execute("DELETE FROM bg_sessions WHERE account = ?", (name,))
        if found:
            for key_id in sorted(key_ids):
                self._subscribers.announce(Invalidation("key", key_id))
        return found > 0

    def put_session(self, record: SessionRecord) -> None:
        with self._errors("put_session"):
            conn = self._conn()
            conn.execute(
                f"INSERT OR REPLACE INTO bg_sessions ({SESSION_FIELDS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?)",
                (
                    record.digest,
                    record.account,
                    record.csrf,
                    record.created_at,
                    record.expires_at,
                ),
            )
            conn.execute("DELETE FROM bg_sessions WHERE expires_at <= ?", (record.created_at,))

    def get_session(self, digest: str, now: float) -> SessionRecord | None:
        with self._errors("get_session"):
            row = (
                self._conn()
                .execute(
                    f"SELECT {SESSION_FIELDS} FROM bg_sessions "  # noqa: S608
                    "WHERE digest = ? AND expires_at > ?",
                    (digest, now),
                )
                .fetchone()
            )
            if row is None:
                return None
            d, account, csrf, created_at, expires_at = row
            return SessionRecord(
                str(d), str(account), str(csrf), float(created_at), float(expires_at)
            )

    def delete_session(self, digest: str) -> None:
        with self._errors("delete_session"):
            self._conn().execute("DELETE FROM bg_sessions WHERE digest = ?", (digest,))

    def revoke_key(self, key_id: str) -> bool:
        with self._errors("revoke_key"):
            conn = self._conn()
            with self._transaction(conn):
                tokens = conn.execute("DELETE FROM bg_tokens WHERE key_id = ?", (key_id,)).rowcount
                found = conn.execute("DELETE FROM bg_keys WHERE key_id = ?", (key_id,)).rowcount
        if found or tokens:
            self._subscribers.announce(Invalidation("key", key_id))
        return found > 0

    # -- tokens -----------------------------------------------------------------------
    def put_token(self, record: TokenRecord) -> None:
        """Store a newly issued token, unless its key is gone (revoked meanwhile).

        The key check and the insert are one statement, so a login racing with
        `revoke_key` cannot leave a live token of a revoked key behind.
        """
        with self._errors("put_token"):
            conn = self._conn()
            conn.execute(
                SQL_PUT,
                (
                    record.digest,
                    record.key_id,
                    apis_to_db(record.apis),
                    record.bound_ip,
                    record.issued_at,
                    record.ttl,
                    record.expires_at,
                    apis_to_db(record.audience),
                    record.key_id,
                ),
            )
            conn.execute(
                "UPDATE bg_keys SET last_used_at = ? WHERE key_id = ?",
                (record.issued_at, record.key_id),
            )
            self._maybe_purge(conn, record.issued_at)

    def _maybe_purge(self, conn: sqlite3.Connection, now: float) -> None:
        mono = time.monotonic()
        if self._inline.active or mono - self._last_purge < _PURGE_EVERY:
            # Never on the event loop: a purge may delete many rows (`_maintain` does it).
            return
        self._last_purge = mono
        conn.execute("DELETE FROM bg_tokens WHERE expires_at <= ?", (now,))

    def touch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        with self._errors("touch_token"):
            conn = self._conn()
            if HAS_RETURNING:
                row = conn.execute(SQL_TOUCH_RETURNING, (now, digest, client_ip)).fetchone()
            else:  # pragma: no cover - SQLite < 3.35: one IMMEDIATE transaction instead
                with self._transaction(conn):
                    conn.execute(SQL_TOUCH, (now, digest, client_ip))
                    row = conn.execute(SQL_GET, (digest, now)).fetchone()
            return None if row is None else token_from_row(row)

    def get_token(self, digest: str, now: float) -> TokenRecord | None:
        with self._errors("get_token"):
            row = self._conn().execute(SQL_GET, (digest, now)).fetchone()
            return None if row is None else token_from_row(row)

    def revoke_token(self, digest: str) -> bool:
        with self._errors("revoke_token"):
            found = (
                self._conn().execute("DELETE FROM bg_tokens WHERE digest = ?", (digest,)).rowcount
                > 0
            )
        if found:
            self._subscribers.announce(Invalidation("token", digest))
        return found

    # -- lifecycle --------------------------------------------------------------------
    def ping(self) -> None:
        with self._errors("ping"):
            self._conn().execute("SELECT 1 FROM bg_keys LIMIT 1").fetchall()

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        self._closed = True
        self._connections.close_all()
        self._nowait.close_all()

    # -- the async face of the per-request calls: inline first (module docstring) -----
    aget_key = _inline_first(get_key)
    aput_token = _inline_first(put_token)
    atouch_token = _inline_first(touch_token)
    aget_token = _inline_first(get_token)
