"""Hostile input: fuzzing, oversized and slow requests, token spray, spoofing, brute force."""

from __future__ import annotations

import ast
import asyncio
import base64
import hmac
import logging
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import (
    bearer,
    client_from,
    login,
    record,
    rss_kib,
    scaled,
    token_for,
)
from starlette.testclient import TestClient

import bearerguard.stores.base as store_base
from bearerguard import BearerGuardMiddleware
from bearerguard.backends.store import StoreBackend
from bearerguard.credentials import MalformedCredentials, extract_token
from bearerguard.server import create_app
from bearerguard.stores import MemoryStore, open_store
from bearerguard.tokens import TokenInfo
from helpers import issue, remember_secret
from integration_support import ExampleServer, gunicorn_example, uvicorn_example
from live_service import LiveService

SRC = Path(__file__).resolve().parents[2] / "src" / "bearerguard"
FUZZ = settings(
    max_examples=scaled(300, 5000),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
header_text = st.text(
    alphabet=st.one_of(st.sampled_from(_B64 + " \t,;:\"'%&"), st.characters(max_codepoint=255)),
    max_size=80,
)


# -- 1. the credential parser ---------------------------------------------------------
@FUZZ
@given(
    auth=st.lists(st.one_of(header_text, header_text.map(lambda t: "Bearer " + t)), max_size=3),
    query=st.lists(header_text, max_size=2),
)
def test_fuzz_credential_parser(auth: list[str], query: list[str]) -> None:
    try:
        token = extract_token(auth, query, max_length=64)
    except MalformedCredentials:
        return
    if token is not None:
        assert 0 < len(token) <= 64
        assert len(auth) + len(query) == 1
        assert token.strip() == token


def test_fuzz_credentials_through_middleware() -> None:
    """Raw header bytes (anything h11 could pass on) never raise, never allow a stranger."""
    store = MemoryStore()
    good = issue(store)
    app_calls: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        app_calls.append(scope["bearerguard"].key_id)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = BearerGuardMiddleware(app, backend=StoreBackend(store), api="dns")
    tried = 0
    wrong: list[tuple[list[tuple[bytes, bytes]], int]] = []  # (headers, status) not right
    exceptions: list[str] = []

    async def one(headers: list[tuple[bytes, bytes]]) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        scope = {
            "type": "http",
            "path": "/x",
            "method": "GET",
            "headers": headers,
            "query_string": b"",
            "client": ("127.0.0.1", 5000),
        }
        await mw(scope, receive, send)
        status: int = sent[0]["status"]
        return status

    raw_value = st.binary(max_size=100).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    values = st.one_of(raw_value, raw_value.map(lambda b: b"Bearer " + b))

    @FUZZ
    @given(
        st.lists(
            st.tuples(st.sampled_from([b"authorization", b"x-forwarded-for"]), values), max_size=3
        )
    )
    def check(headers: list[tuple[bytes, bytes]]) -> None:
        # Counted, not raised, so the figures are what the run saw.
        nonlocal tried
        tried += 1
        before = len(app_calls)
        try:
            status = asyncio.run(one(headers))
        except Exception as exc:
            exceptions.append(repr(exc))
            return
        auths = [v for k, v in headers if k == b"authorization"]
        let_in = len(app_calls) - before
        ok = status in (400, 401) and let_in == 0
        ok = ok or (
            status == 200 and let_in == 1 and bool(auths) and good.token.encode() in auths[0]
        )
        if not ok:
            wrong.append((headers, status))

    try:
        check()
        # The right token still works after all that.
        assert asyncio.run(one([(b"authorization", f"Bearer {good.token}".encode())])) == 200
    finally:
        mw.close()
        store.close()
    record("hostile.fuzz_credentials", inputs=tried, wrong=len(wrong), exceptions=len(exceptions))
    assert tried >= FUZZ.max_examples
    assert not wrong, wrong[:5]
    assert not exceptions, exceptions[:5]


# -- 2. /login, /introspect, /revoke form and Basic parsing ---------------------------
def test_fuzz_login_form_and_basic() -> None:
    store = MemoryStore()
    key, secret = store.create_key(["dns", "vps"], introspect=True)
    remember_secret(secret)
    tried = 0
    statuses: dict[int, int] = {}
    wrong: list[tuple[str, int, str]] = []
    form_text = st.text(
        alphabet=st.one_of(
            st.sampled_from("=&+%;_ abcdefgrantypclieus0123456789"), st.characters()
        ),
        max_size=120,
    )
    good_pairs = st.sampled_from(
        [
            "grant_type=client_credentials",
            f"grant_type=client_credentials&client_id={key.key_id}&client_secret={secret}",
            "grant_type=client_credentials&scope=dns",
            "grant_type=password",
            "token=abc",
        ]
    )
    bodies = st.one_of(
        st.binary(max_size=200),
        form_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.tuples(good_pairs, form_text).map(
            lambda p: (p[0] + "&" + p[1]).encode("utf-8", "surrogatepass")
        ),
    )
    ctypes = st.one_of(
        st.sampled_from(
            [
                "application/x-www-form-urlencoded",
                "application/x-www-form-urlencoded; charset=utf-8",
                "application/x-www-form-urlencoded; charset=latin-1",
                "multipart/form-data; boundary=x",
                "application/json",
                "",
            ]
        ),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    )
    basic_user = st.one_of(st.just(key.key_id), st.text(max_size=30))
    basic_pass = st.one_of(st.just(secret), st.text(max_size=30))
    basics = st.one_of(
        st.none(),
        st.tuples(basic_user, basic_pass).map(
            lambda up: (
                b"Basic " + base64.b64encode(f"{up[0]}:{up[1]}".encode("utf-8", "surrogatepass"))
            )
        ),
        st.binary(max_size=60).map(lambda b: b"Basic " + b.replace(b"\r", b"").replace(b"\n", b"")),
        st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    )
    with TestClient(
        create_app(store), raise_server_exceptions=True, client=("127.0.0.1", 50000)
    ) as client:

        @FUZZ
        @given(
            path=st.sampled_from(["/login", "/introspect", "/revoke"]),
            body=bodies,
            ctype=ctypes,
            auth=basics,
        )
        def check(path: str, body: bytes, ctype: str, auth: bytes | None) -> None:
            nonlocal tried
            tried += 1
            headers: dict[str, Any] = {"content-type": ctype.encode("latin-1")}
            if auth is not None:
                headers["authorization"] = auth
            r = client.post(path, content=body, headers=headers)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            # Counted, not raised, so the figures are what the run saw.
            known = r.status_code in (200, 400, 401, 413, 415, 429)
            if not known or (r.status_code != 200 and not r.json().get("error")):
                wrong.append((path, r.status_code, r.text[:80]))
            if r.status_code == 200 and path == "/login":
                remember_secret(r.json()["access_token"])

        check()
    answered_5xx = sum(n for status, n in statuses.items() if status >= 500)
    record(
        "hostile.fuzz_login_forms",
        inputs=tried,
        statuses=statuses,
        wrong=len(wrong),
        answered_5xx=answered_5xx,
    )
    assert tried >= FUZZ.max_examples
    assert answered_5xx == 0, statuses
    assert not wrong, wrong[:5]


# -- 3. size limits and slow clients on real servers ----------------------------------
def _raw(port: int, head: bytes, body: bytes = b"", timeout: float = 20.0) -> str:
    """Send a raw request; return the status line ("" if the server just closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(head)
            for i in range(0, len(body), 1 << 16):
                s.sendall(body[i : i + (1 << 16)])
        except OSError:
            pass  # the server answered early and closed: read what it said
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def _status(line: str) -> int:
    return int(line.split()[1]) if line.startswith("HTTP/1.1 ") else 0


BIG_HEADER = b"X-Pad: " + b"a" * 100_000 + b"\r\n"
# (server, POST?, what) -> the status docs/reliability.md reports for it.
SIZE_ANSWERS = {
    # bearerguard serve: its own limits on the POST endpoints (16 KiB of headers,
    # 8 KiB bodies refused before they are read); GET endpoints ignore a body.
    ("serve", True, "100KB header"): 431,
    ("serve", True, "10MB body"): 413,
    ("serve", True, "10MB chunked"): 413,
    ("serve", False, "100KB header"): 200,
    ("serve", False, "10MB body"): 200,
    ("serve", False, "10MB chunked"): 200,
    # uvicorn/h11 takes a 100 KB head that arrives in one read; the app never reads
    # the body.
    ("uvicorn-starlette", False, "100KB header"): 200,
    ("uvicorn-starlette", False, "10MB body"): 200,
    ("uvicorn-starlette", False, "10MB chunked"): 200,
    # gunicorn: limit_request_field_size 8190.
    ("gunicorn-flask", False, "100KB header"): 431,
    ("gunicorn-flask", False, "10MB body"): 200,
    ("gunicorn-flask", False, "10MB chunked"): 200,
}
TEN_MB = 10 * 1024 * 1024


def test_size_limits_every_endpoint() -> None:
    """100 KB header and 10 MB body on every endpoint of the service and both examples."""
    answers: dict[str, str] = {}
    wrong: list[tuple[str, str, str, str, str, int]] = []
    with LiveService() as svc:
        key_id, secret = svc.create_key(["dns"])
        token = token_for(svc.base_url, key_id, secret)
        env = {"BEARERGUARD_STORE": svc.store_url}
        servers: list[tuple[str, ExampleServer | None, int, list[tuple[str, str]]]] = [
            (
                "serve",
                None,
                svc.port,
                [
                    ("POST", "/login"),
                    ("POST", "/introspect"),
                    ("POST", "/revoke"),
                    ("GET", "/.well-known/oauth-authorization-server"),
                    ("GET", "/health"),
                ],
            ),
        ]
        uv = uvicorn_example(env)
        gu = gunicorn_example(env)
        routes = [("GET", "/health"), ("GET", "/whoami"), ("GET", "/dns/zones")]
        servers += [
            ("uvicorn-starlette", uv, uv.port, routes),
            ("gunicorn-flask", gu, gu.port, routes),
        ]
        try:
            for name, _srv, port, endpoints in servers:
                for method, path in endpoints:
                    base = (
                        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: Bearer {token}\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n"
                    ).encode()
                    hdr = _raw(port, base + BIG_HEADER + b"Connection: close\r\n\r\n")
                    body = _raw(
                        port,
                        base + f"Content-Length: {TEN_MB}\r\nConnection: close\r\n\r\n".encode(),
                        b"a" * TEN_MB,
                    )
                    chunked = _raw(
                        port,
                        base + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                        (b"10000\r\n" + b"a" * 65536 + b"\r\n") * 160 + b"0\r\n\r\n",
                    )
                    for what, line in (
                        ("100KB header", hdr),
                        ("10MB body", body),
                        ("10MB chunked", chunked),
                    ):
                        answers[f"{name} {method} {path} {what}"] = line or "(closed)"
                        expected = SIZE_ANSWERS[(name, method == "POST", what)]
                        if _status(line) != expected:
                            wrong.append((name, method, path, what, line, expected))
                    # Still serving everyone else.
                    with client_from() as c:
                        assert c.get(f"http://127.0.0.1:{port}/health").status_code == 200
        finally:
            uv.stop()
            gu.stop()
    answered_5xx = sum(1 for line in answers.values() if _status(line) >= 500)
    record(
        "hostile.size_limits",
        inputs=len(answers),
        answers=answers,
        answered_5xx=answered_5xx,
        wrong=len(wrong),
    )
    assert answered_5xx == 0, answers
    assert not wrong, wrong


def _fate(s: socket.socket) -> str:
    """ "open" (nothing to read yet), "answered" (bytes came back) or "closed" (EOF/reset)."""
    s.setblocking(False)
    try:
        data = s.recv(1)
    except BlockingIOError:
        return "open"
    except OSError:
        return "closed"
    return "answered" if data else "closed"


def _slow(port: int, head: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head)
    return s


@pytest.mark.parametrize("target", ["serve", "uvicorn-starlette"])
def test_slow_clients_do_not_starve_others(target: str) -> None:
    """Slow headers and slow bodies hold sockets, not workers: others are still served."""
    n = scaled(100, 400)
    with LiveService() as svc:
        key_id, secret = svc.create_key(["dns"])
        token = token_for(svc.base_url, key_id, secret)
        app = (
            uvicorn_example({"BEARERGUARD_STORE": svc.store_url})
            if target == "uvicorn-starlette"
            else None
        )
        port = app.port if app is not None else svc.port
        base = f"http://127.0.0.1:{port}"
        path = "/login" if app is None else "/dns/zones"
        slow: list[socket.socket] = []
        try:
            for i in range(n):
                if i % 2:
                    head = (
                        f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode()
                    )  # header never ends
                else:
                    head = (
                        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type="
                    ).encode()  # body never ends
                slow.append(_slow(port, head))
            served = 0
            started = time.monotonic()
            with client_from(timeout=10) as c:
                for _ in range(scaled(20, 200)):
                    r = (
                        c.get(base + "/dns/zones", headers=bearer(token))
                        if app
                        else c.get(base + "/health")
                    )
                    assert r.status_code == 200
                    served += 1
                    for s in slow[:10]:
                        s.sendall(b"a")  # keep trickling
            took = time.monotonic() - started
            # What became of each slow connection: still open and unanswered (recv would
            # block), answered (bytes arrived), or closed by the server (EOF or reset).
            fates = [_fate(s) for s in slow]
            fate = {what: fates.count(what) for what in ("open", "answered", "closed")}
        finally:
            for s in slow:
                s.close()
            if app is not None:
                app.stop()
    record(
        f"hostile.slow_clients.{target}",
        slow_connections=n,
        others_served=served,
        others_seconds=round(took, 2),
        slow_still_open=fate["open"],
        slow_answered=fate["answered"],
        slow_closed_by_server=fate["closed"],
    )
    assert sum(fate.values()) == n
    # uvicorn (under both) has no timeout for reading a request head: every client whose
    # head never ends is still connected and unanswered (docs/reliability.md).
    slow_heads = [fates[i] for i in range(1, n, 2)]
    assert slow_heads == ["open"] * len(slow_heads), fate


# -- 4. token spray against the cached middleware -------------------------------------
class _CountingBackend:
    """A real StoreBackend, counting calls and how many run at once (1 ms each)."""

    def __init__(self, inner: StoreBackend) -> None:
        self.inner = inner
        self.calls = 0
        self.valid_calls = 0
        self.running = 0
        self.peak = 0
        self.valid = ""

    async def alookup(self, token: str) -> TokenInfo | None:
        self.calls += 1
        self.valid_calls += token == self.valid
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.001)
            return await self.inner.alookup(token)
        finally:
            self.running -= 1


def test_token_spray_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # One log line per refusal is the documented behaviour; here the test harness would
    # keep every record in memory (pytest's capture), so the middleware's own memory is
    # measured with its logger quiet. The line count is reported instead.
    quiet = logging.getLogger("bearerguard")
    monkeypatch.setattr(quiet, "propagate", False)
    monkeypatch.setattr(quiet, "level", logging.CRITICAL)
    store = MemoryStore()
    # The holder of the valid token is another client than the sprayer: lookup slots
    # are shared fairly between addresses (docs/design.md H2), not within one.
    holder = "127.0.0.2"
    good = issue(store, ip=holder)
    backend = _CountingBackend(StoreBackend(store))
    backend.valid = good.token
    sent_to_app: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        sent_to_app.append(scope["bearerguard"].key_id)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    max_in_flight = 16
    neg_max = 10_000
    # The valid token's cache entry neither expires nor asks for a refresh during the run
    # (cache TTL and touch interval of an hour): how fast this machine gets through the
    # spray must not decide the outcome. Whether a refresh or a re-lookup due during a
    # spray waits behind it is docs/design.md H2, tested on its own.
    mw = BearerGuardMiddleware(
        app,
        backend=backend,
        max_in_flight=max_in_flight,
        negative_cache_maxsize=neg_max,
        touch_interval=3600,
        cache_ttl=3600,
    )
    total = scaled(100_000, 1_000_000)
    concurrency = 64
    statuses: dict[int, int] = {}
    valid_statuses: dict[int, int] = {}

    async def request(token: str, client: str = "127.0.0.1") -> int:
        sent: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                sent.append(msg["status"])

        scope = {
            "type": "http",
            "path": "/dns/zones",
            "headers": [(b"authorization", f"Bearer {token}".encode())],
            "query_string": b"",
            "client": (client, 1234),
        }
        await mw(scope, receive, send)
        return sent[0]

    async def sprayer(n: int) -> None:
        for i in range(n):
            s = await request(secrets.token_urlsafe(32))
            statuses[s] = statuses.get(s, 0) + 1
            if i % 50 == 0:
                v = await request(good.token, holder)
                valid_statuses[v] = valid_statuses.get(v, 0) + 1

    async def main() -> float:
        assert await request(good.token, holder) == 200  # cached from here on
        started = time.monotonic()
        await asyncio.gather(*(sprayer(total // concurrency) for _ in range(concurrency)))
        return time.monotonic() - started

    rss_before, _ = rss_kib()
    try:
        elapsed = asyncio.run(main())
    finally:
        mw.close()
        store.close()
    rss_after, peak = rss_kib()
    sprayed = sum(statuses.values())
    wrong = sum(n for s, n in statuses.items() if s not in (401, 503))
    wrong += sum(n for s, n in valid_statuses.items() if s != 200)
    assert set(statuses) <= {401, 503}, statuses  # never let in
    assert valid_statuses == {200: sum(valid_statuses.values())}, valid_statuses
    assert sent_to_app.count(good.key_id) == len(sent_to_app)
    assert backend.peak <= max_in_flight
    assert mw.guard.cache.negative_size <= neg_max
    assert len(mw.guard.cache) == 1  # the valid token, never evicted by the spray
    # Answered from the cache: the valid token reached the backend once, on first use.
    assert backend.valid_calls == 1, backend.valid_calls
    # Bounded memory: caches are capped, so the spray must not grow the process by
    # anything like its size (100,000 tokens are ~4.5 MB of text alone).
    assert rss_after - rss_before < 100 * 1024, (rss_before, rss_after)
    record(
        "hostile.token_spray",
        requests=sprayed + sum(valid_statuses.values()),
        random_tokens=sprayed,
        statuses=statuses,
        seconds=round(elapsed, 2),
        backend_calls=backend.calls,
        backend_calls_per_s=round(backend.calls / elapsed),
        peak_backend_in_flight=backend.peak,
        max_in_flight=max_in_flight,
        valid_token_backend_calls=backend.valid_calls,
        negative_cache_entries=mw.guard.cache.negative_size,
        rss_growth_mib=round((rss_after - rss_before) / 1024, 1),
        peak_rss_mib=round(peak / 1024, 1),
        wrong=wrong,
    )


# -- 5. IP spoofing through real servers ----------------------------------------------
PROXY = "127.0.0.3"


@pytest.mark.parametrize("server", ["uvicorn-starlette", "gunicorn-flask"])
def test_ip_spoofing(server: str) -> None:
    """X-Forwarded-For / Forwarded move the client address only from a trusted proxy."""
    with LiveService(extra_args=["--trusted-proxy", PROXY]) as svc:
        key_id, secret = svc.create_key(["dns"])
        local = token_for(svc.base_url, key_id, secret)  # bound to 127.0.0.1
        # Untrusted peer 127.0.0.2 claims to be 127.0.0.1: bound to 127.0.0.2 anyway.
        r = login(
            svc.base_url,
            key_id,
            secret,
            source="127.0.0.2",
            headers={"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"},
        )
        spoofer = r.json()["access_token"]
        # Through the trusted proxy, for client 10.9.8.7 (a forged entry on the left).
        r = login(
            svc.base_url,
            key_id,
            secret,
            source=PROXY,
            headers={"X-Forwarded-For": "127.0.0.1, 10.9.8.7"},
        )
        proxied = r.json()["access_token"]
        make = uvicorn_example if server == "uvicorn-starlette" else gunicorn_example
        app = make({"BEARERGUARD_STORE": svc.store_url, "BEARERGUARD_TRUSTED_PROXIES": PROXY})
        cases = [
            # (token, source, headers, expected)
            (local, "127.0.0.1", {}, 200),
            (local, "127.0.0.2", {"X-Forwarded-For": "127.0.0.1"}, 401),
            (local, "127.0.0.2", {"Forwarded": "for=127.0.0.1"}, 401),
            (local, "127.0.0.2", {"X-Real-IP": "127.0.0.1"}, 401),
            (spoofer, "127.0.0.1", {}, 401),
            (spoofer, "127.0.0.2", {}, 200),
            (spoofer, "127.0.0.2", {"X-Forwarded-For": "127.0.0.1"}, 200),
            (proxied, PROXY, {"X-Forwarded-For": "10.9.8.7"}, 200),
            (proxied, PROXY, {"X-Forwarded-For": "127.0.0.1, 10.9.8.7"}, 200),
            (proxied, PROXY, {"X-Forwarded-For": "10.9.8.7, 6.6.6.6"}, 401),  # only the last hop
            (proxied, PROXY, {"Forwarded": "for=10.9.8.7"}, 401),  # Forwarded is not read
            (proxied, PROXY, {}, 401),
            (proxied, "127.0.0.1", {"X-Forwarded-For": "10.9.8.7"}, 401),  # untrusted peer
            (proxied, "127.0.0.2", {"X-Forwarded-For": "10.9.8.7"}, 401),
        ]
        wrong: list[tuple[str, dict[str, str], int, int]] = []
        try:
            for token, source, headers, expected in cases:
                with client_from(source) as c:
                    got = c.get(app.base_url + "/dns/zones", headers={**bearer(token), **headers})
                if got.status_code != expected:
                    wrong.append((source, headers, expected, got.status_code))
        finally:
            app.stop()
    record(f"hostile.ip_spoofing.{server}", inputs=len(cases), wrong=len(wrong))
    assert not wrong, wrong


# -- 6. brute force on /login ---------------------------------------------------------
def _secret_checks(base_url: str) -> int:
    """``bearerguard_service_secret_checks_total`` from the service's /metrics."""
    with client_from() as c:
        for line in c.get(base_url + "/metrics").text.splitlines():
            if line.startswith("bearerguard_service_secret_checks_total "):
                return int(float(line.split()[1]))
    raise AssertionError("no secret_checks counter in /metrics")


def test_login_brute_force_slowdown() -> None:
    """Wrong guesses: 5 per key id within 60 s, then 429 + Retry-After. The right secret
    is checked on every attempt (counted at /metrics) and always gets in (docs/design.md H3)."""
    attempts = scaled(40, 400)
    with LiveService() as svc:
        key_id, secret = svc.create_key(["dns"])
        other_id, other_secret = svc.create_key(["dns"])
        statuses: list[int] = []
        owner: list[int] = []
        before = _secret_checks(svc.base_url)
        with client_from("127.0.0.3") as bad, client_from("127.0.0.2") as good:
            for i in range(attempts):
                r = bad.post(
                    svc.base_url + "/login",
                    data={"grant_type": "client_credentials"},
                    auth=(key_id, remember_secret(secrets.token_urlsafe(32)) if i else "x"),
                )
                statuses.append(r.status_code)
                if r.status_code == 429:
                    assert 1 <= int(r.headers["retry-after"]) <= 60
                    assert r.json()["error"] == "invalid_client"
                if i % 10 == 9:  # the owner, in the middle of the attack
                    r = good.post(
                        svc.base_url + "/login",
                        data={"grant_type": "client_credentials"},
                        auth=(key_id, secret),
                    )
                    owner.append(r.status_code)
                    if r.status_code == 200:
                        remember_secret(r.json()["access_token"])
        checked = _secret_checks(svc.base_url) - before
        assert statuses[:5] == [401] * 5
        assert statuses[5:] == [429] * (attempts - 5)  # the slowdown holds
        assert owner == [200] * (attempts // 10)  # no lockout
        assert checked == attempts + len(owner)  # throttled attempts were checked too
        # Another key is not affected.
        assert login(svc.base_url, other_id, other_secret).status_code == 200
    record(
        "hostile.login_brute_force",
        inputs=attempts + len(owner),
        wrong_guesses_429=attempts - 5,
        owner_logins_200=len(owner),
        secrets_checked=checked,
        wrong=0,
    )


# -- 7. constant-time comparisons -----------------------------------------------------
def test_secret_comparison_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((type(a).__name__, type(b).__name__))
        return real(a, b)

    monkeypatch.setattr(store_base.hmac, "compare_digest", spy)
    store = MemoryStore()
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    with TestClient(create_app(store), client=("127.0.0.1", 50000)) as client:
        for user, pw, want in (
            (key.key_id, secret, 200),
            (key.key_id, "wrong", 401),
            ("key_0", "x", 401),
        ):
            r = client.post("/login", data={"grant_type": "client_credentials"}, auth=(user, pw))
            assert r.status_code == want
            if want == 200:
                remember_secret(r.json()["access_token"])
    # Every check compares, the unknown key id too (against a dummy digest), and with
    # both secret slots (the current one and a rotated-out one), rotation or not. The
    # wrong secret of a key in the service's key cache is checked twice: against the
    # cached record, then against the store's (a secret rotated elsewhere).
    assert len(calls) == (3 + 1) * 2


def test_no_plain_equality_on_secrets_in_source() -> None:
    """Code review as a test: no ==/!= on a name that holds a secret, token or digest.

    Tokens are never compared at all: they are hashed and the digest is a dictionary
    or database key (the lookup reveals nothing an attacker could steer byte by byte).
    """
    suspicious: list[str] = []
    words = ("secret", "token", "digest", "password")
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) for o in operands):
                continue  # against a literal ("bearer", None, ""): not a secret compare
            names = [ast.unparse(o).lower() for o in operands]
            if any(w in n for n in names for w in words) and not any("len(" in n for n in names):
                suspicious.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert not suspicious, suspicious


def test_open_store_digest_only_check_is_timing_safe() -> None:
    """The store keeps only digests: comparing a digest leaks nothing about the secret."""
    store = open_store("memory://")
    try:
        key, secret = store.create_key(["dns"])
        remember_secret(secret)
        stored = store.get_key(key.key_id)
        assert stored is not None and secret not in repr(stored)
        assert stored.secret_digest == store_base.digest_secret(secret)
        assert store_base.verify_secret(stored, secret)
        assert not store_base.verify_secret(None, secret)
    finally:
        store.close()
