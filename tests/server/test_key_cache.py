"""The auth service's key-record cache saves store reads, never a secret check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import Service, assert_error

from bearerguard.server.keycache import KeyCache
from bearerguard.stores.accounts import new_account
from bearerguard.stores.base import StoreUnavailable, new_key
from bearerguard.tokens import Invalidation
from helpers import FakeClock


@pytest.fixture
def cached() -> Iterator[Service]:
    s = Service(key_cache_ttl=60)
    try:
        yield s
    finally:
        s.http.close()


def _reads(svc: Service) -> list[str]:
    """Count the store's key reads from now on."""
    seen: list[str] = []
    get_key = svc.store.get_key

    def counting(key_id: str):  # type: ignore[no-untyped-def]
        seen.append(key_id)
        return get_key(key_id)

    svc.store.get_key = counting  # type: ignore[method-assign]
    return seen


def test_a_cached_key_logs_in_without_a_store_read(cached: Service) -> None:
    key_id, secret = cached.key()
    assert cached.http.login(key_id, secret).status_code == 200
    reads = _reads(cached)
    for _ in range(3):
        assert cached.http.login(key_id, secret).status_code == 200
    assert reads == []


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda s, other: s[:-1] + ("A" if s[-1] != "A" else "B"), id="last-char"),
        pytest.param(lambda s, other: s[:20], id="prefix"),
        pytest.param(lambda s, other: "", id="empty"),
        pytest.param(lambda s, other: s + "x", id="longer"),
        pytest.param(lambda s, other: other, id="another-keys-secret"),
    ],
)
def test_the_key_cache_never_lets_a_wrong_secret_through(cached: Service, wrong: object) -> None:
    key_id, secret = cached.key()
    _other_id, other_secret = cached.key()
    assert cached.http.login(key_id, secret).status_code == 200  # cached now
    assert len(cached.app.state.bearerguard.keys) == 1
    for _ in range(2):
        r = cached.http.login(key_id, wrong(secret, other_secret))  # type: ignore[operator]
        assert_error(r, 401, "invalid_client")
    # The wrong guesses did not push the right secret out.
    assert cached.http.login(key_id, secret).status_code == 200


def test_a_secret_rotated_elsewhere_works_at_once(cached: Service) -> None:
    key_id, secret = cached.key()
    assert cached.http.login(key_id, secret).status_code == 200
    # Rotated where this process hears nothing (another replica over SQLite, the CLI):
    # the fresh read behind a mismatch lets the new secret in.
    cached.app.state.bearerguard.unsubscribe()
    done = cached.store.rotate_key(key_id, grace=0, now=cached.clock())
    assert done is not None
    assert cached.http.login(key_id, done[1]).status_code == 200


def test_a_key_revoked_in_the_store_leaves_the_cache_at_once(cached: Service) -> None:
    key_id, secret = cached.key()
    assert cached.http.login(key_id, secret).status_code == 200
    assert cached.store.revoke_key(key_id)  # announced to this process's subscribers
    assert_error(cached.http.login(key_id, secret), 401, "invalid_client")


def test_a_store_failure_empties_the_key_cache(cached: Service) -> None:
    """A store that failed may come back without what it held (a Redis restarted
    empty) and its announcements may have been lost meanwhile: a cached key is read
    anew after any 503."""
    key_id, secret = cached.key()
    other_id, other_secret = cached.key()
    assert cached.http.login(key_id, secret).status_code == 200
    assert cached.http.login(other_id, other_secret).status_code == 200
    state = cached.app.state.bearerguard
    state.unsubscribe()  # nothing announced from here on
    put_token = state.store._put_token
    failing = [True]

    async def fails_once(record: object) -> None:
        if failing:
            failing.pop()
            raise StoreUnavailable("down")
        await put_token(record)

    state.store._put_token = fails_once
    assert_error(cached.http.login(key_id, secret), 503, "temporarily_unavailable")
    assert len(state.keys) == 0  # the other key's entry went too
    # The store came back without the key; nobody said so.
    assert cached.store.revoke_key(other_id)
    assert_error(cached.http.login(other_id, other_secret), 401, "invalid_client")
    assert cached.http.login(key_id, secret).status_code == 200


def test_entries_live_at_most_ttl_and_the_cache_is_bounded() -> None:
    clock = FakeClock(now=100.0)
    keys = KeyCache(1.0, max_entries=3, clock=clock)
    records = [new_key(["dns"])[0] for _ in range(4)]
    keys.put(records[0])
    clock.advance(0.999)
    assert keys.get(records[0].key_id) is records[0]
    clock.advance(0.001)
    assert keys.get(records[0].key_id) is None
    for r in records:
        keys.put(r)
    assert len(keys) == 3 and keys.get(records[0].key_id) is None  # the oldest went
    keys.invalidated(Invalidation("token", records[1].key_id))
    assert keys.get(records[1].key_id) is records[1]
    keys.invalidated(Invalidation("key", records[1].key_id))
    assert keys.get(records[1].key_id) is None
    off = KeyCache(0)  # ttl 0: nothing is kept
    off.put(records[2])
    assert len(off) == 0


def test_a_cached_key_of_a_disabled_account_is_refused_at_once(cached: Service) -> None:
    account, _password = new_account("acme", ["dns"])
    assert cached.store.create_account(account)
    record, secret = cached.store.create_key(["dns"], account="acme", now=cached.clock())
    assert cached.http.login(record.key_id, secret).status_code == 200  # cached now
    # Disabled where this process hears nothing (another replica over SQLite): the key
    # stays cached, and still exists in the store.
    unsubscribe = cached.app.state.bearerguard.unsubscribe
    unsubscribe()
    assert cached.store.disable_account("acme")
    assert cached.app.state.bearerguard.keys.get(record.key_id) is not None
    assert_error(cached.http.login(record.key_id, secret), 401, "invalid_client")
