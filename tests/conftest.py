from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis

from bearerguard.stores.redis import RedisStore
from helpers import FakeClock, secrets_in
from redis_server import RedisServer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# A redis-server for the module and an emptied RedisStore per test (tests/stores has its
# own, one per session).
@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_store(redis_server: RedisServer) -> Iterator[RedisStore]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    store = RedisStore(redis_server.url)
    yield store
    store.close()


class _LeakCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The test's own HTTP client logs the URLs it requests (query tokens included);
        # that is the client's log, not ours or a server's.
        if record.name.startswith(("httpx", "httpcore")):
            return
        try:
            self.messages.append(record.getMessage())
        except Exception:  # pragma: no cover - a broken record is not our concern here
            self.messages.append(str(record.msg))


@pytest.fixture(autouse=True)
def no_secrets_in_logs() -> Iterator[None]:
    """Across the whole suite: no registered token or secret shows up in a log line."""
    handler = _LeakCatcher()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    for msg in handler.messages:
        assert not secrets_in(msg), "a token or secret was logged"
