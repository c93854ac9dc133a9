"""Throw-away servers on 127.0.0.1 for the bench: redis-server, uvicorn, gunicorn."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tools.processes import Process, find_redis_server, redis_pong
from tools.processes import free_port as _free_port

__all__ = ["HOST", "ROOT", "Proc", "RedisServer", "find_redis_server", "free_port"]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port(HOST)


class Proc(Process):
    """A bench server: a `Process` in its own session and temporary directory.

    The checkout is on its ``PYTHONPATH`` (so ``bench.…:app`` imports) and `env` adds
    to ours; `stop` also removes the directory.
    """

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bearerguard-bench-"))
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [full_env.get("PYTHONPATH")])]
        )
        full_env.update(env or {})
        super().__init__(args, env=full_env, cwd=str(self.dir), new_session=True)

    def stop(self, timeout: float = 10.0) -> int:
        try:
            return super().stop(timeout)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """redis-server on a free port, no persistence; `url`, `stop()`."""

    def __init__(self, timeout: float = 20.0) -> None:
        binary = find_redis_server()
        last = ""
        for _ in range(5):
            self.port = port = free_port()
            # fmt: off
            self.proc = Proc([
                binary, "--port", str(port), "--bind", HOST,
                "--save", "", "--appendonly", "no", "--protected-mode", "no",
            ])
            # fmt: on
            if self.proc.wait_for(functools.partial(redis_pong, HOST, port), timeout):
                return
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
    if proc.wait_for_http(url, timeout, status=None):
        return
    if not proc.alive():
        raise RuntimeError(f"server exited: {proc.tail()}")
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


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (gunicorn's workers), read from /proc."""
    seen, todo = [pid], [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            fresh = [c for c in children if c not in seen]
            seen += fresh
            todo += fresh
    return seen


def pin(pid: int, cpus: set[int]) -> None:
    """Pin process `pid`, every thread of it and its children to `cpus`."""
    for member in _tree(pid):
        try:
            tasks = os.listdir(f"/proc/{member}/task")
        except OSError:
            continue
        for tid in tasks:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by process `pid` and its children (all
    threads; a live child's time is not in its parent's counters until it exits)."""
    total = 0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def at_once(
    pids: dict[str, int], load: Callable[[str], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """`load(name)` for every server in `pids` at the same time, one thread each.

    `load` returns a run with its ``requests``; each run gets the server's CPU µs per
    request (``cpu_us``, its /proc counters around the run) and the run's ``window``
    (monotonic start and end, for a caller to check that the runs overlapped).
    """

    def one(name: str) -> dict[str, Any]:
        cpu = cpu_seconds(pids[name])
        t0 = time.monotonic()
        run = load(name)
        run["window"] = (t0, time.monotonic())
        used = cpu_seconds(pids[name]) - cpu
        run["cpu_us"] = used / run["requests"] * 1e6 if run["requests"] else 0.0
        return run

    with ThreadPoolExecutor(len(pids)) as pool:
        done = {name: pool.submit(one, name) for name in pids}
        return {name: f.result() for name, f in done.items()}
