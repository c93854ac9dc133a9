"""A rotated secret stops working on every auth-service replica at once, not after the key
cache's TTL, while the key's tokens stay valid at resource servers.

Two service apps (two replicas: over Redis, two `RedisStore` objects on one real
redis-server; over memory and SQLite, one store object, as several apps in one process)
with a 30 s key cache, so only the rotation's announcement can explain a refusal in
time. A resource server (`StoreBackend` over the same store, cache a minute) holds a
token of the key in its cache through the rotation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from server_helpers import InProcess, assert_error
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, StoreBackend
from bearerguard.server import create_app
from bearerguard.stores import MemoryStore, RedisStore, SQLiteStore
from bearerguard.stores.accounts import ADMIN_API
from bearerguard.tokens import token_digest
from helpers import remember_secret
from redis_server import RedisServer

KEY_CACHE_TTL = 30.0
DEADLINE = 10.0
"""How long B may keep taking the old secret before the test fails: well under the key
cache's 30 s, so only the announcement explains a refusal (it takes milliseconds)."""


class Replicas:
    """Replicas A and B of the service and a resource server R, each over its own store
    object on one Redis, or all over one store object (memory, SQLite)."""

    def __init__(self, stores: list[Any]) -> None:
        self.stores = stores
        a_store, b_store, r_store = stores
        self.a = InProcess(create_app(a_store, key_cache_ttl=KEY_CACHE_TTL))
        self.b = InProcess(create_app(b_store, key_cache_ttl=KEY_CACHE_TTL))
        self.r_store = r_store
        self.lookups: dict[str, int] = {}
        touch = r_store.atouch_token

        async def counting(digest: str, now: float, client_ip: str | None = None) -> Any:
            self.lookups[digest] = self.lookups.get(digest, 0) + 1
            return await touch(digest, now, client_ip)

        r_store.atouch_token = counting

        async def whoami(request: Request) -> JSONResponse:
            return JSONResponse({"key_id": request.user.display_name})

        self.resource = BearerGuardMiddleware(
            Starlette(routes=[Route("/whoami", whoami)]),
            backend=StoreBackend(r_store),
            cache_ttl=60,
            touch_interval=60,
        )
        self.r = InProcess(self.resource)

    def whoami(self, token: str) -> httpx.Response:
        return self.r.get("/whoami", headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.resource.close()
        for service in (self.a, self.b):
            service.app.state.bearerguard.unsubscribe()
        for http, store in zip((self.a, self.b, self.r), self.stores, strict=True):
            if isinstance(store, RedisStore):  # async clients close on their own loop
                http.loop.run_until_complete(store.aclose())
            http.close()
        for store in {id(s): s for s in self.stores}.values():
            store.close()


@pytest.fixture(params=["redis", "memory", "sqlite"])
def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Replicas]:
    stores: list[Any]
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        client = redis.Redis.from_url(server.url)
        try:
            client.flushall()
        finally:
            client.close()
        stores = [RedisStore(server.url) for _ in range(3)]
    elif request.param == "memory":
        stores = [MemoryStore()] * 3
    else:
        stores = [SQLiteStore(f"sqlite:///{tmp_path / 'auth.db'}")] * 3
    made = Replicas(stores)
    try:
        yield made
    finally:
        made.close()


def _token(http: InProcess, key_id: str, secret: str) -> str:
    r = http.login(key_id, secret)
    assert r.status_code == 200, r.text
    return remember_secret(r.json()["access_token"])


def test_a_secret_rotated_with_no_grace_stops_on_every_replica_at_once(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    store = replicas.stores[0]
    admin, admin_secret = store.create_key([ADMIN_API])
    admin_token = _token(a, admin.key_id, remember_secret(admin_secret))
    record, old = store.create_key(["dns"])
    key_id = record.key_id
    remember_secret(old)

    # B authenticates the key (its record is cached for 30 s); R caches two tokens of it.
    token = _token(b, key_id, old)
    other = _token(b, key_id, old)
    assert b.app.state.bearerguard.keys.get(key_id) is not None
    for t in (token, other, token, other):
        r = replicas.whoami(t)
        assert r.status_code == 200, r.text
        assert r.json()["key_id"] == key_id
    digest, other_digest = token_digest(token), token_digest(other)
    assert replicas.lookups == {digest: 1, other_digest: 1}  # the second answers: cached

    # Rotated through A's admin API, no grace.
    r = a.post(
        f"/admin/keys/{key_id}/rotate",
        json={"grace": 0},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert r.status_code == 200, r.text
    new = remember_secret(r.json()["secret"])
    rotated_at = time.monotonic()
    while True:
        r = b.login(key_id, old)
        if r.status_code != 200:
            break
        waited = time.monotonic() - rotated_at
        assert waited < DEADLINE, f"B still takes the old secret {waited:.1f} s after rotation"
        time.sleep(0.01)
    waited = time.monotonic() - rotated_at
    assert_error(r, 401, "invalid_client")
    assert_error(a.login(key_id, old), 401, "invalid_client")
    for http in (a, b):
        assert http.login(key_id, new).status_code == 200

    # The tokens stay valid: R's cache kept them. R hears a revocation of the other token
    # after the rotation (one channel, in order), so by the time it refuses that token it
    # has heard the rotation too, and evicted nothing for it.
    assert store.revoke_token(other_digest)
    deadline = time.monotonic() + DEADLINE
    while replicas.whoami(other).status_code == 200:
        assert time.monotonic() < deadline, "R never heard the revocation"
        time.sleep(0.01)
    r = replicas.whoami(token)
    assert r.status_code == 200, r.text
    assert r.json()["key_id"] == key_id
    assert replicas.lookups[digest] == 1  # still served from R's cache
    assert len(replicas.resource.guard.cache) == 1  # the token; the revoked one went
    assert waited < DEADLINE
