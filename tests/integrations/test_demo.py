"""`bearerguard demo` as a subprocess: its printed lines, run with bash/curl/jq, work."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from bearerguard.stores import open_store
from bearerguard.tokens import token_digest
from helpers import remember_secret, require_tools, secrets_in
from integration_support import ROOT, free_port

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class Demo:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bearerguard", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=str(ROOT),
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True)),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False)),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream: IO[str], into: list[str], notify: bool) -> None:
        for line in stream:
            into.append(line)
            if notify:
                self.lines.put(line)
        stream.close()
        if notify:
            self.lines.put(None)

    def wait_for(self, marker: str) -> list[str]:
        """Lines printed up to and including the first one containing `marker`."""
        seen: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {marker!r} in time: {seen} {self.stderr}") from None
            if line is None:
                raise AssertionError(f"demo ended: {''.join(seen)} {''.join(self.stderr)}")
            seen.append(line.rstrip("\n"))
            if marker in line:
                return seen

    def finish(self, sig: int | None = signal.SIGINT) -> int:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise
        finally:
            for t in self._threads:
                t.join(timeout=STOP_TIMEOUT)
        return code


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/demo.db"


@pytest.fixture
def demo(store_url: str) -> Iterator[tuple[Demo, int, int]]:
    auth_port, api_port = free_port(), free_port()
    d = Demo("--auth-port", str(auth_port), "--api-port", str(api_port), "--store", store_url)
    try:
        yield d, auth_port, api_port
    finally:
        if d.proc.poll() is None:
            d.finish(signal.SIGTERM)


def test_printed_lines_work_and_sigint_stops_cleanly(
    demo: tuple[Demo, int, int], store_url: str
) -> None:
    require_tools("curl", "jq")
    d, auth_port, api_port = demo
    printed = d.wait_for("Press Ctrl-C to stop.")
    start = next(i for i, line in enumerate(printed) if line.startswith("KEY_ID="))
    script = printed[start : start + 4]
    key_id = script[0].removeprefix("KEY_ID=")
    remember_secret(script[1].removeprefix("SECRET="))
    assert script[2] == (
        "TOKEN=$(curl -s -d grant_type=client_credentials "
        f'-u "$KEY_ID:$SECRET" http://127.0.0.1:{auth_port}/login | jq -r .access_token)'
    )
    assert script[3] == (
        f'curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{api_port}/whoami'
    )
    # The lines exactly as printed, then the status code of the same request, and the
    # token (only so the test can check the demo never prints it).
    extra = [
        "echo",
        f"curl -s -o /dev/null -w '%{{http_code}}\\n' -H \"Authorization: Bearer $TOKEN\" "
        f"http://127.0.0.1:{api_port}/whoami",
        'echo "$TOKEN"',
    ]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script + extra)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    whoami, status, token = done.stdout.strip().split("\n")
    remember_secret(token)
    assert status == "200"
    assert json.loads(whoami) == {"key_id": key_id, "apis": ["dns", "vps"]}

    # The panel line: its URL, and an account that signs in with the printed password.
    panel = next(i for i, line in enumerate(printed) if "Customer control panel:" in line)
    assert printed[panel].endswith(f"http://127.0.0.1:{auth_port}/panel/")
    account, password = re.fullmatch(
        r"  account (demo-[0-9a-f]{6}), password (\S+) \(shown only now\)", printed[panel + 1]
    ).groups()  # type: ignore[union-attr]
    remember_secret(password)
    with httpx.Client(base_url=f"http://127.0.0.1:{auth_port}") as panel_client:
        form = panel_client.get("/panel/signin").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        signed_in = panel_client.post(
            "/panel/signin", data={"csrf": csrf, "account": account, "password": password}
        )
        assert signed_in.status_code == 303
        keys_page = panel_client.get("/panel/keys")
        assert keys_page.status_code == 200 and "dns" in keys_page.text and "vps" in keys_page.text

    assert d.finish(signal.SIGINT) == 0
    assert "stopped" in "".join(d.stdout)
    # Issue 12, N: the demo key does not outlive the demo (no pile of valid keys).
    assert f"demo key {key_id} revoked" in "".join(d.stdout)
    store = open_store(store_url)
    try:
        assert store.get_key(key_id) is None
        assert store.touch_token(token_digest(token), time.time()) is None
    finally:
        store.close()
    # Nothing but the one printed secret: no token anywhere in what the demo wrote.
    assert token not in "".join(d.stdout + d.stderr)
    assert "Traceback" not in "".join(d.stderr)


def test_sigterm_stops_cleanly(demo: tuple[Demo, int, int]) -> None:
    d, _, _ = demo
    d.wait_for("Press Ctrl-C to stop.")
    assert d.finish(signal.SIGTERM) == 0


def test_port_taken_is_one_line_and_exit_2(store_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        d = Demo("--auth-port", str(free_port()), "--api-port", str(port), "--store", store_url)
        code = d.finish(None)
    assert code == 2
    err = "".join(d.stderr).strip()
    assert err.count("\n") == 0, err
    assert f"port {port}" in err and "in use" in err and "--api-port" in err
    assert not secrets_in("".join(d.stdout))
