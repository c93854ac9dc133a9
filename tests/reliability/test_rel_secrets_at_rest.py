"""Secrets at rest: after a full session through the real service, the SQLite file (and
its WAL) and a dump of Redis hold no token and no key secret in clear."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import redis
from reliability_support import bearer, client_from, introspect, record, revoke, token_for

from integration_support import uvicorn_example
from live_service import LiveService
from redis_server import RedisServer


def _session(svc: LiveService, store_env: dict[str, str]) -> list[str]:
    """Keys, logins, introspection, revocation and use: return every secret involved."""
    key_id, secret = svc.create_key(["dns"])
    rs_id, rs_secret = svc.create_key(["dns"], introspect=True)
    kept = token_for(svc.base_url, key_id, secret)
    gone = token_for(svc.base_url, key_id, secret)
    assert introspect(svc.base_url, rs_id, rs_secret, kept).json()["active"] is True
    assert revoke(svc.base_url, key_id, secret, gone).status_code == 200
    app = uvicorn_example(store_env)
    try:
        with client_from() as c:
            assert c.get(app.base_url + "/dns/zones", headers=bearer(kept)).status_code == 200
    finally:
        app.stop()
    return [secret, rs_secret, kept, gone]


def _forms(value: str) -> list[bytes]:
    # The clear value in every encoding a careless store might use.
    raw = value.encode()
    return [raw, raw.hex().encode(), value.encode("utf-16-le")]


def test_sqlite_file_holds_no_secret() -> None:
    with tempfile.TemporaryDirectory(prefix="bearerguard-rel-") as tmp:
        db = Path(tmp) / "at-rest.db"
        url = f"sqlite:///{db}"
        with LiveService(url) as svc:
            clear = _session(svc, {"BEARERGUARD_STORE": url})
            # While running (WAL not yet checkpointed) and after shutdown.
            files_live = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        files_after = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        with sqlite3.connect(db) as conn:
            dump = "\n".join(conn.iterdump()).encode()
        conn.close()
        blobs = [*files_live.values(), *files_after.values(), dump]
        forms = [form for value in clear for form in _forms(value)]
        found = sum(1 for form in forms for b in blobs if form in b)
        # What is there instead: the SHA-256 digest of the kept token.
        digest_found = hashlib.sha256(clear[2].encode()).hexdigest().encode() in dump
    record(
        "secrets_at_rest.sqlite",
        secrets_checked=len(clear),
        forms_searched=len(forms),
        bytes_scanned=sum(map(len, blobs)),
        found=found,
    )
    assert found == 0, "a secret in clear in the SQLite file"
    assert digest_found


def _redis_dump(client: redis.Redis) -> bytes:
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key)
        value: Any
        if kind == b"string":
            value = [client.get(key)]
        elif kind == b"hash":
            value = [x for kv in client.hgetall(key).items() for x in kv]
        elif kind == b"set":
            value = list(client.smembers(key))
        elif kind == b"zset":
            value = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        else:
            value = [client.dump(key) or b""]
        out.extend(v for v in value if v is not None)
        out.append(client.dump(key) or b"")
    return b"\n".join(out)


def test_redis_holds_no_secret() -> None:
    with RedisServer() as server, LiveService(server.url) as svc:
        clear = _session(svc, {"BEARERGUARD_STORE": server.url})
        client = redis.Redis.from_url(server.url)
        try:
            dump = _redis_dump(client)
            keys = client.dbsize()
        finally:
            client.close()
    forms = [form for value in clear for form in _forms(value)]
    found = sum(1 for form in forms if form in dump)
    record(
        "secrets_at_rest.redis",
        secrets_checked=len(clear),
        forms_searched=len(forms),
        keys_dumped=keys,
        bytes_scanned=len(dump),
        found=found,
    )
    assert found == 0, "a secret in clear in Redis"
    assert hashlib.sha256(clear[2].encode()).hexdigest().encode() in dump
