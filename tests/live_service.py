"""A real ``bearerguard serve`` subprocess for tests (shared by several test suites).

    with LiveService(token_ttl=5) as svc:           # temp SQLite file by default
        key_id, secret = svc.create_key(["dns"])    # via `bearerguard keys create --json`
        httpx.post(svc.base_url + "/login", ...)
        svc.stop(); svc.start()                     # restart on the same port

The service listens on a free port on 127.0.0.1. `stop()` also checks that no secret
registered with `helpers.remember_secret` appears in the server's output. Nothing is
counted here. `command` runs another installation's CLI (tests/packaging/ passes a fresh
venv's ``bearerguard`` script, with `cwd` outside the checkout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import httpx
from tools.processes import Process, free_port

from helpers import remember_secret, secrets_in

__all__ = ["LiveService", "free_port", "live_service", "run_cli"]

# How the CLI is run unless told otherwise: this interpreter's bearerguard.
BEARERGUARD = (sys.executable, "-m", "bearerguard")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BEARERGUARD_STORE", None)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def run_cli(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 60.0,
    command: Sequence[str] = BEARERGUARD,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bearerguard ARGS`` (or ``COMMAND ARGS``) to completion.

    Returns the finished process. `env` adds to (and overrides) the environment;
    ``BEARERGUARD_STORE`` is removed from the inherited one so tests choose their store
    explicitly.
    """
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=_env(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class _PortTaken(Exception):
    pass


class LiveService:
    """``bearerguard serve`` as a subprocess on 127.0.0.1 (see module docstring).

    `store_url` defaults to a fresh SQLite file in a temporary directory (removed on
    exit). `extra_args` go to ``serve`` as they are (e.g. ``["--trusted-proxy", …]``).
    `command` and `cwd` say which bearerguard runs, and where (``serve`` and ``keys``).
    """

    def __init__(
        self,
        store_url: str | None = None,
        *,
        token_ttl: float = 300,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
        command: Sequence[str] = BEARERGUARD,
        cwd: str | None = None,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_url is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bearerguard-live-")
            store_url = "sqlite:///" + str(Path(self._tmp.name) / "bearerguard.db")
        self.store_url = store_url
        self.token_ttl = token_ttl
        self.host = host
        self._auto_port = port is None
        self.port = port or free_port(host)
        self.extra_args = list(extra_args)
        self.command = list(command)
        self.cwd = cwd
        self._process: Process | None = None
        self._outputs: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running server's process (None when stopped), to signal it directly."""
        return self._process.popen if self._process is not None else None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> LiveService:
        """Start the server (again) on the same port and wait until /health answers."""
        if self.proc is not None:
            raise RuntimeError("already running")
        for _ in range(3):
            try:
                return self._start_once()
            except _PortTaken:
                # Someone took the free port between our probe and the server's bind.
                if not self._auto_port:
                    raise RuntimeError(f"port {self.port} is in use") from None
                self.port = free_port(self.host)
        raise RuntimeError("could not find a free port")

    def _start_once(self) -> LiveService:
        # fmt: off
        cmd = [
            *self.command, "serve",
            "--host", self.host, "--port", str(self.port),
            "--store", self.store_url, "--token-ttl", str(self.token_ttl),
            *self.extra_args,
        ]
        # fmt: on
        self._process = process = Process(cmd, env=_env(), cwd=self.cwd)
        if process.wait_for_http(self.base_url + "/health", START_TIMEOUT):
            return self
        if not process.alive():
            out = self._collect()
            if "cannot listen" in out:
                raise _PortTaken
            raise RuntimeError(f"bearerguard serve exited early:\n{out}")
        self.stop()
        raise RuntimeError(f"bearerguard serve did not become healthy:\n{self.output}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and check its output for secrets."""
        if self._process is None:
            return
        self._process.stop(STOP_TIMEOUT)
        self._collect()
        leaked = secrets_in(self.output)
        # Name the leak by position only: the failure message must not repeat it.
        where = [self.output.index(s) for s in leaked]
        assert not leaked, f"a token or secret appeared in the server's output at {where}"

    def _collect(self) -> str:
        # The finished run's output joins the earlier runs'; the process is forgotten.
        process, self._process = self._process, None
        if process is not None:
            process.stop(STOP_TIMEOUT)
            self._outputs.append(process.output)
        return self.output

    @property
    def output(self) -> str:
        """Everything the server printed so far (all runs, finished ones only)."""
        return "".join(self._outputs)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def __enter__(self) -> LiveService:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- key management through the real CLI ------------------------------------------
    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``bearerguard ARGS --store <this store>``."""
        return run_cli([*args, "--store", self.store_url], command=self.command, cwd=self.cwd)

    def create_key(self, apis: Sequence[str], introspect: bool = False) -> tuple[str, str]:
        """Create a key with `bearerguard keys create --json`; return (key_id, secret)."""
        args = ["keys", "create", "--json"]
        for api in apis:
            args += ["--api", api]
        if introspect:
            args.append("--introspect")
        done = self.cli(*args)
        if done.returncode != 0:
            raise RuntimeError(f"keys create failed: {done.stderr.strip()}")
        data = json.loads(done.stdout)
        return data["key_id"], remember_secret(data["secret"])

    def token(self, key_id: str, secret: str, local_address: str | None = None) -> str:
        """A token from ``POST /login`` (client-credentials grant, key as HTTP Basic).

        Sent from `local_address` (e.g. ``127.0.0.2``, to test IP binding); the answer
        must be 200 with a bearer token, which is registered with `remember_secret`.
        """
        transport = httpx.HTTPTransport(local_address=local_address)
        with httpx.Client(transport=transport, timeout=10) as c:
            r = c.post(
                self.base_url + "/login",
                data={"grant_type": "client_credentials"},
                auth=(key_id, secret),
            )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"].lower() == "bearer"
        return remember_secret(body["access_token"])

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key with `bearerguard keys revoke`; True if it existed."""
        return self.cli("keys", "revoke", key_id).returncode == 0


@contextmanager
def live_service(store_url: str | None = None, **options: object) -> Iterator[LiveService]:
    """`LiveService` as a context manager (keyword options as for LiveService)."""
    svc = LiveService(store_url, **options)  # type: ignore[arg-type]
    with svc:
        yield svc
