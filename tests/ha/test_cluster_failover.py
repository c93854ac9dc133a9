"""Failover inside Redis Cluster: the master of the ``{bearerguard}`` slot is killed.

Three Valkey masters and one replica of the master that owns the ``{bearerguard}`` slot
(keys, their indexes, the revocation channel, and a third of the token records), with
``cluster-node-timeout`` 1 s. A real ``bearerguard serve`` takes logins in a loop while
that master is killed by PID (SIGKILL): the service answers only 200 or 503, ``/ready``
goes 503 and back to 200 without a restart once the replica is promoted, tokens issued
before the kill (replicated) still introspect, and a revocation still reaches a resource
server's cache over sharded pub/sub, which follows the slot to the promoted replica.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest

from bearerguard import StoreBackend, WSGIBearerGuard
from bearerguard.stores.redis import RedisStore, token_record_key
from bearerguard.tokens import token_digest
from failover import LoginLoop
from helpers import remember_secret
from live_service import LiveService
from redis_topology import ClusterTopology

RECOVERY_S = 30.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterTopology]:
    with ClusterTopology(tag_replica=True, node_timeout_ms=1000) as topology:
        yield topology


@pytest.fixture
def admin(cluster: ClusterTopology) -> Iterator[RedisStore]:
    """Makes and revokes keys as the CLI would (without its start-up time)."""
    store = RedisStore(cluster.url)
    yield store
    store.close()


def _whoami(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["bearerguard.identity"].key_id.encode()]


def _until(what: str, check: Any, timeout: float = RECOVERY_S) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic()


def test_killing_the_tag_slots_master_is_503_then_200_and_loses_nothing(
    cluster: ClusterTopology, admin: RedisStore
) -> None:
    victim = cluster.owner("{bearerguard}")
    replica = cluster.nodes[-1]
    assert not cluster.is_master(replica)
    key, secret = admin.create_key(["dns"])
    rs_key, rs_secret = admin.create_key(["dns"], introspect=True)
    key_id, rs_id = key.key_id, rs_key.key_id
    remember_secret(secret)
    remember_secret(rs_secret)
    with LiveService(cluster.url) as svc:
        tokens = []
        for _ in range(24):
            r = httpx.post(
                svc.base_url + "/login",
                data={"grant_type": "client_credentials"},
                auth=(key_id, secret),
            )
            assert r.status_code == 200, r.text
            tokens.append(remember_secret(r.json()["access_token"]))
        on_victim = [
            t for t in tokens if cluster.owner(token_record_key(token_digest(t))) is victim
        ]
        assert on_victim  # 24 random slots: about a third of them on the victim

        # A resource server reading the cluster, caching a minute: only the revocation
        # message can make it refuse a cached token.
        store = RedisStore(cluster.url)
        app = WSGIBearerGuard(_whoami, backend=StoreBackend(store), cache_ttl=60, touch_interval=60)
        rs = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://rs")
        cached = {"Authorization": f"Bearer {tokens[0]}"}
        try:
            assert rs.get("/", headers=cached).text == key_id
            with victim.client() as c:  # everything written so far is on the replica
                assert c.execute_command("WAIT", 1, 5000) == 1

            loop = LoginLoop(svc.base_url, key_id, secret)
            loop.start()
            try:
                _until("a login before the kill", lambda: loop.ok_since(time.monotonic() - 0.5))
                victim.kill()
                killed_at = time.monotonic()
                promoted_at = _until("the replica's promotion", lambda: cluster.is_master(replica))
                _until("a login and /ready after the kill", lambda: loop.ok_since(killed_at))
                first_200 = loop.first_200_since(killed_at)
                assert first_200 is not None
            finally:
                loop.stop.set()
                loop.join(15)
            assert loop.failure is None, repr(loop.failure)
            print(
                f"cluster failover: replica promoted {promoted_at - killed_at:.2f} s after "
                f"the kill, first login 200 at {first_200 - killed_at:.2f} s"
            )
            statuses = Counter(s for _, s, _ in loop.logins)
            assert set(statuses) <= {200, 503}, statuses  # never a 500, nor anything else
            assert {e for _, s, e in loop.logins if s == 503} == {"temporarily_unavailable"}
            after = [s for t, s in loop.ready if t > killed_at]
            assert 503 in after  # /ready saw the failover ...
            assert after[-1] == 200  # ... and came back without a restart
            assert cluster.owner("{bearerguard}") is replica

            # Written before the kill, replicated: the keys and every token still answer.
            for token in [*on_victim, *tokens[:4]]:
                r = httpx.post(
                    svc.base_url + "/introspect", data={"token": token}, auth=(rs_id, rs_secret)
                )
                assert r.status_code == 200, r.text
                assert r.json()["active"] is True

            # The resource server's listener followed the channel's slot to the replica.
            assert rs.get("/", headers=cached).status_code == 200  # still cached
            [listener] = store._listeners
            _until("the listener to subscribe again", listener.subscribed.is_set, 10)
            assert admin.revoke_key(key_id)
            revoked_at = time.monotonic()
            _until("the revocation at the resource server", lambda: _refused(rs, cached), 10)
            print(f"revocation reached the cache {time.monotonic() - revoked_at:.2f} s later")
        finally:
            rs.close()
            app.close()
            store.close()
    assert "Traceback" not in svc.output


def _refused(rs: httpx.Client, headers: dict[str, str]) -> bool:
    status = rs.get("/", headers=headers).status_code
    assert status in (200, 401)
    return status == 401
