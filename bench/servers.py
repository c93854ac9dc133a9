"""Throw-away servers on 127.0.0.1 for the bench: redis-server, uvicorn, gunicorn."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

sys.path.insert(0, str(ROOT / "tests"))
from redis_server import find_redis_server  # noqa: E402  (the tests' own choice of binary)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            s.settimeout(0.5)
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Proc:
    """A child process we started, stopped by its own pid only."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.dir = Path(tempfile.mkdtemp(prefix="bearerguard-bench-"))
        self.log = self.dir / "server.log"
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [full_env.get("PYTHONPATH")])]
        )
        full_env.update(env or {})
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.dir),
                env=full_env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        else:
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """redis-server on a free port, no persistence; `url`, `stop()`."""

    def __init__(self, timeout: float = 20.0) -> None:
        binary = find_redis_server()
        last = ""
        for _ in range(5):
            self.port = free_port()
            self.proc = Proc(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "no",
                ]
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.alive():
                if _pong(self.port):
                    return
                time.sleep(0.02)
            last = self.proc.tail()
            self.proc.stop()
        raise RuntimeError(f"redis-server did not start: {last}")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def stop(self) -> None:
        self.proc.stop()


def wait_http(proc: Proc, url: str, timeout: float = 30.0) -> None:
    """Poll `url` until it answers (any status) or `proc` dies; RuntimeError then."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"server exited: {proc.tail()}")
            try:
                client.get(url)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"server did not answer at {url} within {timeout:g}s")


def uvicorn(app: str, *, env: dict[str, str] | None = None, workers: int = 1) -> tuple[Proc, int]:
    """Serve the ASGI `app` ("module:attr") with uvicorn on a free port."""
    port = free_port()
    proc = Proc(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            HOST,
            "--port",
            str(port),
            "--no-proxy-headers",
            "--no-access-log",
            "--log-level",
            "warning",
            "--timeout-keep-alive",
            "30",
            "--workers",
            str(workers),
        ],
        env=env,
    )
    return proc, port


def gunicorn(app: str, *, env: dict[str, str] | None = None) -> tuple[Proc, int]:
    """Serve the WSGI `app` with gunicorn (one sync worker) on a free port."""
    port = free_port()
    proc = Proc(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            "1",
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
            app,
        ],
        env=env,
    )
    return proc, port
