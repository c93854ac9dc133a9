"""The blocking lean Redis client (`stores/redis/lean.py`, `LeanClient`) behind
`RedisStore`'s sync `touch_token` and `put_token`, against a real redis-server: idle
connections shared by threads, scripts, lost and timed-out connections, auth and
database, garbage, a peer that hangs up, closing, forking."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from test_redis_lean import eval_calls, make_key, normal_clients, record_for

from bearerguard.stores import StoreUnavailable
from bearerguard.stores.redis import RedisStore, token_record_key
from bearerguard.stores.redis.lean import LeanClient
from bearerguard.stores.redis.scripts import LeanScripts
from redis_server import RedisServer


def lean_client(store: RedisStore) -> LeanClient:
    client = store._lean_client
    assert isinstance(client, LeanClient)
    return client


def idle_addrs(store: RedisStore) -> set[str]:
    """The ``host:port`` Redis lists (CLIENT LIST ``addr``) for each idle lean connection."""
    return {"{}:{}".format(*conn.sock.getsockname()[:2]) for conn in lean_client(store)._idle}


def listed_addrs(raw: redis.Redis) -> set[str]:
    return {c["addr"] for c in normal_clients(raw).values()}


def connections_received(raw: redis.Redis) -> int:
    return int(raw.info("stats")["total_connections_received"])


def poll(predicate: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@contextmanager
def tcp_peer(handle: Callable[[socket.socket], None]) -> Iterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that runs `handle` on each connection it accepts, one
    at a time; yields its port and a one-item list counting the accepts."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = [0]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener closed: the test is over
                return
            accepted[0] += 1
            with conn:
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        # shutdown wakes the blocked accept() (close alone does not on Linux).
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(2)
        assert not thread.is_alive()


def test_sync_store_uses_the_lean_client_for_one_redis_only(
    rstore: RedisStore, raw: redis.Redis
) -> None:
    """On one Redis, put_token and touch_token run on the store's LeanClient (its idle
    connection is the one Redis saw run EVALSHA); Sentinel and Cluster stores have none."""
    assert isinstance(rstore._lean, LeanScripts) and rstore._lean.client is rstore._lean_client
    record = record_for(make_key(rstore))
    rstore.put_token(record)
    (addr,) = idle_addrs(rstore)
    for _ in range(2):  # the first loads the script (EVAL), the second finds it
        found = rstore.touch_token(record.digest, time.time())
        assert found is not None and found.key_id == record.key_id
    assert idle_addrs(rstore) == {addr}  # the same connection, kept between calls
    (conn,) = [c for c in normal_clients(raw).values() if c["addr"] == addr]
    assert conn["cmd"] == "evalsha"
    assert conn["db"] == "0"
    for url in ("redis+sentinel://127.0.0.1:1/svc", "redis+cluster://127.0.0.1:1"):
        other = RedisStore(url, timeout=0.2)  # no I/O at construction
        try:
            assert other._lean_client is None and other._lean is None, url
        finally:
            other.close()


def test_threads_share_idle_connections(rstore: RedisStore, raw: redis.Redis) -> None:
    """16 threads x 50 lookups of tokens of different keys and bound IPs: each lookup
    gets its own record, and no more than 16 connections are ever opened."""
    keys = [make_key(rstore) for _ in range(4)]
    records = [record_for(keys[i % 4], f"10.1.0.{i}") for i in range(16)]
    for record in records:
        rstore.put_token(record)
    received = connections_received(raw)
    start = threading.Barrier(16)
    wrong: list[str] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait(5)
            for i in range(50):
                want = records[(n + i) % 16]
                got = rstore.touch_token(want.digest, time.time())
                if got is None or (got.key_id, got.bound_ip) != (want.key_id, want.bound_ip):
                    wrong.append(f"thread {n} call {i}: {got!r} for {want.bound_ip}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and not wrong, (errors, wrong[:3])
    opened = connections_received(raw) - received
    idle = idle_addrs(rstore)
    assert 1 <= len(idle) <= 16
    assert opened <= 16 - 1  # the one from put_token was reused, not counted here
    assert idle <= listed_addrs(raw)  # every idle connection is a live one


def test_script_flush_falls_back_to_eval(rstore: RedisStore, raw: redis.Redis) -> None:
    """After SCRIPT FLUSH a lookup still works (NOSCRIPT, then EVAL), and EVAL has loaded
    the script again for the lookups after."""
    record = record_for(make_key(rstore))
    rstore.put_token(record)
    assert rstore.touch_token(record.digest, time.time()) is not None
    raw.script_flush()
    raw.config_resetstat()
    found = rstore.touch_token(record.digest, time.time())
    assert found is not None and found.key_id == record.key_id
    assert eval_calls(raw) == 1
    found = rstore.touch_token(record.digest, time.time())
    assert found is not None and found.key_id == record.key_id
    assert eval_calls(raw) == 1  # EVALSHA found it this time


def test_killed_idle_connection_is_replaced(rstore: RedisStore, raw: redis.Redis) -> None:
    """A lookup on an idle connection Redis has closed is retried once on a new one."""
    record = record_for(make_key(rstore))
    rstore.put_token(record)
    (old,) = idle_addrs(rstore)
    assert raw.client_kill(old)
    found = rstore.touch_token(record.digest, time.time())
    assert found is not None and found.key_id == record.key_id
    (new,) = idle_addrs(rstore)
    assert new != old and new in listed_addrs(raw)


def test_the_retry_is_on_a_new_connection_not_another_idle_one(
    rstore: RedisStore, raw: redis.Redis, redis_url: str
) -> None:
    """Every idle connection dead (as after a Redis restart): the first lookup still
    succeeds, its retry on a new connection rather than on the next dead idle one."""
    record = record_for(make_key(rstore))
    rstore.put_token(record)
    # Two lookups at once (Redis paused until both are sent): two idle connections.
    pauser = redis.Redis.from_url(redis_url)
    try:
        pauser.execute_command("CLIENT", "PAUSE", "300", "ALL")
        lookups = [
            threading.Thread(target=rstore.touch_token, args=(record.digest, time.time()))
            for _ in range(2)
        ]
        for thread in lookups:
            thread.start()
        for thread in lookups:
            thread.join()
    finally:
        pauser.close()
    dead = idle_addrs(rstore)
    assert len(dead) == 2
    for addr in dead:
        assert raw.client_kill(addr)
    found = rstore.touch_token(record.digest, time.time())
    assert found is not None and found.key_id == record.key_id


def test_a_timed_out_connection_is_not_reused(redis_url: str, raw: redis.Redis) -> None:
    """A lookup past the store's timeout fails on time and its connection is closed, so
    its late reply is never read by a later call."""
    timeout = 0.2
    store = RedisStore(redis_url, timeout=timeout)
    pauser = redis.Redis.from_url(redis_url)
    try:
        key_id = make_key(store)
        a, b = record_for(key_id, "10.0.0.1"), record_for(key_id, "10.0.0.2")
        store.put_token(a)
        store.put_token(b)
        assert store.touch_token(b.digest, time.time()) is not None  # the script loaded
        (stalled,) = idle_addrs(store)
        # Every client paused 0.5 s: A's lookup waits past its 0.2 s; its reply comes later.
        pauser.execute_command("CLIENT", "PAUSE", "500", "ALL")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as late:
            store.touch_token(a.digest, time.time())
        assert time.monotonic() - started < timeout + 0.3
        assert "TimeoutError" in str(late.value)
        assert not lean_client(store)._idle  # closed, not kept
        raw.ping()  # answered once the pause is over: A's reply has been sent by now
        found = store.touch_token(b.digest, time.time())
        assert found is not None and found.bound_ip == b.bound_ip
        found = store.touch_token(a.digest, time.time())
        assert found is not None and found.bound_ip == a.bound_ip
        assert stalled not in listed_addrs(raw)
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
        pauser.close()
        store.close()


def test_redis_down_is_store_unavailable_then_recovers() -> None:
    """Redis stopped: a lookup fails fast; Redis back (empty, no scripts): put_token and
    touch_token work again, the scripts loaded by EVAL."""
    with RedisServer() as server:
        store = RedisStore(server.url, timeout=0.5)
        try:
            record = record_for(make_key(store))
            store.put_token(record)
            assert store.touch_token(record.digest, time.time()) is not None
            server.stop()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.touch_token(record.digest, time.time())
            assert time.monotonic() - started < 1.0
            server.restart()  # same port, no data, no scripts
            record = record_for(make_key(store))
            store.put_token(record)
            found = store.touch_token(record.digest, time.time())
            assert found is not None and found.key_id == record.key_id
            check = redis.Redis.from_url(server.url)
            try:
                assert eval_calls(check) >= 2  # enlist and touch, loaded by EVAL
            finally:
                check.close()
        finally:
            store.close()


def test_auth_and_database_from_the_url() -> None:
    """The URL's password and database reach each lean connection; a refused password
    is StoreUnavailable, and neither the message nor its cause quotes it."""
    with RedisServer() as server:
        admin = redis.Redis(host=server.host, port=server.port)
        admin.config_set("requirepass", "s3cret")
        admin.close()
        store = RedisStore(f"redis://:s3cret@127.0.0.1:{server.port}/5", timeout=0.5)
        wrong = RedisStore(f"redis://:not-the-pass-1234@127.0.0.1:{server.port}/5", timeout=0.5)
        db5 = redis.Redis(host=server.host, port=server.port, db=5, password="s3cret")
        db0 = redis.Redis(host=server.host, port=server.port, db=0, password="s3cret")
        try:
            record = record_for(make_key(store))
            store.put_token(record)
            found = store.touch_token(record.digest, time.time())
            assert found is not None and found.key_id == record.key_id
            assert db5.exists(token_record_key(record.digest))
            assert not db0.exists(token_record_key(record.digest))
            with pytest.raises(StoreUnavailable) as refused:
                wrong.touch_token(record.digest, time.time())
            assert "not-the-pass-1234" not in str(refused.value)
            assert "not-the-pass-1234" not in repr(refused.value.__cause__)
            assert "WRONGPASS" in str(refused.value.__cause__)
            assert not lean_client(wrong)._idle
        finally:
            db5.close()
            db0.close()
            store.close()
            wrong.close()


def test_garbage_from_the_server_is_store_unavailable() -> None:
    """A peer that answers with something other than RESP (here, HTTP): StoreUnavailable
    after the one retry, no hang, nothing kept."""

    def answer_garbage(conn: socket.socket) -> None:
        while conn.recv(4096):
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    with tcp_peer(answer_garbage) as (port, accepted):
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.touch_token("0" * 64, time.time())
            assert time.monotonic() - started < 1.0
            assert accepted[0] == 2
            assert not lean_client(store)._idle
        finally:
            store.close()


def test_a_server_that_closes_every_connection_fails_after_one_retry() -> None:
    """A peer that hangs up at once: StoreUnavailable after exactly two connections
    (the call and its one retry)."""
    with tcp_peer(lambda conn: None) as (port, accepted):
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.touch_token("0" * 64, time.time())
            assert time.monotonic() - started < 1.0
            time.sleep(0.1)  # a third attempt, if one were made, would be accepted by now
            assert accepted[0] == 2
        finally:
            store.close()


def test_a_reply_in_pieces_shares_one_deadline_and_leaves_the_timeout_as_it_was() -> None:
    """A peer that answers each command in three pieces, `gap` seconds apart: within
    the client's timeout the reply is read whole and the connection keeps the client's
    timeout for the next call; pieces that each come in time but together do not fail
    the call at its one deadline."""
    gap = [0.1]

    def answer_in_pieces(conn: socket.socket) -> None:
        while conn.recv(4096):
            for piece in (b"$5\r\nh", b"ell", b"o\r\n"):
                conn.sendall(piece)
                time.sleep(gap[0])

    with tcp_peer(answer_in_pieces) as (port, accepted):
        client = LeanClient({"host": "127.0.0.1", "port": port}, timeout=0.5)
        try:
            assert client.execute("GET", "k") == b"hello"
            (conn,) = client._idle
            assert conn.sock.gettimeout() == 0.5  # shortened for the second piece, restored
            assert client.execute("GET", "k") == b"hello"  # the same connection again
            assert accepted[0] == 1
            # Pieces 0.3 s apart, each within the 0.5 s timeout, the last 0.6 s after
            # the first: the call's one deadline fails it (a fresh timeout for each
            # piece would wait for them all).
            gap[0] = 0.3
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                client.execute("GET", "k")
            assert time.monotonic() - started < 0.58
        finally:
            client.close()


def test_close_closes_idle_connections(rstore: RedisStore, raw: redis.Redis) -> None:
    """`close` closes the idle connections (Redis no longer lists them); a call after
    it raises ConnectionError without connecting."""
    record = record_for(make_key(rstore))
    rstore.put_token(record)
    for _ in range(3):
        assert rstore.touch_token(record.digest, time.time()) is not None
    idle = idle_addrs(rstore)
    assert idle and idle <= listed_addrs(raw)
    client = lean_client(rstore)
    rstore.close()
    assert poll(lambda: not idle & listed_addrs(raw))
    received = connections_received(raw)
    with pytest.raises(redis.ConnectionError):
        client.execute("PING")
    assert connections_received(raw) == received
    assert not client._idle


def test_a_forked_child_does_not_use_the_parents_connection(
    rstore: RedisStore, raw: redis.Redis
) -> None:
    """A child forked while the store has an idle connection starts with none (its
    lookups open their own), and the parent's connection stays open and in step."""
    key_id = make_key(rstore)
    mine, childs = record_for(key_id, "10.2.0.1"), record_for(key_id, "10.2.0.2")
    rstore.put_token(mine)
    rstore.put_token(childs)
    (parent_conn,) = lean_client(rstore)._idle
    addr = parent_conn.sock.getsockname()
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking a process with threads; the child here only
        # makes one lookup (no lock of another thread's) and exits.
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: always leaves through os._exit
        status = 1
        try:
            if lean_client(rstore)._idle == []:
                found = rstore.touch_token(childs.digest, time.time())
                ok = found is not None and found.bound_ip == childs.bound_ip
                (own,) = lean_client(rstore)._idle
                status = 0 if ok and own is not parent_conn else 2
        finally:
            os._exit(status)
    _, waited = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(waited) == 0
    found = rstore.touch_token(mine.digest, time.time())
    assert found is not None and found.bound_ip == mine.bound_ip
    assert lean_client(rstore)._idle == [parent_conn]
    assert parent_conn.sock.getsockname() == addr
    assert "{}:{}".format(*addr[:2]) in listed_addrs(raw)


def test_a_missing_ca_file_fails_the_lookups_not_the_construction(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The CA file is read when a connection is opened (as redis-py does): a store
    naming a missing one opens, then each face's lookup is StoreUnavailable."""
    missing = tmp_path / "missing.pem"
    store = RedisStore(
        f"rediss://127.0.0.1:{redis_server.port}/0?ssl_ca_certs={missing}", timeout=0.5
    )
    try:
        with pytest.raises(StoreUnavailable):
            store.touch_token("ab" * 32, time.time())

        async def main() -> None:
            with pytest.raises(StoreUnavailable):
                await store.atouch_token("ab" * 32, time.time())
            await store.aclose()

        asyncio.run(main())
    finally:
        store.close()
