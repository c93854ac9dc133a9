"""Accounts, named keys, rotation and panel sessions: one contract, every store, for real."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from test_store_contract import record_for, wait_for

from bearerguard.stores.accounts import (
    AccountRecord,
    AccountStore,
    SessionRecord,
    new_account,
    verify_password,
)
from bearerguard.stores.base import key_cursor, verify_secret
from bearerguard.tokens import Invalidation, token_digest
from helpers import remember_secret


def account(store: Any, name: str = "acme", apis: tuple[str, ...] = ("dns", "vps")) -> str:
    record, password = new_account(name, apis)
    assert store.create_account(record) is True
    return remember_secret(password)


def test_the_account_face(store: Any) -> None:
    assert isinstance(store, AccountStore)


def test_accounts_create_get_list_set_apis(store: Any) -> None:
    password = account(store, "acme", ("dns", "vps"))
    account(store, "globex", ("dns",))
    got = store.get_account("acme")
    assert isinstance(got, AccountRecord)
    assert got.apis == frozenset({"dns", "vps"}) and got.disabled is False
    assert got.password_hash.startswith("$argon2id$")
    assert password not in got.password_hash and password not in repr(got)
    assert verify_password(got, password) is True
    assert verify_password(got, password + "x") is False
    assert verify_password(None, password) is False
    assert [a.name for a in store.list_accounts()] == ["acme", "globex"]
    # The name is taken: the first account stays as it was.
    again, _ = new_account("acme", ["x"])
    assert store.create_account(again) is False
    assert store.get_account("acme").apis == frozenset({"dns", "vps"})
    assert store.set_account_apis("acme", ["dns"]) is True
    assert store.get_account("acme").apis == frozenset({"dns"})
    assert store.set_account_apis("nobody", ["dns"]) is False
    assert store.get_account("nobody") is None


def test_named_keys_belong_to_accounts(store: Any) -> None:
    account(store, "acme")
    mine, s1 = store.create_key(["dns"], account="acme", name="web server", now=10.0)
    op, s2 = store.create_key(["dns"], now=20.0)
    remember_secret(s1)
    remember_secret(s2)
    got = store.get_key(mine.key_id)
    assert (got.account, got.name, got.expires_at, got.last_used_at) == (
        "acme",
        "web server",
        None,
        None,
    )
    assert store.get_key(op.key_id).account == ""  # the operator's
    assert [k.key_id for k in store.list_keys("acme")] == [mine.key_id]
    assert [k.key_id for k in store.list_keys()] == [mine.key_id, op.key_id]
    assert store.list_keys("globex") == []
    # A login is a use of the key.
    _, rec = record_for(mine.key_id, now=1234.5)
    store.put_token(rec)
    assert store.get_key(mine.key_id).last_used_at == pytest.approx(1234.5)
    # Revoking removes it from its account's list too.
    assert store.revoke_key(mine.key_id) is True
    assert store.list_keys("acme") == []


def test_key_expiry(store: Any) -> None:
    key, secret = store.create_key(["dns"], expires_at=2000.0)
    remember_secret(secret)
    got = store.get_key(key.key_id)
    assert got.expires_at == 2000.0
    assert verify_secret(got, secret, now=1999.0) is True
    assert verify_secret(got, secret, now=2000.0) is False
    assert got.status(1999.0) == "active" and got.status(2001.0) == "expired"


def test_rotation_keeps_the_old_secret_for_the_grace_period(store: Any) -> None:
    key, old = store.create_key(["dns"], account="", name="k")
    remember_secret(old)
    rotated = store.rotate_key(key.key_id, grace=60.0, now=1000.0)
    assert rotated is not None
    _record, new = rotated
    remember_secret(new)
    assert new != old
    got = store.get_key(key.key_id)
    assert got.name == "k" and got.apis == frozenset({"dns"})
    assert verify_secret(got, new, now=1001.0) is True
    assert verify_secret(got, old, now=1001.0) is True
    assert got.status(1001.0) == "rotating"
    assert verify_secret(got, old, now=1060.0) is False
    assert verify_secret(got, new, now=1060.0) is True
    assert old not in repr(got) and new not in repr(got)
    # A second rotation keeps only the one before it; grace 0 drops it at once.
    _, newer = store.rotate_key(key.key_id, grace=0, now=1100.0)
    remember_secret(newer)
    got = store.get_key(key.key_id)
    assert verify_secret(got, new, now=1100.0) is False
    assert verify_secret(got, newer, now=1100.0) is True
    assert store.rotate_key("key_unknown", grace=10) is None


def test_rotation_is_announced_once_the_new_secret_is_stored(store: Any) -> None:
    """Every rotation says ``secret`` (key caches let go of the record), after the new
    secret is stored; a rotation of no key says nothing. Over Redis: pub/sub."""
    heard: list[tuple[Invalidation, Any]] = []
    lock = threading.Lock()

    def on_event(event: Invalidation) -> None:
        # What the store holds when the announcement arrives (the new secret already).
        got = store.get_key(event.value)
        with lock:
            heard.append((event, got))

    key, old = store.create_key(["dns"])
    remember_secret(old)
    unsubscribe = store.subscribe(on_event)
    try:
        assert store.rotate_key("key_unknown", grace=0) is None
        rotated = store.rotate_key(key.key_id, grace=0, now=1000.0)
        assert rotated is not None
        new = remember_secret(rotated[1])

        def announced() -> bool:
            with lock:
                return bool(heard)

        assert wait_for(announced)
        time.sleep(0.1)  # room for a stray second announcement to arrive
        with lock:
            assert [event for event, _ in heard] == [Invalidation("secret", key.key_id)]
            got = heard[0][1]
        assert verify_secret(got, new, now=1001.0) is True
        assert verify_secret(got, old, now=1001.0) is False
    finally:
        unsubscribe()


def test_disabling_an_account_revokes_its_tokens_and_sessions(store: Any) -> None:
    events: list[Invalidation] = []
    lock = threading.Lock()

    def on_event(event: Invalidation) -> None:
        with lock:
            events.append(event)

    unsubscribe = store.subscribe(on_event)
    try:
        account(store, "acme")
        account(store, "globex")
        k1, s1 = store.create_key(["dns"], account="acme")
        k2, s2 = store.create_key(["vps"], account="acme")
        other, s3 = store.create_key(["dns"], account="globex")
        for s in (s1, s2, s3):
            remember_secret(s)
        now = time.time()
        toks = [record_for(k.key_id, now=now)[1] for k in (k1, k1, k2)]
        kept = record_for(other.key_id, now=now)[1]
        for rec in [*toks, kept]:
            store.put_token(rec)
        mine = SessionRecord(token_digest("s1" * 20), "acme", "csrf1", now, now + 3600)
        theirs = SessionRecord(token_digest("s2" * 20), "globex", "csrf2", now, now + 3600)
        store.put_session(mine)
        store.put_session(theirs)

        assert store.disable_account("acme") is True
        assert store.get_account("acme").disabled is True
        for rec in toks:
            assert store.touch_token(rec.digest, now) is None
        assert store.touch_token(kept.digest, now) is not None
        assert store.get_session(mine.digest, now) is None
        assert store.get_session(theirs.digest, now) is not None
        # The keys remain (listed, disabled with their account), their tokens are gone.
        assert {k.key_id for k in store.list_keys("acme")} == {k1.key_id, k2.key_id}
        assert verify_password(store.get_account("acme"), "anything") is False

        def heard() -> bool:
            with lock:
                return {Invalidation("key", k1.key_id), Invalidation("key", k2.key_id)} <= set(
                    events
                )

        assert wait_for(heard)
        with lock:
            assert Invalidation("key", other.key_id) not in events
        assert store.disable_account("nobody") is False
    finally:
        unsubscribe()


def test_sessions_live_until_they_expire_or_are_deleted(open_store_again: Any) -> None:
    writer, reader = open_store_again(), open_store_again()  # another replica
    now = time.time()
    rec = SessionRecord(token_digest("x" * 43), "acme", "tok", now, now + 1.0)
    writer.put_session(rec)
    got = reader.get_session(rec.digest, now)
    assert got == rec and "tok" not in repr(got)
    assert reader.get_session(rec.digest, now + 1.0) is None
    assert reader.get_session(token_digest("y" * 43), now) is None
    # Replaced (a new CSRF token), then deleted (sign-out) from the other replica.
    writer.put_session(SessionRecord(rec.digest, "acme", "tok2", now, now + 60))
    assert reader.get_session(rec.digest, now).csrf == "tok2"
    reader.delete_session(rec.digest)
    assert writer.get_session(rec.digest, now) is None


def test_new_fields_on_the_async_face(store: Any) -> None:
    async def main() -> None:
        key, secret = await store.acreate_key(["dns"], account="acme", name="async")
        remember_secret(secret)
        assert [k.name for k in await store.alist_keys("acme")] == ["async"]
        assert (await store.aget_key(key.key_id)).account == "acme"
        await store.aclose()

    asyncio.run(main())


def test_keys_come_in_pages(store: Any) -> None:
    made = []
    for i, now in enumerate([5.0, 1.0, 3.0, 3.0, 3.0, 2.0, 4.0]):
        key, secret = store.create_key(["dns"], now=now, account="acme" if i % 2 else "")
        remember_secret(secret)
        made.append(key)
    everything = store.list_keys()
    assert [k.key_id for k in everything] == [
        k.key_id for k in sorted(made, key=lambda k: (k.created_at, k.key_id))
    ]
    for account in (None, "acme"):
        whole = store.list_keys(account)
        pages, after = [], None
        while True:
            page = store.list_keys(account, after=after, limit=2)
            pages += page
            if len(page) < 2:
                break
            after = key_cursor(page[-1])
        assert [k.key_id for k in pages] == [k.key_id for k in whole]
    assert store.list_keys(limit=3) == everything[:3]
