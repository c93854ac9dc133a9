"""One contract, every store: memory, a real SQLite file and a real redis-server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from bearerguard.stores import AsyncTokenStore, TokenStore
from bearerguard.stores.base import TokenRecord, digest_secret, new_token, verify_secret
from bearerguard.tokens import Invalidation, token_digest
from helpers import FakeClock, issue, remember_secret


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def record_for(key_id: str, *, ttl: float = 300.0, now: float | None = None) -> tuple[str, Any]:
    token = remember_secret(new_token())
    now = time.time() if now is None else now
    rec = TokenRecord(
        digest=token_digest(token),
        key_id=key_id,
        apis=frozenset({"dns", "vps"}),
        bound_ip="127.0.0.1",
        issued_at=now,
        ttl=ttl,
        expires_at=now + ttl,
    )
    return token, rec


def test_both_faces(store: Any) -> None:
    assert isinstance(store, TokenStore)
    assert isinstance(store, AsyncTokenStore)


def test_keys_create_get_list_revoke(store: Any) -> None:
    a, secret_a = store.create_key(["dns", "vps"], introspect=True, now=1000.0)
    b, secret_b = store.create_key(["dns"], now=2000.0)
    remember_secret(secret_a)
    remember_secret(secret_b)
    assert a.key_id != b.key_id
    assert secret_a != secret_b
    assert len(secret_a) >= 43  # 256 bits, URL-safe base64
    got = store.get_key(a.key_id)
    assert got == a
    assert got.apis == frozenset({"dns", "vps"})
    assert got.introspect is True
    assert got.created_at == 1000.0
    assert store.get_key(b.key_id).introspect is False
    assert [k.key_id for k in store.list_keys()] == [a.key_id, b.key_id]
    assert store.get_key("key_doesnotexist") is None
    assert store.revoke_key(a.key_id) is True
    assert store.get_key(a.key_id) is None
    assert store.revoke_key(a.key_id) is False
    assert [k.key_id for k in store.list_keys()] == [b.key_id]


def test_create_key_refuses_an_option_it_does_not_know(store: Any) -> None:
    # The options are typed (stores.base.KeyOptions); a misspelt one must not be
    # dropped silently at run time either, on either face.
    with pytest.raises(TypeError, match="introspekt"):
        store.create_key(["dns"], introspekt=True)
    with pytest.raises(TypeError, match="introspekt"):
        asyncio.run(store.acreate_key(["dns"], introspekt=True))
    assert store.list_keys() == []


def test_secrets_are_verified_and_stored_only_as_digests(store: Any) -> None:
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    record = store.get_key(key.key_id)
    assert verify_secret(record, secret) is True
    assert verify_secret(record, secret + "x") is False
    assert verify_secret(record, "") is False
    assert verify_secret(store.get_key("key_unknown"), secret) is False
    assert record.secret_digest == digest_secret(secret)
    assert secret not in repr(record)
    # Nothing but the digest is kept: no field of the stored record holds the secret.
    for value in (record.key_id, record.secret_digest, *record.apis):
        assert secret not in value


def test_token_put_touch_get_revoke(store: Any) -> None:
    key, secret = store.create_key(["dns", "vps"])
    remember_secret(secret)
    now = time.time()
    _, rec = record_for(key.key_id, ttl=60, now=now)
    store.put_token(rec)

    got = store.get_token(rec.digest, now + 1)
    assert got is not None
    assert (got.key_id, got.apis, got.bound_ip, got.ttl) == (
        key.key_id,
        frozenset({"dns", "vps"}),
        "127.0.0.1",
        60.0,
    )
    assert got.issued_at == pytest.approx(now)
    assert got.expires_at == pytest.approx(now + 60, abs=2)

    touched = store.touch_token(rec.digest, now + 10)
    assert touched is not None
    assert touched.digest == rec.digest
    assert touched.key_id == key.key_id
    assert touched.expires_at == pytest.approx(now + 70, abs=0.01)
    info = touched.to_info()
    assert info.key_id == key.key_id
    assert info.bound_ip == "127.0.0.1"

    assert store.touch_token("0" * 64, now) is None
    assert store.get_token("0" * 64, now) is None
    assert store.revoke_token(rec.digest) is True
    assert store.revoke_token(rec.digest) is False
    assert store.touch_token(rec.digest, now + 11) is None
    assert store.get_token(rec.digest, now + 11) is None


def test_revoking_a_key_removes_all_its_tokens(store: Any) -> None:
    doomed, s1 = store.create_key(["dns"])
    kept, s2 = store.create_key(["dns"])
    remember_secret(s1)
    remember_secret(s2)
    now = time.time()
    mine = [record_for(doomed.key_id, now=now)[1] for _ in range(5)]
    other = record_for(kept.key_id, now=now)[1]
    for rec in [*mine, other]:
        store.put_token(rec)
    assert all(store.get_token(r.digest, now) is not None for r in mine)

    assert store.revoke_key(doomed.key_id) is True
    for rec in mine:
        assert store.touch_token(rec.digest, now) is None
        assert store.get_token(rec.digest, now) is None
    assert store.touch_token(other.digest, now) is not None


def test_no_token_is_stored_for_a_revoked_key(
    store: Any, store_kind: str, request: pytest.FixtureRequest
) -> None:
    # A login racing with the key's revocation must not leave a live token behind.
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    store.revoke_key(key.key_id)
    _, rec = record_for(key.key_id)
    store.put_token(rec)
    assert store.touch_token(rec.digest, time.time()) is None


def test_sliding_expiry_in_real_time(store: Any) -> None:
    """ttl 1.5 s: used every 0.2 s for 3.5 s it lives on; unused, it dies."""
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    start = time.time()
    _, used = record_for(key.key_id, ttl=1.5, now=start)
    _, idle = record_for(key.key_id, ttl=1.5, now=start)
    store.put_token(used)
    store.put_token(idle)
    while time.time() - start < 3.5:
        now = time.time()
        rec = store.touch_token(used.digest, now)
        assert rec is not None, f"touched token expired {now - start:.2f}s after issue"
        assert rec.expires_at == pytest.approx(now + 1.5, abs=0.5)
        time.sleep(0.2)
    # The idle one expired after its 1.5 s (issued 3.5 s ago).
    assert store.touch_token(idle.digest, time.time()) is None
    # Stop using the other: it expires on its own, soon after its ttl.
    last = time.time()
    assert wait_for(lambda: store.get_token(used.digest, time.time()) is None, 15)
    assert time.time() - last >= 1.0
    assert store.touch_token(used.digest, time.time()) is None


@pytest.mark.parametrize("open_store_again", ["memory", "sqlite"], indirect=True)
def test_sliding_expiry_follows_the_given_clock(store: Any, clock: FakeClock) -> None:
    # Memory and SQLite judge expiry by the `now` they are given (Redis by its own
    # clock; covered in real time above).
    tok = issue(store, ("dns",), ttl=30, now=clock.now)
    digest = token_digest(tok.token)
    for _ in range(20):
        clock.advance(29)
        rec = store.touch_token(digest, clock.now)
        assert rec is not None
        assert rec.expires_at == clock.now + 30
    clock.advance(29)
    assert store.get_token(digest, clock.now) is not None
    clock.advance(1)
    assert store.get_token(digest, clock.now) is None
    assert store.touch_token(digest, clock.now) is None


def test_subscribers_hear_revocations(store: Any) -> None:
    events: list[Invalidation] = []
    lock = threading.Lock()

    def on_event(event: Invalidation) -> None:
        with lock:
            events.append(event)

    def seen(event: Invalidation) -> bool:
        with lock:
            return event in events

    unsubscribe = store.subscribe(on_event)
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    _, rec = record_for(key.key_id)
    _, rec2 = record_for(key.key_id)
    store.put_token(rec)
    store.put_token(rec2)
    assert store.revoke_token(rec.digest)
    assert wait_for(lambda: seen(Invalidation("token", rec.digest)))
    assert store.revoke_key(key.key_id)
    assert wait_for(lambda: seen(Invalidation("key", key.key_id)))
    with lock:
        assert events == [Invalidation("token", rec.digest), Invalidation("key", key.key_id)]

    unsubscribe()
    other, secret = store.create_key(["dns"])
    remember_secret(secret)
    store.revoke_key(other.key_id)
    time.sleep(0.3)
    assert not seen(Invalidation("key", other.key_id))
    unsubscribe()  # idempotent


def test_a_second_store_object_sees_the_same_records(open_store_again: Any) -> None:
    writer, reader = open_store_again(), open_store_again()
    key, secret = writer.create_key(["dns"], introspect=True)
    remember_secret(secret)
    assert verify_secret(reader.get_key(key.key_id), secret)
    _, rec = record_for(key.key_id)
    writer.put_token(rec)
    assert reader.touch_token(rec.digest, time.time()) is not None
    reader.revoke_key(key.key_id)
    assert writer.get_token(rec.digest, time.time()) is None
    assert writer.get_key(key.key_id) is None


def test_async_face(store: Any) -> None:
    async def main() -> None:
        await store.aping()
        key, secret = await store.acreate_key(["dns"], introspect=True, now=5.0)
        remember_secret(secret)
        assert (key.introspect, key.created_at) == (True, 5.0)  # keywords reach the store
        assert verify_secret(await store.aget_key(key.key_id), secret)
        assert [k.key_id for k in await store.alist_keys()] == [key.key_id]
        now = time.time()
        _, rec = record_for(key.key_id, ttl=60, now=now)
        _, rec2 = record_for(key.key_id, ttl=60, now=now)
        await store.aput_token(rec)
        await store.aput_token(rec2)
        # Concurrent uses from one loop.
        results = await asyncio.gather(
            *(store.atouch_token(rec.digest, now + 5) for _ in range(20))
        )
        assert all(r is not None and r.key_id == key.key_id for r in results)
        got = await store.aget_token(rec.digest, now + 5)
        assert got is not None
        assert got.expires_at == pytest.approx(now + 65, abs=2)
        assert await store.arevoke_token(rec.digest) is True
        assert await store.atouch_token(rec.digest, now + 6) is None
        assert await store.arevoke_key(key.key_id) is True
        assert await store.aget_token(rec2.digest, now + 6) is None
        assert await store.aget_key(key.key_id) is None
        await store.aclose()

    asyncio.run(main())


def test_ping(store: Any) -> None:
    assert store.ping() is None


# -- issue 12, H4: a use from another address extends nothing ----------------------------
# Real time, not a fake clock: Redis measures expiry on its own clock.
def test_touch_extends_only_from_the_tokens_own_address(store: Any) -> None:
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    now = time.time()
    _, rec = record_for(key.key_id, ttl=60, now=now)
    store.put_token(rec)
    time.sleep(0.4)
    # From another address: the record comes back as it is, expiry unchanged.
    other = store.touch_token(rec.digest, time.time(), "127.0.0.3")
    assert other is not None and other.bound_ip == "127.0.0.1"
    assert other.expires_at == pytest.approx(now + 60, abs=0.2)
    got = store.get_token(rec.digest, time.time())
    assert got is not None and got.expires_at == pytest.approx(now + 60, abs=0.2)
    # From its own address (or with no address: a third party's introspection) it slides.
    t = time.time()
    own = store.touch_token(rec.digest, t, "127.0.0.1")
    assert own is not None and own.expires_at == pytest.approx(t + 60, abs=0.05)
    time.sleep(0.2)
    t = time.time()
    anyone = store.touch_token(rec.digest, t, None)
    assert anyone is not None and anyone.expires_at == pytest.approx(t + 60, abs=0.05)


def test_async_touch_extends_only_from_the_tokens_own_address(store: Any) -> None:
    assert isinstance(store, AsyncTokenStore)  # every built-in store has both faces
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    now = time.time()
    _, rec = record_for(key.key_id, ttl=60, now=now)
    store.put_token(rec)

    async def main() -> tuple[Any, Any, float]:
        await asyncio.sleep(0.4)
        other = await store.atouch_token(rec.digest, time.time(), "127.0.0.3")
        t = time.time()
        own = await store.atouch_token(rec.digest, t, "127.0.0.1")
        await store.aclose()
        return other, own, t

    other, own, t = asyncio.run(main())
    assert other.expires_at == pytest.approx(now + 60, abs=0.2)
    assert own.expires_at == pytest.approx(t + 60, abs=0.05)
