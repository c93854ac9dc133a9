"""Fixtures for the store tests: every store for real (memory, a SQLite file, redis-server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bearerguard.stores import MemoryStore, RedisStore, SQLiteStore
from redis_server import RedisServer

STORE_KINDS = ["memory", "sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (tests that restart it use their own)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, with an empty dataset for this test."""
    if redis_server.proc is None:  # a test stopped it: bring it back
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test's empty dataset."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def rstore(redis_url: str) -> Iterator[RedisStore]:
    """A `RedisStore` over the test's empty dataset."""
    store = RedisStore(redis_url)
    yield store
    store.close()


OpenStore = Callable[[], Any]


@pytest.fixture(params=STORE_KINDS)
def open_store_again(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """A factory: each call opens another store object over the same storage.

    memory:// has no storage outside the object, so it hands back the same one.
    """
    kind: str = request.param
    opened: list[Any] = []
    shared: MemoryStore | None = None

    def make() -> Any:
        nonlocal shared
        store: Any
        if kind == "memory":
            if shared is None:
                shared = MemoryStore()
                opened.append(shared)
            return shared
        if kind == "sqlite":
            store = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}")
        else:
            store = RedisStore(request.getfixturevalue("redis_url"))
        opened.append(store)
        return store

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store_again: OpenStore) -> Any:
    """One store of each kind (parametrised)."""
    return open_store_again()


@pytest.fixture
def store_kind(open_store_again: OpenStore) -> str:
    kind: str = open_store_again.kind  # type: ignore[attr-defined]
    return kind
