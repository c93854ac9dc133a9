"""The lean asyncio Redis client (`stores/redis/lean.py`) behind `RedisStore`'s async
lookups and logins, against a real redis-server: pipelining, scripts, lost connections,
late replies, auth and database, garbage, closing."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import pytest
import redis

from bearerguard.stores import StoreUnavailable
from bearerguard.stores.base import TokenRecord, new_token
from bearerguard.stores.redis import RedisStore, token_record_key
from bearerguard.stores.redis.connect import parse_url
from bearerguard.stores.redis.lean import AsyncLeanClient, lean_target
from bearerguard.stores.redis.scripts import LeanScripts
from bearerguard.tokens import token_digest
from helpers import remember_secret
from redis_server import RedisServer, free_port


def record_for(key_id: str, ip: str = "127.0.0.1", ttl: float = 300.0) -> TokenRecord:
    """A fresh token's record (the token itself is registered as a secret)."""
    now = time.time()
    return TokenRecord(
        digest=token_digest(remember_secret(new_token())),
        key_id=key_id,
        apis=frozenset({"dns"}),
        bound_ip=ip,
        issued_at=now,
        ttl=ttl,
        expires_at=now + ttl,
    )


def make_key(store: RedisStore) -> str:
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    return key.key_id


def normal_clients(raw: redis.Redis) -> dict[int, dict[str, str]]:
    """Server-side view of the normal client connections other than `raw`'s own."""
    me = raw.client_id()
    return {int(c["id"]): c for c in raw.client_list(_type="normal") if int(c["id"]) != me}


def eval_calls(raw: redis.Redis) -> int:
    """How many EVAL commands the server ran since its stats were last reset."""
    stats = raw.info("commandstats")
    return int(stats.get("cmdstat_eval", {}).get("calls", 0))


async def poll(predicate: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_lean_client_is_used_for_one_redis_only(rstore: RedisStore) -> None:
    """One Redis, with no query option but a TLS URL's CA, gets the lean client, and
    the store picks it for this loop's lookups; Sentinel, Cluster and redis-py's own
    options do not."""
    assert lean_target(parse_url("redis://127.0.0.1:6379/0")) == {
        "host": "127.0.0.1",
        "port": 6379,
        "db": 0,
    }
    assert lean_target(parse_url("redis://u:p@h:1/3")) == {
        "host": "h",
        "port": 1,
        "db": 3,
        "username": "u",
        "password": "p",
    }
    assert lean_target(parse_url("rediss://h:1/0")) == {
        "host": "h",
        "port": 1,
        "db": 0,
        "tls": True,
    }
    assert lean_target(parse_url("rediss://h:1/2?ssl_ca_certs=/ca.pem")) == {
        "host": "h",
        "port": 1,
        "db": 2,
        "ssl_ca_certs": "/ca.pem",
        "tls": True,
    }
    for url in (
        "redis+sentinel://h:1/svc",
        "redis+cluster://h:1",
        "rediss+cluster://h:1",
        "redis://h:1/0?socket_timeout=1",
        "redis://h:1/0?ssl_ca_certs=/ca.pem",
        "rediss://h:1/0?ssl_cert_reqs=none",
        "rediss://h:1/0?ssl_ca_certs=/a.pem&ssl_ca_certs=/b.pem",
    ):
        assert lean_target(parse_url(url)) is None, url

    async def main() -> None:
        assert await rstore.atouch_token("0" * 64, time.time()) is None
        scripts = rstore._alookups[asyncio.get_running_loop()]
        assert isinstance(scripts, LeanScripts)
        assert isinstance(scripts.client, AsyncLeanClient)
        await rstore.aclose()

    asyncio.run(main())


def test_pipelined_calls_get_their_own_replies(rstore: RedisStore, raw: redis.Redis) -> None:
    """200 concurrent lookups on one loop share one connection, and each gets the reply
    to its own command."""
    keys = [make_key(rstore) for _ in range(4)]
    records = [record_for(keys[i % 4], f"10.0.{i // 250}.{i % 250}") for i in range(200)]
    before = set(normal_clients(raw))

    async def main() -> None:
        await asyncio.gather(*(rstore.aput_token(r) for r in records))  # logins, pipelined
        order = random.sample(records, len(records))
        got = await asyncio.gather(*(rstore.atouch_token(r.digest, time.time()) for r in order))
        for want, found in zip(order, got, strict=True):
            assert found is not None
            assert (found.key_id, found.bound_ip) == (want.key_id, want.bound_ip)
        assert len(set(normal_clients(raw)) - before) <= 2
        await rstore.aclose()

    asyncio.run(main())


def test_script_flush_falls_back_to_eval(rstore: RedisStore, raw: redis.Redis) -> None:
    """After SCRIPT FLUSH a lookup still works (NOSCRIPT, then EVAL), and EVAL has loaded
    the script again for the lookups after."""
    record = record_for(make_key(rstore))
    rstore.put_token(record)

    async def main() -> None:
        assert await rstore.atouch_token(record.digest, time.time()) is not None
        raw.script_flush()
        raw.config_resetstat()
        found = await rstore.atouch_token(record.digest, time.time())
        assert found is not None and found.key_id == record.key_id
        assert eval_calls(raw) == 1
        found = await rstore.atouch_token(record.digest, time.time())
        assert found is not None and found.key_id == record.key_id
        assert eval_calls(raw) == 1  # EVALSHA found it this time
        await rstore.aclose()

    asyncio.run(main())


def test_killed_connection_is_replaced(rstore: RedisStore, raw: redis.Redis) -> None:
    """A lookup on a connection Redis has closed is retried once on a new connection."""
    record = record_for(make_key(rstore))
    rstore.put_token(record)

    async def main() -> None:
        assert await rstore.atouch_token(record.digest, time.time()) is not None
        old = set(normal_clients(raw))
        # Blocking, on purpose: the loop has not yet seen the close when the next call
        # writes its command on the dead connection.
        assert raw.client_kill_filter(_type="normal", skipme=True) >= 1
        found = await rstore.atouch_token(record.digest, time.time())
        assert found is not None and found.key_id == record.key_id
        assert set(normal_clients(raw)) - old  # a new connection
        await rstore.aclose()

    asyncio.run(main())


def test_a_reply_that_comes_too_late_is_not_given_to_the_next_call(
    redis_url: str, raw: redis.Redis
) -> None:
    """A lookup past its deadline fails on time and drops its connection, so its late
    reply never reaches a call made after it, neither one waiting at that moment nor
    a later one."""
    timeout = 0.4
    store = RedisStore(redis_url, timeout=timeout)
    pauser = redis.Redis.from_url(redis_url)
    try:
        key_id = make_key(store)
        a, b = record_for(key_id, "10.0.0.1"), record_for(key_id, "10.0.0.2")
        store.put_token(a)
        store.put_token(b)

        async def main() -> None:
            before = set(normal_clients(raw))
            assert await store.atouch_token(b.digest, time.time()) is not None
            (lean_id,) = set(normal_clients(raw)) - before
            # Every client paused 0.6 s: A's deadline (0.4 s) passes first; B, sent
            # right after, is answered when the pause ends, before its own deadline.
            pauser.execute_command("CLIENT", "PAUSE", "600", "ALL")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.atouch_token(a.digest, time.time())
            assert time.monotonic() - started < timeout + 0.15
            found = await store.atouch_token(b.digest, time.time())
            assert found is not None and found.bound_ip == b.bound_ip
            # The connection that waited for A's reply is gone.
            assert await poll(lambda: lean_id not in normal_clients(raw))
            found = await store.atouch_token(a.digest, time.time())
            assert found is not None and found.bound_ip == a.bound_ip
            found = await store.atouch_token(b.digest, time.time())
            assert found is not None and found.bound_ip == b.bound_ip
            await store.aclose()

        asyncio.run(main())
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
        pauser.close()
        store.close()


def test_redis_down_is_store_unavailable_then_recovers() -> None:
    """Redis stopped: a lookup fails fast; Redis back (empty, no scripts): it works again."""
    with RedisServer() as server:
        store = RedisStore(server.url, timeout=0.5)
        try:

            async def main() -> None:
                record = record_for(await asyncio.to_thread(make_key, store))
                await store.aput_token(record)
                assert await store.atouch_token(record.digest, time.time()) is not None
                server.stop()
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.atouch_token(record.digest, time.time())
                assert time.monotonic() - started < 1.0
                await asyncio.to_thread(server.restart)  # same port, no data, no scripts
                record = record_for(await asyncio.to_thread(make_key, store))
                await store.aput_token(record)
                found = await store.atouch_token(record.digest, time.time())
                assert found is not None and found.key_id == record.key_id
                check = redis.Redis.from_url(server.url)
                try:
                    assert eval_calls(check) >= 2  # enlist and touch, loaded by EVAL
                finally:
                    check.close()
                await store.aclose()

            asyncio.run(main())
        finally:
            store.close()


def test_auth_and_database_from_the_url() -> None:
    """The URL's password and database reach the lean connection; a refused password
    is StoreUnavailable, and the message does not quote it."""
    with RedisServer() as server:
        admin = redis.Redis(host=server.host, port=server.port)
        admin.config_set("requirepass", "s3cret")
        admin.close()
        url = f"redis://:s3cret@127.0.0.1:{server.port}/5"
        store = RedisStore(url, timeout=0.5)
        wrong = RedisStore(f"redis://:not-the-pass-1234@127.0.0.1:{server.port}/5", timeout=0.5)
        db5 = redis.Redis(host=server.host, port=server.port, db=5, password="s3cret")
        db0 = redis.Redis(host=server.host, port=server.port, db=0, password="s3cret")
        try:
            record = record_for(make_key(store))

            async def main() -> None:
                await store.aput_token(record)
                found = await store.atouch_token(record.digest, time.time())
                assert found is not None and found.key_id == record.key_id
                with pytest.raises(StoreUnavailable) as refused:
                    await wrong.atouch_token(record.digest, time.time())
                assert "not-the-pass-1234" not in str(refused.value)
                assert "not-the-pass-1234" not in repr(refused.value.__cause__)
                await store.aclose()
                await wrong.aclose()

            asyncio.run(main())
            assert db5.exists(token_record_key(record.digest))
            assert not db0.exists(token_record_key(record.digest))
        finally:
            db5.close()
            db0.close()
            store.close()
            wrong.close()


def test_garbage_from_the_server_is_store_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    """A peer that answers with something other than RESP: StoreUnavailable, no hang,
    and no asyncio error logged."""
    port = free_port()

    async def answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(4096):
                writer.write(b"%%%not-resp\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer_garbage, "127.0.0.1", port)
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.atouch_token("0" * 64, time.time())
            assert time.monotonic() - started < 1.0
            await store.aclose()
        finally:
            store.close()
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.name == "asyncio"]


def test_aclose_closes_the_connection(rstore: RedisStore, raw: redis.Redis) -> None:
    """`aclose` closes the lean connection (Redis no longer lists it)."""
    record = record_for(make_key(rstore))
    rstore.put_token(record)

    async def main() -> None:
        before = set(normal_clients(raw))
        for _ in range(3):
            assert await rstore.atouch_token(record.digest, time.time()) is not None
        (lean_id,) = set(normal_clients(raw)) - before
        await rstore.aclose()
        assert await poll(lambda: lean_id not in normal_clients(raw))

    asyncio.run(main())


def test_a_stall_fails_each_call_at_its_own_deadline(redis_url: str, raw: redis.Redis) -> None:
    """Redis silent past the first call's deadline: that call fails on time and its
    connection is given up, but the calls sent after it are sent again and keep their
    own deadlines, so one answered before its deadline succeeds."""
    timeout = 0.3
    store = RedisStore(redis_url, timeout=timeout)
    pauser = redis.Redis.from_url(redis_url)
    try:
        key_id = make_key(store)
        x, y, z = (record_for(key_id, f"10.0.1.{i}") for i in (1, 2, 3))
        for record in (x, y, z):
            store.put_token(record)

        async def lookup(record: TokenRecord, delay: float) -> tuple[object, float]:
            await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                found = await store.atouch_token(record.digest, time.time())
            except StoreUnavailable as exc:
                return exc, time.monotonic() - started
            return found, time.monotonic() - started

        async def main() -> None:
            assert await store.atouch_token(x.digest, time.time()) is not None
            # Paused 0.45 s: x (sent at 0) and y (at 0.1) pass their 0.3 s deadlines
            # first; z (at 0.25) is answered at 0.45, before its own, at 0.55.
            pauser.execute_command("CLIENT", "PAUSE", "450", "ALL")
            results = await asyncio.gather(lookup(x, 0.0), lookup(y, 0.1), lookup(z, 0.25))
            (fx, tx), (fy, ty), (fz, tz) = results
            assert isinstance(fx, StoreUnavailable) and isinstance(fy, StoreUnavailable)
            assert "TimeoutError" in str(fx)  # a deadline says what it was
            assert tx < timeout + 0.1 and ty < timeout + 0.1
            assert isinstance(fz, TokenRecord) and fz.bound_ip == z.bound_ip, (fz, tz)
            await store.aclose()

        asyncio.run(main())
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
        pauser.close()
        store.close()


def test_closing_while_connecting_keeps_no_connection(redis_url: str, raw: redis.Redis) -> None:
    """`aclose` during a connect: the connection being made is dropped, the waiting
    call and every later one raise ConnectionError, and nothing stays open."""
    client = AsyncLeanClient(lean_target(parse_url(redis_url)) or {}, 1.0)

    async def main() -> None:
        before = set(normal_clients(raw))
        call = asyncio.ensure_future(client.execute("PING"))
        await asyncio.sleep(0)  # the call has started the connect
        await client.aclose()
        with pytest.raises(redis.ConnectionError):
            await call
        with pytest.raises(redis.ConnectionError):
            await client.execute("PING")
        assert await poll(lambda: set(normal_clients(raw)) <= before)

    asyncio.run(main())


def test_a_call_due_before_the_others_fails_at_its_own_deadline(
    redis_url: str, raw: redis.Redis
) -> None:
    """Calls sent with an earlier deadline than one already waiting (a call sent again,
    an EVAL after its EVALSHA) still fail at their own deadline, not at the other's; the
    other, sent again on a new connection, is answered once Redis is back."""
    client = AsyncLeanClient(lean_target(parse_url(redis_url)) or {}, 5.0)
    pauser = redis.Redis.from_url(redis_url)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert await client.execute("PING") == b"PONG"  # connected
        pauser.execute_command("CLIENT", "PAUSE", "600", "ALL")
        late = asyncio.ensure_future(client.execute("PING", deadline=loop.time() + 2.0))
        await asyncio.sleep(0)  # sent first, with the later deadline
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            await client.execute("PING", deadline=loop.time() + 0.2)
        assert time.monotonic() - started < 0.45
        assert await late == b"PONG"
        await client.aclose()

    try:
        asyncio.run(main())
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
        pauser.close()
