"""The Redis store against a real redis-server: TTLs, index, pub/sub, restarts, G3.

G3 is defined in docs/design.md.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, StoreBackend
from bearerguard.stores import StoreUnavailable
from bearerguard.stores.redis import (
    RedisStore,
    apikey_key,
    decode_invalidation,
    encode_invalidation,
    invalidation_channel,
    key_tokens_key,
    keys_index_key,
    token_record_key,
)
from bearerguard.tokens import Invalidation, token_digest
from helpers import issue, remember_secret
from redis_server import RedisServer, free_port


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


class Events:
    """Thread-safe record of the invalidations a subscriber got."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Invalidation] = []

    def __call__(self, event: Invalidation) -> None:
        with self._lock:
            self.items.append(event)

    def has(self, event: Invalidation) -> bool:
        with self._lock:
            return event in self.items


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (token_record_key("ab12"), "bearerguard:token:ab12"),
        (token_record_key("ab12", "tenant1"), "tenant1:token:ab12"),
        (apikey_key("key_1"), "bearerguard:apikey:key_1"),
        (key_tokens_key("key_1"), "bearerguard:keytokens:key_1"),
        (keys_index_key(), "bearerguard:keys"),
        (invalidation_channel(), "bearerguard:invalidate"),
    ],
)
def test_key_names(name: str, expected: str) -> None:
    assert name == expected


@pytest.mark.parametrize(
    ("data", "event"),
    [
        (b"token:abc", Invalidation("token", "abc")),
        (b"key:key_1", Invalidation("key", "key_1")),
        ("key:key_1", Invalidation("key", "key_1")),
        (b"secret:key_1", Invalidation("secret", "key_1")),
        (b"key:", None),
        (b"secret:", None),
        # A kind this version does not know (from a newer writer) is dropped, not an
        # error: the listener goes on, as listeners from before "secret" drop it.
        (b"other:x", None),
        (b"Secret:key_1", None),
        (b"garbage", None),
        (b"\xff\xfe", None),
    ],
)
def test_invalidation_messages(data: bytes | str, event: Invalidation | None) -> None:
    assert decode_invalidation(data) == event
    if event is not None:
        assert decode_invalidation(encode_invalidation(event)) == event


def test_tokens_expire_natively_with_the_sliding_ttl(rstore: RedisStore, raw: redis.Redis) -> None:
    tok = issue(rstore, ("dns",), ttl=30)
    digest = token_digest(tok.token)
    name = token_record_key(digest)
    assert 28_000 < raw.pttl(name) <= 30_000
    raw.pexpire(name, 5_000)  # as if 25 s had passed
    assert rstore.touch_token(digest, time.time()) is not None
    assert 28_000 < raw.pttl(name) <= 30_000  # renewed by the use
    before = raw.pttl(name)
    assert rstore.get_token(digest, time.time()) is not None
    assert raw.pttl(name) <= before  # a plain read is not a use
    assert raw.sismember(key_tokens_key(tok.key_id), digest)


def test_revoking_a_key_deletes_its_tokens_and_index(rstore: RedisStore, raw: redis.Redis) -> None:
    key, secret = rstore.create_key(["dns"])
    remember_secret(secret)
    toks = [issue(rstore, ("dns",), key_id=key.key_id) for _ in range(4)]
    assert raw.scard(key_tokens_key(key.key_id)) == 4
    assert rstore.revoke_key(key.key_id) is True
    for t in toks:
        assert not raw.exists(token_record_key(token_digest(t.token)))
    assert not raw.exists(key_tokens_key(key.key_id))
    assert not raw.exists(apikey_key(key.key_id))
    assert raw.zscore(keys_index_key(), key.key_id) is None


def test_expired_index_entries_are_pruned(rstore: RedisStore, raw: redis.Redis) -> None:
    key, secret = rstore.create_key(["dns"])
    remember_secret(secret)
    for _ in range(20):
        t = issue(rstore, ("dns",), key_id=key.key_id)
        raw.delete(token_record_key(token_digest(t.token)))  # as if it had expired
    live = issue(rstore, ("dns",), key_id=key.key_id)
    for _ in range(5):
        t = issue(rstore, ("dns",), key_id=key.key_id)
        raw.delete(token_record_key(token_digest(t.token)))
    # Each new token prunes a sample of dead entries: far fewer than the 25 dead remain.
    assert raw.scard(key_tokens_key(key.key_id)) < 20
    assert raw.sismember(key_tokens_key(key.key_id), token_digest(live.token))


def test_no_secret_or_token_in_a_redis_dump(rstore: RedisStore, raw: redis.Redis) -> None:
    clear: list[str] = []
    digests: list[str] = []
    for _ in range(3):
        key, secret = rstore.create_key(["dns", "vps"], introspect=True)
        clear.append(remember_secret(secret))
        tok = issue(rstore, ("dns",), key_id=key.key_id)
        clear.append(tok.token)
        digests.append(token_digest(tok.token))
        rstore.touch_token(token_digest(tok.token), time.time())
    blob = b""
    names = list(raw.scan_iter(match="*", count=100))
    assert names
    for name in names:
        blob += name + (raw.dump(name) or b"")
        kind = raw.type(name)
        if kind == b"string":
            blob += raw.get(name) or b""
        elif kind == b"hash":
            for k, v in raw.hgetall(name).items():
                blob += k + v
        elif kind == b"set":
            blob += b"".join(raw.smembers(name))
        elif kind == b"zset":
            blob += b"".join(raw.zrange(name, 0, -1))
        else:  # pragma: no cover - we create no other types
            raise AssertionError(f"unexpected type {kind!r}")
    assert all(d.encode() in blob for d in digests)  # we did read the records
    for s in clear:
        assert s.encode() not in blob


def test_a_put_racing_a_key_revocation_stores_nothing(rstore: RedisStore, raw: redis.Redis) -> None:
    key, secret = rstore.create_key(["dns"])
    remember_secret(secret)
    rstore.revoke_key(key.key_id)
    tok = issue(rstore, ("dns",), key_id=key.key_id)
    assert not raw.exists(token_record_key(token_digest(tok.token)))
    assert not raw.exists(key_tokens_key(key.key_id))


def test_subscribe_across_two_store_objects(redis_url: str) -> None:
    listener, revoker = RedisStore(redis_url), RedisStore(redis_url)
    events = Events()
    try:
        unsubscribe = listener.subscribe(events)
        tok = issue(revoker, ("dns",))
        digest = token_digest(tok.token)
        assert revoker.revoke_token(digest)
        assert wait_for(lambda: events.has(Invalidation("token", digest)))
        key, secret = revoker.create_key(["dns"])
        remember_secret(secret)
        assert revoker.revoke_key(key.key_id)
        assert wait_for(lambda: events.has(Invalidation("key", key.key_id)))
        # Nothing revoked, nothing published.
        assert revoker.revoke_key("key_unknown") is False
        assert revoker.revoke_token("0" * 64) is False
        unsubscribe()
        other, secret = revoker.create_key(["dns"])
        remember_secret(secret)
        revoker.revoke_key(other.key_id)
        time.sleep(0.3)
        assert not events.has(Invalidation("key", other.key_id))
        assert events.items == [Invalidation("token", digest), Invalidation("key", key.key_id)]
    finally:
        listener.close()
        revoker.close()


def test_a_failing_callback_does_not_stop_the_listener(rstore: RedisStore) -> None:
    events = Events()
    calls = 0

    def flaky(event: Invalidation) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        events(event)

    rstore.subscribe(flaky)
    a, s1 = rstore.create_key(["dns"])
    b, s2 = rstore.create_key(["dns"])
    remember_secret(s1)
    remember_secret(s2)
    rstore.revoke_key(a.key_id)
    rstore.revoke_key(b.key_id)
    assert wait_for(lambda: events.has(Invalidation("key", b.key_id)))


def _revocation_reaches(revoker: RedisStore, events: Events, timeout: float) -> bool:
    """Revoke fresh keys until the subscriber hears one (it may still be reconnecting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            key, secret = revoker.create_key(["dns"])
        except StoreUnavailable:
            time.sleep(0.1)
            continue
        remember_secret(secret)
        revoker.revoke_key(key.key_id)
        if wait_for(lambda k=key.key_id: events.has(Invalidation("key", k)), 0.5):  # type: ignore[misc]
            return True
    return False


def test_subscriber_and_clients_survive_a_redis_restart() -> None:
    with RedisServer() as server:
        listener, revoker = RedisStore(server.url), RedisStore(server.url)
        events = Events()
        try:
            listener.subscribe(events)
            assert _revocation_reaches(revoker, events, 10)
            server.restart()  # same port, all data gone, every connection dropped
            assert _revocation_reaches(revoker, events, 20)
            # The plain client reconnects too.
            tok = issue(revoker, ("dns",))
            assert listener.touch_token(token_digest(tok.token), time.time()) is not None
        finally:
            listener.close()
            revoker.close()


def test_subscribe_before_redis_is_up() -> None:
    server = RedisServer()
    server.port = free_port()
    store = RedisStore(server.url, timeout=0.5)
    events = Events()
    try:
        unsubscribe = store.subscribe(events)  # returns although Redis is down
        server.start()
        assert _revocation_reaches(store, events, 20)
        unsubscribe()
    finally:
        store.close()
        server.close()


def test_unreachable_redis_is_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.touch_token("0" * 64, time.time())
        with pytest.raises(StoreUnavailable):
            store.create_key(["dns"])

        async def main() -> None:
            with pytest.raises(StoreUnavailable):
                await store.aping()
            with pytest.raises(StoreUnavailable):
                await store.atouch_token("0" * 64, time.time())
            await store.aclose()

        asyncio.run(main())
    finally:
        store.close()


def test_a_hung_redis_times_out_as_store_unavailable() -> None:
    """A peer that accepts connections but never answers: bounded, then StoreUnavailable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        try:
            with pytest.raises(StoreUnavailable):
                store.touch_token("0" * 64, time.time())

            async def main() -> None:
                with pytest.raises(StoreUnavailable):
                    await store.atouch_token("0" * 64, time.time())
                await store.aclose()

            asyncio.run(main())
        finally:
            store.close()


def test_garbage_in_redis_is_store_unavailable(rstore: RedisStore, raw: redis.Redis) -> None:
    raw.set(token_record_key("f" * 64), b"not json")
    with pytest.raises(StoreUnavailable):
        rstore.touch_token("f" * 64, time.time())
    raw.set(apikey_key("key_x"), b"a string, not a hash")
    with pytest.raises(StoreUnavailable):
        rstore.get_key("key_x")


def test_close_closes_an_idle_loops_async_client(redis_url: str) -> None:
    # The async client belongs to the loop that first used it; `close()` from sync code
    # closes it on that loop (no ResourceWarning, which pytest turns into an error).
    store = RedisStore(redis_url)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(store.aping())
        store.close()
    finally:
        loop.close()
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_g3_redis_revocation_reaches_a_cached_middleware(redis_url: str) -> None:
    """A token cached by a running middleware is refused once its key is revoked.

    Cache TTL and touch interval are a minute, so only the pub/sub invalidation can
    explain the refusal; the deadline is generous (the time it takes is measured by the
    reliability suite, `faults.redis_restart`).
    """
    guarded = RedisStore(redis_url)
    admin = RedisStore(redis_url)

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"key_id": request.user.display_name})

    app = BearerGuardMiddleware(
        Starlette(routes=[Route("/whoami", whoami)]),
        backend=StoreBackend(guarded),
        cache_ttl=60,
        touch_interval=60,
    )
    tok = issue(admin, ("dns",), ttl=300)
    headers = {"Authorization": f"Bearer {tok.token}"}
    lookups = 0
    original = guarded.atouch_token

    async def counting(digest: str, now: float, client_ip: str | None = None) -> Any:
        nonlocal lookups
        lookups += 1
        return await original(digest, now, client_ip)

    guarded.atouch_token = counting  # type: ignore[method-assign]

    async def main() -> None:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                r = await c.get("/whoami", headers=headers)
                assert r.status_code == 200, r.text
                assert r.json()["key_id"] == tok.key_id
                r = await c.get("/whoami", headers=headers)
                assert r.status_code == 200
                assert lookups == 1  # the second answer came from the cache

                await asyncio.to_thread(admin.revoke_key, tok.key_id)
                revoked_at = time.monotonic()
                while True:
                    r = await c.get("/whoami", headers=headers)
                    if r.status_code == 401:
                        break
                    assert r.status_code == 200
                    waited = time.monotonic() - revoked_at
                    assert waited < 30.0, "still allowed 30 s after the key was revoked"
                    await asyncio.sleep(0.01)
                assert 'error="invalid_token"' in r.headers["www-authenticate"]
                # Evicted, then looked up again (and refused): no refresh came between.
                assert lookups == 2
        finally:
            await guarded.aclose()

    try:
        asyncio.run(main())
    finally:
        app.close()
        guarded.close()
        admin.close()
