"""The Redis store on a real 3-master Valkey cluster: slots, revocation, two services.

One cluster for the module (`redis_topology.ClusterTopology`), two ``bearerguard serve``
processes sharing it, resource servers in this process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.cluster import RedisCluster
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, ChainBackend, IntrospectionBackend, StoreBackend
from bearerguard.server import create_app
from bearerguard.stores import StoreUnavailable, open_store
from bearerguard.stores.accounts import AccountRecord
from bearerguard.stores.redis import RedisStore, token_record_key
from bearerguard.tokens import Invalidation, token_digest
from helpers import assert_store_down, issue, remember_secret
from live_service import LiveService
from redis_server import free_port
from redis_topology import HOST, ClusterTopology


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterTopology]:
    with ClusterTopology() as topology:
        yield topology


@pytest.fixture(scope="module")
def services(cluster: ClusterTopology) -> Iterator[tuple[LiveService, LiveService]]:
    with LiveService(cluster.url) as first, LiveService(cluster.url) as second:
        yield first, second


@pytest.fixture
def raw(cluster: ClusterTopology) -> Iterator[RedisCluster]:
    client = RedisCluster(HOST, cluster.nodes[0].port)
    yield client
    client.close()


@pytest.fixture
def store(cluster: ClusterTopology) -> Iterator[RedisStore]:
    opened = open_store(cluster.url)
    assert isinstance(opened, RedisStore)
    yield opened
    opened.close()


def _login(base_url: str, key_id: str, secret: str) -> str:
    r = httpx.post(
        base_url + "/login", data={"grant_type": "client_credentials"}, auth=(key_id, secret)
    )
    assert r.status_code == 200, r.text
    return remember_secret(r.json()["access_token"])


def test_logins_and_lookups_spread_over_slots_through_two_services(
    services: tuple[LiveService, LiveService], raw: RedisCluster
) -> None:
    first, second = services
    key_id, secret = first.create_key(["dns"])
    rs_id, rs_secret = second.create_key(["dns"], introspect=True)
    tokens = [_login((first, second)[i % 2].base_url, key_id, secret) for i in range(30)]
    for i, token in enumerate(tokens):
        # Each token is looked up through the service that did not issue it.
        r = httpx.post(
            (second, first)[i % 2].base_url + "/introspect",
            data={"token": token},
            auth=(rs_id, rs_secret),
        )
        assert r.status_code == 200, r.text
        assert r.json()["active"] is True
        assert r.json()["client_id"] == key_id
    names = [token_record_key(token_digest(t)) for t in tokens]
    assert all(raw.exists(n) for n in names)
    slots = {raw.keyslot(n) for n in names}
    owners = {raw.get_node_from_key(n).port for n in names}
    assert len(slots) >= 20  # 30 random digests: (nearly) one slot each
    assert len(owners) == 3  # every master holds tokens
    # Keys, indexes and accounts share the one slot of the hash tag {bearerguard}.
    control = list(raw.scan_iter(match="{bearerguard}:*", target_nodes=RedisCluster.ALL_NODES))
    assert len(control) >= 4
    assert {raw.keyslot(n) for n in control} == {raw.keyslot("{bearerguard}")}


def _whoami_app(backend: Any) -> BearerGuardMiddleware:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"key_id": request.user.display_name})

    return BearerGuardMiddleware(
        Starlette(routes=[Route("/whoami", whoami)]),
        backend=backend,
        cache_ttl=60,
        touch_interval=60,
    )


def test_key_revocation_evicts_within_a_second_at_resource_servers(
    cluster: ClusterTopology, services: tuple[LiveService, LiveService]
) -> None:
    """Caches live a minute, so only the sharded pub/sub message explains a refusal.

    One resource server reads the cluster (`StoreBackend`), the other introspects through
    a service and hears revocations over the cluster (a chain whose store member only
    subscribes: introspection accepts every token).
    """
    first, second = services
    key_id, secret = first.create_key(["dns"])
    rs_id, rs_secret = first.create_key(["dns"], introspect=True)
    token = _login(second.base_url, key_id, secret)
    headers = {"Authorization": f"Bearer {token}"}
    reader = RedisStore(cluster.url)
    listener = RedisStore(cluster.url)
    introspection = IntrospectionBackend(first.base_url + "/introspect", rs_id, rs_secret)
    apps = [
        _whoami_app(StoreBackend(reader)),
        _whoami_app(ChainBackend([introspection, StoreBackend(listener)])),
    ]
    lookups = [0, 0]
    for i, member in enumerate((reader, introspection)):
        original = member.alookup if i else member.atouch_token

        async def counting(*args: Any, _i: int = i, _f: Any = original) -> Any:
            lookups[_i] += 1
            return await _f(*args)

        setattr(member, "alookup" if i else "atouch_token", counting)

    async def main() -> float:
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 1234)),
                base_url="http://testserver",
            )
            for app in apps
        ]
        try:
            for c in clients:
                for _ in range(2):
                    r = await c.get("/whoami", headers=headers)
                    assert r.status_code == 200, r.text
                    assert r.json()["key_id"] == key_id
            assert lookups == [1, 1]  # the second answers came from the caches
            assert await asyncio.to_thread(first.revoke_key, key_id)
            revoked_at = time.monotonic()
            pending = set(range(len(clients)))
            while pending:
                for i in sorted(pending):
                    r = await clients[i].get("/whoami", headers=headers)
                    if r.status_code == 401:
                        pending.discard(i)
                    else:
                        assert r.status_code == 200
                assert time.monotonic() - revoked_at < 5.0, f"still allowed by {pending}"
                await asyncio.sleep(0.01)
            return time.monotonic() - revoked_at
        finally:
            for c in clients:
                await c.aclose()
            # Async clients are closed on their own loop (httpx's and redis-py's).
            await introspection.aclose()
            await reader.aclose()

    try:
        waited = asyncio.run(main())
    finally:
        for app in apps:
            app.close()
        listener.close()
    assert waited < 1.0
    # Evicted, then looked up again and refused: no cache expiry came between.
    assert lookups == [2, 2]


def test_a_login_racing_a_revocation_leaves_no_token(store: RedisStore, raw: RedisCluster) -> None:
    # The login's record lands on another node than its key: enlisting it after the
    # revocation is refused, and the record is deleted again.
    tok = issue(store, ("dns",))
    assert store.revoke_key(tok.key_id)
    late = token_digest(issue(store, ("dns",), key_id=tok.key_id).token)
    assert store.get_token(late, time.time()) is None
    assert not raw.exists(token_record_key(late))


def test_revocations_and_account_disabling_across_slots(store: RedisStore) -> None:
    events: list[Invalidation] = []
    got = threading.Event()

    def heard(event: Invalidation) -> None:
        events.append(event)
        got.set()

    unsubscribe = store.subscribe(heard)
    try:
        assert store.create_account(AccountRecord("acme", frozenset({"dns"}), created_at=1.0))
        key, secret = store.create_key(["dns"], account="acme")
        remember_secret(secret)
        toks = [issue(store, ("dns",), key_id=key.key_id) for _ in range(6)]
        one = token_digest(toks[0].token)
        assert store.revoke_token(one)
        assert got.wait(5)
        assert events == [Invalidation("token", one)]
        got.clear()
        # A rotation is announced on the same sharded channel (its key's slot).
        rotated = store.rotate_key(key.key_id, grace=0)
        assert rotated is not None
        remember_secret(rotated[1])
        assert got.wait(5)
        assert events[-1] == Invalidation("secret", key.key_id)
        got.clear()
        assert store.disable_account("acme")
        assert got.wait(5)
        assert events[-1] == Invalidation("key", key.key_id)
        for t in toks:
            assert store.touch_token(token_digest(t.token), time.time()) is None
        assert [k.key_id for k in store.list_keys("acme")] == [key.key_id]
    finally:
        unsubscribe()


def test_dead_index_entries_are_pruned_on_a_cluster(store: RedisStore, raw: RedisCluster) -> None:
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    index = "{bearerguard}:keytokens:" + key.key_id
    for _ in range(24):
        t = issue(store, ("dns",), key_id=key.key_id)
        raw.delete(token_record_key(token_digest(t.token)))  # as if it had expired
    live = issue(store, ("dns",), key_id=key.key_id)
    assert raw.scard(index) < 12
    assert raw.sismember(index, token_digest(live.token))


def test_async_face_on_a_cluster(store: RedisStore) -> None:
    async def main() -> None:
        key, secret = await store.acreate_key(["dns"])
        remember_secret(secret)
        tok = issue(store, ("dns",), key_id=key.key_id)
        digest = token_digest(tok.token)
        assert (await store.atouch_token(digest, time.time())) is not None
        assert (await store.aget_token(digest, time.time())) is not None
        assert await store.arevoke_token(digest)
        assert await store.arevoke_key(key.key_id)
        assert await store.aget_key(key.key_id) is None
        await store.aclose()

    asyncio.run(main())


def test_an_unreachable_cluster_is_503_not_500() -> None:
    # Nothing listens on these ports. Opening the store does no I/O; the service then
    # answers /ready and /login with 503 temporarily_unavailable.
    store = open_store(f"redis+cluster://{HOST}:{free_port()},{HOST}:{free_port()}")
    with pytest.raises(StoreUnavailable):
        store.ping()
    app = create_app(store, close_store=True)

    asyncio.run(assert_store_down(app))
    store.close()
