"""Shared pieces of the integration tests: challenge checks, example servers, raw WebSockets."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from tools.processes import Process, free_port

from bearerguard.errors import Challenge
from helpers import secrets_in

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_challenge(
    resp: httpx.Response,
    status: int,
    error: str | None,
    *,
    scope: str | None = None,
    realm: str = "api",
) -> None:
    """`resp` is the RFC 6750 refusal the core renders: status, challenge, JSON body."""
    assert resp.status_code == status, resp.text
    params = Challenge.from_header(resp.headers["www-authenticate"])
    assert params["realm"] == realm
    assert params.get("error") == error
    assert params.get("scope") == scope
    body = resp.json()
    assert body["error"] == (error or "unauthorized")
    assert body["error_description"]
    if error is not None:
        assert params["error_description"] == body["error_description"]
    assert resp.headers["content-type"].startswith("application/json")


# -- example apps as real servers -----------------------------------------------------
class ExampleServer:
    """An example app under a real server (uvicorn or gunicorn) as a subprocess."""

    def __init__(
        self, cmd: Sequence[str], port: int, env: dict[str, str], cwd: Path = ROOT
    ) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BEARERGUARD_", "FORWARDED"))
        }
        full_env.update(env, PYTHONUNBUFFERED="1")
        self._process = Process(cmd, env=full_env, cwd=str(cwd))
        self.proc = self._process.popen
        self._stopped = False
        if not self._process.wait_for_http(self.base_url + "/health", START_TIMEOUT):
            how = "exited early" if not self._process.alive() else "did not start"
            raise RuntimeError(f"server {how}:\n{self.stop()}")

    def stop(self) -> str:
        """Stop the server; return its output (once) after checking it holds no secret."""
        self._process.stop(STOP_TIMEOUT)
        if self._stopped:
            return ""
        self._stopped = True
        out = self._process.output
        assert not secrets_in(out), "a token or secret in the server's output"
        return out


def uvicorn_example(env: dict[str, str]) -> ExampleServer:
    port = free_port()
    # fmt: off
    cmd = [
        sys.executable, "-m", "uvicorn", "app:app",
        "--app-dir", str(EXAMPLES / "starlette_app"),
        "--host", "127.0.0.1", "--port", str(port),
        "--no-proxy-headers", "--no-access-log", "--lifespan", "on",
    ]
    # fmt: on
    return ExampleServer(cmd, port, env)


def gunicorn_example(env: dict[str, str]) -> ExampleServer:
    port = free_port()
    # fmt: off
    cmd = [
        sys.executable, "-m", "gunicorn",
        "--chdir", str(EXAMPLES / "flask_app"),
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
        "--forwarded-allow-ips", "", "--graceful-timeout", "5",
        "app:app",
    ]
    # fmt: on
    return ExampleServer(cmd, port, env)


def django_gunicorn_example(env: dict[str, str]) -> ExampleServer:
    """examples/django_app as documented: ``gunicorn wsgi:application`` from its directory."""
    port = free_port()
    # fmt: off
    cmd = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
        "--forwarded-allow-ips", "", "--graceful-timeout", "5",
        "wsgi:application",
    ]
    # fmt: on
    return ExampleServer(cmd, port, env, cwd=EXAMPLES / "django_app")


def django_uvicorn_example(env: dict[str, str]) -> ExampleServer:
    """examples/django_app as documented: ``uvicorn asgi:application`` from its directory."""
    port = free_port()
    # fmt: off
    cmd = [
        sys.executable, "-m", "uvicorn", "asgi:application",
        "--host", "127.0.0.1", "--port", str(port),
        "--no-proxy-headers", "--no-access-log", "--lifespan", "off",
    ]
    # fmt: on
    return ExampleServer(cmd, port, env, cwd=EXAMPLES / "django_app")


@contextlib.contextmanager
def served_asgi(app: Any) -> Iterator[int]:
    """Serve the ASGI `app` with uvicorn (lifespan on) in a thread; yield its port."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, proxy_headers=False, lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)


# -- a raw WebSocket client (no client library: the handshake by hand, RFC 6455) -----
class RawWebSocket:
    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)
        }

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, as servers send): (opcode, payload)."""
        b0, b1 = self._read(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return b0 & 0x0F, self._read(length)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
