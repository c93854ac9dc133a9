"""A SQLite database made before accounts existed is migrated in place and keeps working."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from bearerguard.stores.base import digest_secret, new_key_id, new_secret, new_token
from bearerguard.stores.sqlite import SQLiteStore
from bearerguard.tokens import token_digest
from helpers import remember_secret
from live_service import LiveService

# The schema of main before issue 14 (git show main:src/bearerguard/stores/sqlite.py).
OLD_SCHEMA = (
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
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bg_tokens_key ON bg_tokens (key_id)",
    "CREATE INDEX IF NOT EXISTS bg_tokens_expiry ON bg_tokens (expires_at)",
)


def old_database(path: Path) -> tuple[str, str, str]:
    """A database as today's main writes it, with one key and one live token."""
    key_id, secret, token = new_key_id(), remember_secret(new_secret()), new_token()
    remember_secret(token)
    now = time.time()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for stmt in OLD_SCHEMA:
            conn.execute(stmt)
        conn.execute(
            "INSERT INTO bg_keys VALUES (?, ?, ?, ?, ?)",
            (key_id, digest_secret(secret), '["dns","vps"]', 0, now - 100),
        )
        conn.execute(
            "INSERT INTO bg_tokens VALUES (?, ?, ?, ?, ?, ?, ?)",
            (token_digest(token), key_id, '["dns"]', "127.0.0.1", now, 300.0, now + 300),
        )
    conn.close()
    return key_id, secret, token


def test_an_old_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    key_id, _secret, token = old_database(path)

    store = SQLiteStore(f"sqlite:///{path}")
    try:
        key = store.get_key(key_id)
        assert key is not None
        assert (key.account, key.name, key.expires_at, key.old_secret_digest) == ("", "", None, "")
        assert store.touch_token(token_digest(token), time.time()) is not None
        assert store.list_accounts() == []
    finally:
        store.close()
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(bg_keys)")}
    assert {"account", "name", "expires_at", "last_used_at", "old_secret_digest"} <= columns
    # Opening it again (already migrated) changes nothing.
    SQLiteStore(f"sqlite:///{path}").close()


def test_the_service_logs_in_with_a_key_from_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    key_id, secret, _token = old_database(path)
    with LiveService(f"sqlite:///{path}") as svc:
        r = httpx.post(
            svc.base_url + "/login",
            data={"grant_type": "client_credentials"},
            auth=(key_id, secret),
        )
        assert r.status_code == 200, r.text
        remember_secret(r.json()["access_token"])
        assert r.json()["token_type"] == "bearer"
        listed = svc.cli("keys", "list", "--json")
        assert listed.returncode == 0 and key_id in listed.stdout
