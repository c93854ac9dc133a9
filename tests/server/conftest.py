from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import Service

from live_service import LiveService


@pytest.fixture
def svc() -> Iterator[Service]:
    s = Service()
    try:
        yield s
    finally:
        s.http.close()


# -- live services over real stores ---------------------------------------------------
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return "sqlite:///" + str(tmp_path / "auth.db")


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    """A real redis-server started for this session (tests/redis_server.py)."""
    from redis_server import RedisServer

    with RedisServer() as server:
        yield server.url


@pytest.fixture(params=["sqlite", "redis"])
def persistent_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL every process can share: a SQLite file, or a fresh Redis database."""
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "auth.db")
    base: str = request.getfixturevalue("redis_base_url")
    return fresh_redis_url(base)


def fresh_redis_url(base: str) -> str:
    """`base` with its database flushed, so each test starts empty."""
    import redis

    client = redis.Redis.from_url(base)
    try:
        client.flushdb()
    finally:
        client.close()
    return base


@pytest.fixture
def live(persistent_url: str) -> Iterator[LiveService]:
    with LiveService(persistent_url, token_ttl=300) as svc:
        yield svc
