"""`open_store(url)`: the right store for each URL, one-line errors for bad ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import bearerguard.stores as stores
from bearerguard.errors import ConfigurationError
from bearerguard.stores import MemoryStore, RedisStore, SQLiteStore, open_store


def test_memory(tmp_path: Path) -> None:
    store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    assert store.url == "memory://"


def test_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = open_store(url)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.url == url
        assert store.path == str(tmp_path / "x.db")
    finally:
        store.close()


def test_redis_connects_lazily() -> None:
    # Nothing listens there: opening must not touch the network; ping would fail.
    store = open_store("redis://127.0.0.1:9/3")
    try:
        assert isinstance(store, RedisStore)
        assert store.url == "redis://127.0.0.1:9/3"
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "bearerguard.db",
        "http://example.com/",
        "postgres://u:hunter2@db/x",
        "memory://somewhere",
        "sqlite://",
        "sqlite:///:memory:",
        "redis://",
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:6379/notadb",
        "redis://:hunter2@/0",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_store(url)
    message = str(info.value)
    assert message and "\n" not in message
    assert "hunter2" not in message  # a password in a URL is never echoed


def test_redis_url_without_the_redis_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one fault we cannot produce for real in this environment: redis not installed.
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "bearerguard.stores.redis", raising=False)
    with pytest.raises(ConfigurationError, match="pip install") as info:
        open_store("redis://127.0.0.1:6379/0")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigurationError):
        stores.RedisStore  # noqa: B018
    # Memory and SQLite stores do not need it.
    assert isinstance(open_store("memory://"), MemoryStore)


def test_exports() -> None:
    assert stores.__all__ == sorted(stores.__all__)
    for name in stores.__all__:
        assert getattr(stores, name) is not None


def test_memory_store_forgets_expired_tokens_on_its_own() -> None:
    """Issue 12, I: ``serve --store memory://`` does not grow without bound."""
    from bearerguard.stores.memory import MemoryStore
    from helpers import issue

    store = MemoryStore()
    key, _ = store.create_key(["dns"])
    now = 1_000_000.0
    for _ in range(5000):
        issue(store, key_id=key.key_id, ttl=10, now=now)  # each expires 10 s later
        now += 1
    # Only the tokens of the last few seconds (and at most one sweep's growth) remain.
    assert len(store._tokens) < 2100
    live = [t for t in store._tokens.values() if t.expires_at > now]
    assert len(live) >= 9
