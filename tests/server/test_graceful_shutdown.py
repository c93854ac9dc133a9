"""README "Health": on SIGTERM the service finishes in-flight requests, then closes the store."""

from __future__ import annotations

import base64
import json
import signal
import socket
import time
from collections.abc import Callable

import httpx

from helpers import remember_secret
from live_service import LiveService

WAIT = 30.0


def _poll(pred: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_finishes_the_request_in_flight() -> None:
    with LiveService() as svc:
        key_id, secret = svc.create_key(["dns"])
        body = b"grant_type=client_credentials"
        basic = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
        head = (
            "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Basic {basic}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT) as s:
            s.sendall(head + body[:10])  # the request is under way: half its body is sent
            # Answered after the bytes above were sent on the same event loop: the
            # service has read the head and is waiting for the rest of the body.
            assert httpx.get(svc.base_url + "/health", timeout=WAIT).status_code == 200
            assert svc.proc is not None
            svc.proc.send_signal(signal.SIGTERM)
            # Shutting down: no new connections...
            assert _poll(lambda: _refuses_connections(svc.port))
            # ...but the process waits for the request in flight.
            assert svc.proc.poll() is None
            s.sendall(body[10:])
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        status, _, rest = data.partition(b"\r\n")
        assert status == b"HTTP/1.1 200 OK", status
        token = json.loads(rest.split(b"\r\n\r\n", 1)[1])["access_token"]
        remember_secret(token)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert svc.proc.wait(timeout=WAIT) in (0, -signal.SIGTERM)
        svc.stop()
        # The lifespan shutdown (which closes the store) ran after the request finished.
        assert "Application shutdown complete." in svc.output
