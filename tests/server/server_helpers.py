"""In-process drivers for the auth service tests (imported by tests/server modules)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
from starlette.types import ASGIApp

from bearerguard.server import LoginThrottle, create_app
from bearerguard.stores import MemoryStore
from helpers import FakeClock, remember_secret


def basic(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value, without any percent-encoding."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_error(r: httpx.Response, status: int, error: str) -> dict[str, str]:
    """Check an RFC 6749 §5.2 error response; return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, str] = r.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str) and body["error_description"]
    return body


class InProcess:
    """The auth service app driven in this thread through httpx's ASGITransport.

    `peer` sets the client address the app sees. Sync calls, one private event loop.
    """

    def __init__(self, app: ASGIApp, peer: str = "127.0.0.1") -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.peer = peer

    def client(self, peer: str) -> httpx.AsyncClient:
        if peer not in self.clients:
            transport = httpx.ASGITransport(app=self.app, client=(peer, 40000))
            self.clients[peer] = httpx.AsyncClient(transport=transport, base_url="http://auth")
        return self.clients[peer]

    def request(
        self, method: str, path: str, *, peer: str | None = None, **kw: Any
    ) -> httpx.Response:
        client = self.client(peer or self.peer)
        return self.loop.run_until_complete(client.request(method, path, **kw))

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def login(self, key_id: str, secret: str, **kw: Any) -> httpx.Response:
        kw.setdefault("data", {"grant_type": "client_credentials"})
        return self.post("/login", auth=(key_id, secret), **kw)

    def token(self, key_id: str, secret: str, **kw: Any) -> str:
        r = self.login(key_id, secret, **kw)
        assert r.status_code == 200, r.text
        return remember_secret(r.json()["access_token"])

    def close(self) -> None:
        for c in self.clients.values():
            self.loop.run_until_complete(c.aclose())
        self.loop.close()


class Service:
    """A memory store, a fake wall clock, a fake throttle clock and the app over them."""

    def __init__(self, *, token_ttl: float = 300, **options: Any) -> None:
        self.store = MemoryStore()
        self.clock = FakeClock()
        self.throttle_clock = FakeClock(now=1000.0)
        self.throttle = LoginThrottle(clock=self.throttle_clock)
        self.app = create_app(
            self.store,
            token_ttl=token_ttl,
            clock=self.clock,
            login_throttle=self.throttle,
            **options,
        )
        self.http = InProcess(self.app)

    def key(self, apis: tuple[str, ...] = ("dns",), introspect: bool = False) -> tuple[str, str]:
        record, secret = self.store.create_key(apis, introspect=introspect, now=self.clock())
        return record.key_id, remember_secret(secret)


def scrape(base_url: str) -> dict[str, float]:
    text = httpx.get(base_url + "/metrics", timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
