"""Failover under Sentinel: 1 master, 1 replica, 3 sentinels, a real ``bearerguard serve``.

The master is killed by PID (SIGKILL) while a login loop runs. The service answers 503
``temporarily_unavailable`` during the switch, never 500, and recovers by itself once
the Sentinels have promoted the replica; ``/ready`` follows. ``make soak`` repeats the
failover several times (BEARERGUARD_SOAK=1).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from failover import LoginLoop
from live_service import LiveService
from redis_topology import SentinelTopology

ROUNDS = 3 if os.environ.get("BEARERGUARD_SOAK", "").strip() not in ("", "0") else 1
RECOVERY_S = 30.0


@pytest.fixture(scope="module")
def topology() -> Iterator[SentinelTopology]:
    with SentinelTopology(down_after_ms=1000) as ha:
        yield ha


def test_failover_during_a_login_loop_is_503_then_recovers(topology: SentinelTopology) -> None:
    with LiveService(topology.url) as svc:
        key_id, secret = svc.create_key(["dns"])
        loop = LoginLoop(svc.base_url, key_id, secret)
        loop.start()
        try:
            for _ in range(ROUNDS):
                _fail_over(topology, loop)
        finally:
            loop.stop.set()
            loop.join(15)
        assert loop.failure is None, repr(loop.failure)
        statuses = Counter(s for _, s, _ in loop.logins)
        assert set(statuses) <= {200, 503}, statuses  # never a 500, nor anything else
        assert statuses[503] >= 1  # the switch was seen, and answered as RFC 6749 says
        assert {e for _, s, e in loop.logins if s == 503} == {"temporarily_unavailable"}
        assert {s for _, s in loop.ready} == {200, 503}
        # The key written before the failovers was replicated: the new master has it.
        assert httpx.get(svc.base_url + "/ready").status_code == 200
    assert "Traceback" not in svc.output


def _fail_over(topology: SentinelTopology, loop: LoginLoop) -> None:
    deadline = time.monotonic() + 15
    while not loop.ok_since(time.monotonic() - 0.5):
        assert time.monotonic() < deadline, "no successful login before the kill"
        time.sleep(0.05)
    old = topology.master_port()
    topology.node_on(old).kill()
    killed_at = time.monotonic()
    topology.wait_for_new_master(old, timeout=RECOVERY_S)
    failed_over_at = time.monotonic()
    while not loop.ok_since(failed_over_at):
        assert time.monotonic() - failed_over_at < RECOVERY_S, "no login 30 s after failover"
        time.sleep(0.05)
    recovered_at = time.monotonic()
    print(
        f"failover: new master {failed_over_at - killed_at:.1f} s after the kill, "
        f"logins and /ready back {recovered_at - failed_over_at:.1f} s later"
    )
    if ROUNDS > 1:
        # Bring back a replica for the next round: the killed node, empty, as a replica.
        topology.add_replica()
