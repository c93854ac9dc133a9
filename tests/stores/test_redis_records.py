"""Token records in Redis as the lookup reads them: old records stay readable, hostile
ones are refused (StoreUnavailable, so 503 through the middleware), never a 500 or an
allowed request. Against a real redis-server; records are written raw, as another
writer (an older auth service, or an attacker with Redis access) would leave them.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, StoreBackend, WSGIBearerGuard
from bearerguard.stores import StoreUnavailable
from bearerguard.stores.base import TokenRecord, new_token
from bearerguard.stores.redis import RedisStore, decode_token, encode_token, token_record_key
from bearerguard.tokens import token_digest
from helpers import remember_secret

# As the auth service wrote them before this change (encode_token's JSON, verbatim), and
# as another writer may: integer times, no ``ttl_ms``, members we do not know.
OLD_RECORDS = [
    (
        b'{"k":"key_0a1b","a":["dns","vps"],"ip":"127.0.0.1","iat":1764489600.25,'
        b'"ttl":300.0,"ttl_ms":300000}',
        TokenRecord(
            "d", "key_0a1b", frozenset({"dns", "vps"}), "127.0.0.1", 1764489600.25, 300.0, 0
        ),
    ),
    (
        b'{"k":"key_0a1b","a":["dns"],"ip":"::1","iat":1764489600.25,"ttl":60.0,'
        b'"ttl_ms":60000,"aud":["https://api.example"]}',
        TokenRecord(
            "d",
            "key_0a1b",
            frozenset({"dns"}),
            "::1",
            1764489600.25,
            60.0,
            0,
            ("https://api.example",),
        ),
    ),
    (
        b'{"k":"key_0a1b","a":[],"ip":"10.0.0.1","iat":1764489600,"ttl":300,"extra":{"x":1}}',
        TokenRecord("d", "key_0a1b", frozenset(), "10.0.0.1", 1764489600.0, 300.0, 0),
    ),
]


@pytest.mark.parametrize(("value", "expected"), OLD_RECORDS)
def test_old_records_decode_to_the_same_record(value: bytes, expected: TokenRecord) -> None:
    assert decode_token("d", value, 0) == expected
    assert decode_token("d", value.decode(), 0) == expected


def test_the_encoder_round_trips() -> None:
    record = TokenRecord(
        "d", "key_1", frozenset({"dns", "vps"}), "127.0.0.1", 1.5, 300.0, 301.5, ("aud1",)
    )
    assert decode_token("d", encode_token(record), 301.5) == record


@pytest.mark.parametrize(("value", "expected"), OLD_RECORDS[:2])
def test_the_encoder_writes_what_the_earlier_writer_wrote(
    value: bytes, expected: TokenRecord
) -> None:
    # Byte for byte (the first two were json.dumps's): replicas of two versions during
    # an upgrade write the same records.
    assert encode_token(expected).encode() == value


@pytest.mark.parametrize(("value", "expected"), OLD_RECORDS)
def test_old_records_are_found_and_extended(
    rstore: RedisStore, raw: redis.Redis, value: bytes, expected: TokenRecord
) -> None:
    digest = "e" * 64
    raw.set(token_record_key(digest), value, px=5_000)
    now = time.time()
    got = rstore.touch_token(digest, now, expected.bound_ip)
    assert got is not None
    assert (got.key_id, got.apis, got.bound_ip, got.audience) == (
        expected.key_id,
        expected.apis,
        expected.bound_ip,
        expected.audience,
    )
    if b"ttl_ms" in value:  # the touch script extends what says how long
        assert raw.pttl(token_record_key(digest)) > 5_000
        assert got.expires_at == pytest.approx(now + expected.ttl, abs=2)

    async def main() -> TokenRecord | None:
        try:
            return await rstore.atouch_token(digest, now, expected.bound_ip)
        finally:
            await rstore.aclose()

    again = asyncio.run(main())
    assert again is not None
    assert again.expires_at == pytest.approx(got.expires_at, abs=2)
    assert replace(again, expires_at=0) == replace(got, expires_at=0)


HOSTILE = [
    b"not json",
    b"\xff\xfe\x00",
    b"",
    b"null",
    b"[]",
    b'"a string"',
    b"{}",
    b'{"k":"key_1","a":["dns"],"ip":"127.0.0.1","iat":1.0',  # truncated
    b'{"a":["dns"],"ip":"127.0.0.1","iat":1.0,"ttl":300.0}',  # no key id
    b'{"k":1,"a":["dns"],"ip":"127.0.0.1","iat":1.0,"ttl":300.0}',
    b'{"k":"key_1","a":"dns","ip":"127.0.0.1","iat":1.0,"ttl":300.0}',
    b'{"k":"key_1","a":{"dns":1},"ip":"127.0.0.1","iat":1.0,"ttl":300.0}',
    b'{"k":"key_1","a":["dns",1],"ip":"127.0.0.1","iat":1.0,"ttl":300.0}',
    b'{"k":"key_1","a":["dns"],"ip":null,"iat":1.0,"ttl":300.0}',
    b'{"k":"key_1","a":["dns"],"ip":"127.0.0.1","iat":"1.0","ttl":300.0}',
    b'{"k":"key_1","a":["dns"],"ip":"127.0.0.1","iat":1.0,"ttl":true}',
    b'{"k":"key_1","a":["dns"],"ip":"127.0.0.1","iat":1.0,"ttl":1e999}',
    b'{"k":"key_1","a":["dns"],"ip":"127.0.0.1","iat":1.0,"ttl":300.0,"aud":"x"}',
    b'{"k":"key_1","a":["dns"],"ip":"127.0.0.1","iat":1.0,"ttl":300.0,"aud":[null]}',
    b"[" * 10_000,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_record_is_store_unavailable(
    rstore: RedisStore, raw: redis.Redis, value: bytes
) -> None:
    digest = "f" * 64
    raw.set(token_record_key(digest), value, px=60_000)
    with pytest.raises(StoreUnavailable):
        rstore.touch_token(digest, time.time(), "127.0.0.1")

    async def main() -> None:
        try:
            with pytest.raises(StoreUnavailable):
                await rstore.atouch_token(digest, time.time(), "127.0.0.1")
        finally:
            await rstore.aclose()

    asyncio.run(main())


def test_a_record_of_the_wrong_redis_type_is_store_unavailable(
    rstore: RedisStore, raw: redis.Redis
) -> None:
    digest = "c" * 64
    raw.hset(token_record_key(digest), "k", "key_1")
    with pytest.raises(StoreUnavailable):
        rstore.touch_token(digest, time.time(), "127.0.0.1")


@pytest.mark.parametrize("value", [HOSTILE[0], HOSTILE[9], HOSTILE[12], HOSTILE[15]])
def test_through_both_middlewares_a_hostile_record_is_a_503(
    redis_url: str, raw: redis.Redis, value: bytes
) -> None:
    token = remember_secret(new_token())
    raw.set(token_record_key(token_digest(token)), value, px=60_000)
    headers = {"Authorization": f"Bearer {token}"}

    def wsgi_app(environ: object, start_response: object) -> list[bytes]:
        raise AssertionError("a hostile record let a request through")

    store = RedisStore(redis_url)
    guard = WSGIBearerGuard(wsgi_app, backend=StoreBackend(store))
    try:
        transport = httpx.WSGITransport(app=guard, remote_addr="127.0.0.1")
        with httpx.Client(transport=transport, base_url="http://testserver") as c:
            r = c.get("/whoami", headers=headers)
    finally:
        guard.close()
        store.close()
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "temporarily_unavailable"

    async def whoami(request: Request) -> JSONResponse:
        raise AssertionError("a hostile record let a request through")

    astore = RedisStore(redis_url)
    app = BearerGuardMiddleware(
        Starlette(routes=[Route("/whoami", whoami)]), backend=StoreBackend(astore)
    )

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.get("/whoami", headers=headers)
        finally:
            await astore.aclose()

    try:
        r = asyncio.run(main())
    finally:
        app.close()
    assert r.status_code == 503, r.text
    assert json.loads(r.text)["error"] == "temporarily_unavailable"


def test_a_lookup_reloads_a_script_the_server_lost(rstore: RedisStore, raw: redis.Redis) -> None:
    """After SCRIPT FLUSH (as after a restart or a failover to a fresh replica) the
    lookup's EVALSHA fails with NOSCRIPT: it loads the script and answers."""
    value, expected = OLD_RECORDS[0]
    digest = "a" * 64
    raw.set(token_record_key(digest), value, px=60_000)
    assert rstore.touch_token(digest, time.time()) is not None  # the script is loaded
    for _ in range(2):
        raw.script_flush()
        got = rstore.touch_token(digest, time.time(), expected.bound_ip)
        assert got is not None and got.key_id == expected.key_id

    async def main() -> TokenRecord | None:
        try:
            raw.script_flush()
            return await rstore.atouch_token(digest, time.time(), expected.bound_ip)
        finally:
            await rstore.aclose()

    again = asyncio.run(main())
    assert again is not None and again.key_id == expected.key_id
