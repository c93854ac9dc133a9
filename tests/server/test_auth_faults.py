"""Faults against a live server: a Redis that goes away, hostile raw HTTP. Never a 500."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from server_helpers import scrape

from live_service import LiveService
from redis_server import RedisServer


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_redis_down_gives_503_then_recovers(own_redis: RedisServer) -> None:
    with LiveService(own_redis.url) as live:
        key_id, secret = live.create_key(["dns"])
        own_redis.stop()
        with httpx.Client(base_url=live.base_url, timeout=30) as c:
            for path, auth in (("/login", (key_id, secret)), ("/introspect", (key_id, secret))):
                r = c.post(path, data={"grant_type": "client_credentials", "token": "t"}, auth=auth)
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "temporarily_unavailable"
                assert r.headers["retry-after"].isdigit()
                assert r.headers["cache-control"] == "no-store"
            # Each 503 of a failing store is counted once.
            assert scrape(live.base_url)["bearerguard_service_store_errors_total"] == 2
            r = c.get("/ready")
            assert r.status_code == 503
            assert r.json() == {"status": "unavailable"}
            assert c.get("/health").status_code == 200  # alive all the same

            own_redis.start()  # same port, empty data
            deadline = time.monotonic() + 30
            while c.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, "service did not recover"
                time.sleep(0.1)
            r = c.post("/login", data={"grant_type": "client_credentials"}, auth=(key_id, secret))
            # The key went with the data: a clean 401, not an error.
            assert r.status_code == 401
            assert r.json()["error"] == "invalid_client"


def raw_request(port: int, data: bytes, *, read_timeout: float = 15.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    # Enough to read the status line; the server may keep the socket open.
                    break
        except TimeoutError:
            pass
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:100]
    return int(response.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def live_sqlite() -> Iterator[LiveService]:
    with LiveService() as live:
        yield live


def _basic(user: str, password: str) -> bytes:
    return base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        # A claimed body far over the limit: refused before reading it.
        (
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\nContent-Length: 100000000\r\n\r\ngrant_type=client_credentials",
            {413},
        ),
        # Non-UTF-8 raw bytes in the form.
        (
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\nContent-Length: 6\r\nConnection: close\r\n\r\na=\xff\xfe\xfd\xfc",
            {400},
        ),
        # A huge Basic header: refused by the server's header limit or by ours.
        (
            b"POST /login HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
            + b"A" * 60000
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            {400, 431},
        ),
        (
            b"POST /login HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
            + b"QUFB" * 500
            + b"\r\nContent-Type: application/x-www-form-urlencoded"
            + b"\r\nContent-Length: 29\r\nConnection: close\r\n\r\ngrant_type=client_credentials",
            {400},
        ),
        # Non-ASCII bytes in the Authorization header.
        (
            b"POST /login HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \xc3\xa9\xff"
            b"\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\nContent-Length: 29\r\nConnection: close\r\n\r\ngrant_type=client_credentials",
            {400},
        ),
        # Garbage instead of HTTP.
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n", {400}),
    ],
)
def test_hostile_raw_requests(
    live_sqlite: LiveService, request_bytes: bytes, expected: set[int]
) -> None:
    response = raw_request(live_sqlite.port, request_bytes)
    assert status_of(response) in expected, response[:300]
    # The service is still fine afterwards.
    assert httpx.get(live_sqlite.base_url + "/health", timeout=10).status_code == 200


def test_conflicting_content_length_is_refused(live_sqlite: LiveService) -> None:
    key_id, secret = live_sqlite.create_key(["dns"])
    req = (
        b"POST /login HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
        + _basic(key_id, secret)
        + b"\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nContent-Length: 29\r\nContent-Length: 30\r\nConnection: close\r\n\r\n"
        b"grant_type=client_credentials"
    )
    assert status_of(raw_request(live_sqlite.port, req)) == 400


def test_no_500_for_assorted_bad_forms(live_sqlite: LiveService) -> None:
    key_id, secret = live_sqlite.create_key(["dns"])
    bodies = [
        b"",
        b"=",
        b"&&&",
        b"%",
        b"%%%%",
        b"grant_type=%E2%82",
        b"grant_type=client_credentials&pad=" + b"a" * 9000,
        b"grant_type=client_credentials;scope=dns",
        b"grant_type=client_credentials&scope=%00",
        b"\x00\x01\x02",
    ]
    with httpx.Client(base_url=live_sqlite.base_url, timeout=10) as c:
        for path in ("/login", "/introspect", "/revoke"):
            for body in bodies:
                for ctype in ("application/x-www-form-urlencoded", "application/json", None):
                    headers = {"Content-Type": ctype} if ctype else {}
                    r = c.post(path, content=body, headers=headers, auth=(key_id, secret))
                    assert 400 <= r.status_code < 500, (path, body, ctype, r.status_code)
                    assert "error" in r.json()
