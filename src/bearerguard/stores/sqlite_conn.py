"""The SQLite store's connections: the URL, the private file, one connection per thread."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from contextlib import suppress

from ..errors import ConfigurationError

__all__ = ["Connections", "sqlite_path"]


def sqlite_path(url: str) -> str:
    """Return the file path named by a ``sqlite:///…`` URL (SQLAlchemy convention).

    ``sqlite:///relative/path.db`` is relative to the working directory,
    ``sqlite:////absolute/path.db`` absolute. Raises ConfigurationError for anything
    else (no path, a query string, ``:memory:`` — use ``memory://``).
    """
    prefix = "sqlite:///"
    if not url[: len(prefix)].lower() == prefix:
        raise ConfigurationError(
            f"bad SQLite store URL {url!r}: use sqlite:///relative.db or sqlite:////abs/path.db"
        )
    path = url[len(prefix) :]
    if not path or path.endswith("/"):
        raise ConfigurationError(f"bad SQLite store URL {url!r}: no file name")
    if "?" in path or "#" in path:
        raise ConfigurationError(f"bad SQLite store URL {url!r}: query strings are not supported")
    if path == ":memory:" or "\x00" in path:
        raise ConfigurationError(
            f"bad SQLite store URL {url!r}: use memory:// for an in-process store"
        )
    return path


def _create_private(path: str) -> None:
    """Create the database file readable and writable by its owner only (H7), if missing.

    SQLite gives the -wal and -shm files the database file's permissions, so they are
    0600 too. An existing file keeps the mode its owner gave it.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # sqlite3.connect reports what is wrong with the path
    os.close(fd)


class _Holder:
    """One thread's connection (sqlite3 connections cannot be weakly referenced).

    When the thread ends, its `threading.local` drops the holder and the connection
    is closed by garbage collection; `SQLiteStore.close` closes the rest.
    """

    __slots__ = ("__weakref__", "conn", "pid")

    def __init__(self, conn: sqlite3.Connection, pid: int) -> None:
        self.conn = conn
        self.pid = pid


class _Local(threading.local):
    holder: _Holder | None = None


class Connections:
    """One connection per thread (and per process, after a fork) to one SQLite file.

    With `checkpoint` false, a commit never checkpoints the WAL on its own connection
    (``wal_autocheckpoint = 0``): whoever uses such connections checkpoints elsewhere.
    """

    def __init__(self, path: str, busy_timeout: float, *, checkpoint: bool = True) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.checkpoint = checkpoint
        self._local = _Local()
        self._conns: weakref.WeakSet[_Holder] = weakref.WeakSet()
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened (WAL, busy timeout) on first use."""
        local = self._local
        pid = os.getpid()
        holder = local.holder
        if holder is not None and holder.pid == pid:
            return holder.conn
        # A connection inherited across fork() must not be used (or closed) by the
        # child: SQLite's POSIX locks belong to the parent. Open a fresh one.
        _create_private(self.path)
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # autocommit; explicit BEGIN IMMEDIATE where needed
            check_same_thread=False,  # only `close()` touches it from another thread
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if not self.checkpoint:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            conn.close()
            raise
        holder = local.holder = _Holder(conn, pid)
        with self._lock:
            self._conns.add(holder)
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL takes an exclusive lock and does not always wait on the busy
        # handler, so retry briefly when several processes open a new file together.
        deadline = time.monotonic() + max(self.busy_timeout, 0.1)
        while True:
            try:
                row = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
                continue
            if row is None or str(row[0]).lower() != "wal":
                raise sqlite3.OperationalError("cannot switch the database to WAL mode")
            return

    def close_all(self) -> None:
        """Close every connection opened so far, in any thread."""
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for holder in conns:
            with suppress(sqlite3.Error):
                holder.conn.close()
        self._local.holder = None
