"""The SQLite store's file format: schema, in-place migration, SQL text, row codecs.

Plain values and functions; `sqlite.SQLiteStore` runs them on its connections.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from .accounts import AccountRecord
from .base import KeyRecord, TokenRecord

__all__ = [
    "ABSENT_KEY_ROW",
    "ACCOUNT_FIELDS",
    "HAS_RETURNING",
    "KEY_COLUMNS",
    "KEY_FIELDS",
    "SCHEMA",
    "SESSION_FIELDS",
    "SQL_GET",
    "SQL_GET_KEY",
    "SQL_PUT",
    "SQL_PUT_KEY",
    "SQL_TOUCH",
    "SQL_TOUCH_RETURNING",
    "TOKEN_COLUMNS",
    "account_from_row",
    "apis_from_db",
    "apis_to_db",
    "create_or_migrate",
    "key_from_row",
    "key_to_row",
    "token_from_row",
]

# RETURNING needs SQLite 3.35 (2021); older libraries fall back to one IMMEDIATE
# transaction doing UPDATE then SELECT.
HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bg_keys (
        key_id TEXT PRIMARY KEY,
        secret_digest TEXT NOT NULL,
        apis TEXT NOT NULL,
        introspect INTEGER NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bg_tokens (
        digest TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        apis TEXT NOT NULL,
        bound_ip TEXT NOT NULL,
        issued_at REAL NOT NULL,
        ttl REAL NOT NULL,
        expires_at REAL NOT NULL,
        audience TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX IF NOT EXISTS bg_tokens_key ON bg_tokens (key_id)",
    "CREATE INDEX IF NOT EXISTS bg_tokens_expiry ON bg_tokens (expires_at)",
    """CREATE TABLE IF NOT EXISTS bg_accounts (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        apis TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bg_sessions (
        digest TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bg_sessions_account ON bg_sessions (account)",
)

# Columns added to bg_keys for accounts and rotation. A database made before them is
# migrated in place when opened (ALTER TABLE … ADD COLUMN, in one transaction).
KEY_COLUMNS = (
    ("account", "TEXT NOT NULL DEFAULT ''"),
    ("name", "TEXT NOT NULL DEFAULT ''"),
    ("expires_at", "REAL"),
    ("last_used_at", "REAL"),
    ("old_secret_digest", "TEXT NOT NULL DEFAULT ''"),
    ("old_secret_until", "REAL NOT NULL DEFAULT 0"),
)
# Token columns added after the first schema (the RFC 8707 audience).
TOKEN_COLUMNS = (("audience", "TEXT NOT NULL DEFAULT '[]'"),)
KEY_FIELDS = "key_id, secret_digest, apis, introspect, created_at, " + ", ".join(
    c for c, _ in KEY_COLUMNS
)
ACCOUNT_FIELDS = "name, password_hash, apis, disabled, created_at"
SESSION_FIELDS = "digest, account, csrf, created_at, expires_at"

SQL_GET_KEY = f"SELECT {KEY_FIELDS} FROM bg_keys WHERE key_id = ?"  # noqa: S608
SQL_PUT_KEY = f"INSERT INTO bg_keys ({KEY_FIELDS}) VALUES ({', '.join('?' * 11)})"  # noqa: S608
# The key check and the insert are one statement (see `put_token`).
SQL_PUT = (
    "INSERT OR REPLACE INTO bg_tokens "
    "(digest, key_id, apis, bound_ip, issued_at, ttl, expires_at, audience) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM bg_keys WHERE key_id = ?)"
)
SQL_GET = (
    "SELECT digest, key_id, apis, bound_ip, issued_at, ttl, expires_at, audience FROM bg_tokens "
    "WHERE digest = ? AND expires_at > ?"
)
# What `get_key` decodes when the key id is unknown, so a wrong secret costs the same
# work for a real key id as for a made-up one (no timing hint of which ids exist).
ABSENT_KEY_ROW = ("key_0", "0" * 64, '["api"]', 0, 0.0, "", "", None, None, "", 0.0)
# Lookup-and-extend in one statement: no other writer can come between. MAX keeps expiry
# moving forward when processes with slightly different clocks race. ?3 is the address
# the use came from (NULL: unknown): a use from another address extends nothing (H4).
SQL_TOUCH = (
    "UPDATE bg_tokens SET expires_at = CASE WHEN ?3 IS NULL OR bound_ip = ?3 "
    "THEN MAX(expires_at, ?1 + ttl) ELSE expires_at END "
    "WHERE digest = ?2 AND expires_at > ?1"
)
SQL_TOUCH_RETURNING = (
    SQL_TOUCH + " RETURNING digest, key_id, apis, bound_ip, issued_at, ttl, expires_at, audience"
)


def create_or_migrate(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes if missing; add the columns an older file lacks.

    Run it inside one transaction, so a failed migration leaves the file as it was.
    """
    for stmt in SCHEMA:
        conn.execute(stmt)
    # Files made by an older bearerguard gain the columns added since, in place.
    for table, added in (("bg_keys", KEY_COLUMNS), ("bg_tokens", TOKEN_COLUMNS)):
        have = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
        for column, decl in added:
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    conn.execute("CREATE INDEX IF NOT EXISTS bg_keys_account ON bg_keys (account)")
    conn.execute("CREATE INDEX IF NOT EXISTS bg_keys_created ON bg_keys (created_at, key_id)")


def apis_to_db(apis: Iterable[str]) -> str:
    return json.dumps(sorted(apis), separators=(",", ":"))


def apis_from_db(value: str) -> frozenset[str]:
    loaded = json.loads(value)
    if not isinstance(loaded, list) or not all(isinstance(a, str) for a in loaded):
        raise ValueError("apis column is not a list of strings")
    return frozenset(loaded)


def token_from_row(row: tuple[Any, ...]) -> TokenRecord:
    digest, key_id, apis, bound_ip, issued_at, ttl, expires_at, audience = row
    return TokenRecord(
        audience=tuple(sorted(apis_from_db(audience))),
        digest=str(digest),
        key_id=str(key_id),
        apis=apis_from_db(apis),
        bound_ip=str(bound_ip),
        issued_at=float(issued_at),
        ttl=float(ttl),
        expires_at=float(expires_at),
    )


def key_from_row(row: tuple[Any, ...]) -> KeyRecord:
    (key_id, secret_digest, apis, introspect, created_at, account, name, expires_at) = row[:8]
    last_used_at, old_secret_digest, old_secret_until = row[8:]
    return KeyRecord(
        key_id=str(key_id),
        apis=apis_from_db(apis),
        introspect=bool(introspect),
        created_at=float(created_at),
        secret_digest=str(secret_digest),
        account=str(account),
        name=str(name),
        expires_at=None if expires_at is None else float(expires_at),
        last_used_at=None if last_used_at is None else float(last_used_at),
        old_secret_digest=str(old_secret_digest),
        old_secret_until=float(old_secret_until),
    )


def key_to_row(record: KeyRecord) -> tuple[Any, ...]:
    return (
        record.key_id,
        record.secret_digest,
        apis_to_db(record.apis),
        int(record.introspect),
        record.created_at,
        record.account,
        record.name,
        record.expires_at,
        record.last_used_at,
        record.old_secret_digest,
        record.old_secret_until,
    )


def account_from_row(row: tuple[Any, ...]) -> AccountRecord:
    name, password_hash, apis, disabled, created_at = row
    return AccountRecord(
        name=str(name),
        apis=apis_from_db(apis),
        created_at=float(created_at),
        disabled=bool(disabled),
        password_hash=str(password_hash),
    )
