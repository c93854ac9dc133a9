"""Starlette: request.user/request.auth with `requires`, and `require_api` per route."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from bearerguard import BearerGuardMiddleware, StoreBackend
from bearerguard.starlette import identity_of, require_api
from bearerguard.stores import MemoryStore
from helpers import issue
from integration_support import assert_challenge, bearer


@requires("dns")
async def dns_by_starlette(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.display_name, "scopes": request.auth.scopes})


@require_api("dns")
async def zones(request: Request) -> JSONResponse:
    identity = identity_of(request)
    assert identity is not None
    return JSONResponse({"key_id": identity.key_id, "ip": identity.client_ip})


@require_api("vps")
def servers_sync(request: Request) -> JSONResponse:
    return JSONResponse({"servers": ["web-1"], "user": request.user.display_name})


class Backups(HTTPEndpoint):
    @require_api("backup")
    async def get(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("backups")


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "authenticated": request.user.is_authenticated})


@require_api("dns")
async def open_dns(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ran")


@require_api("dns")
async def ws_dns(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.user.display_name)
    await websocket.close()


def make_app(store: MemoryStore, **options: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/health", health),
            Route("/starlette/dns", dns_by_starlette),
            Route("/dns/zones", zones),
            Route("/vps/servers", servers_sync),
            Route("/backups", Backups),
            Route("/open/dns", open_dns),
            WebSocketRoute("/ws/dns", ws_dns),
        ],
        middleware=[
            Middleware(
                BearerGuardMiddleware,
                backend=StoreBackend(store),
                public_paths=["/health", "/open/*"],
                **options,
            )
        ],
    )


def run(app: Starlette, check: Callable[[httpx.AsyncClient], Coroutine[Any, Any, None]]) -> None:
    async def go() -> None:
        t = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
        async with httpx.AsyncClient(transport=t, base_url="http://star") as c:
            await check(c)

    asyncio.run(go())


def test_starlette_requires_works_with_request_user_and_auth(store: MemoryStore) -> None:
    dns = issue(store, ("dns", "vps"))
    vps = issue(store, ("vps",))

    async def check(c: httpx.AsyncClient) -> None:
        r = await c.get("/starlette/dns", headers=bearer(dns.token))
        assert r.status_code == 200
        assert r.json() == {"user": dns.key_id, "scopes": ["dns", "vps"]}
        r = await c.get("/starlette/dns", headers=bearer(vps.token))
        assert r.status_code == 403  # Starlette's own refusal
        r = await c.get("/health")
        assert r.json() == {"status": "ok", "authenticated": False}

    run(make_app(store), check)


def test_require_api_allows_and_refuses_with_the_challenge(store: MemoryStore) -> None:
    dns = issue(store, ("dns",))
    vps = issue(store, ("vps",))

    async def check(c: httpx.AsyncClient) -> None:
        r = await c.get("/dns/zones", headers=bearer(dns.token))
        assert r.status_code == 200
        assert r.json() == {"key_id": dns.key_id, "ip": "127.0.0.1"}
        r = await c.get("/dns/zones", headers=bearer(vps.token))
        assert_challenge(r, 403, "insufficient_scope", scope="dns", realm="star")
        # a sync endpoint runs (in the thread pool) only with the API
        r = await c.get("/vps/servers", headers=bearer(vps.token))
        assert r.json() == {"servers": ["web-1"], "user": vps.key_id}
        r = await c.get("/vps/servers", headers=bearer(dns.token))
        assert_challenge(r, 403, "insufficient_scope", scope="vps", realm="star")
        # a method of a class-based endpoint
        r = await c.get("/backups", headers=bearer(dns.token))
        assert_challenge(r, 403, "insufficient_scope", scope="backup", realm="star")
        # the middleware's own refusals are unchanged
        assert_challenge(await c.get("/dns/zones"), 401, None, realm="star")
        r = await c.get("/dns/zones", headers=bearer("nope"))
        assert_challenge(r, 401, "invalid_token", realm="star")
        # a per-route API on a public path: no identity, the endpoint must not run
        assert_challenge(await c.get("/open/dns"), 401, None, realm="star")

    run(make_app(store, realm="star"), check)


def test_per_route_refusals_are_rendered_as_the_middleware_renders_them(
    store: MemoryStore,
) -> None:
    """Issue 13 item 9: one renderer; a per-route 401 names the RFC 9728 metadata too."""
    vps = issue(store, ("vps",))
    meta = {"resource": "http://star/", "authorization_servers": ["http://auth"]}

    async def check(c: httpx.AsyncClient) -> None:
        by_middleware = await c.get("/dns/zones")
        per_route = await c.get("/open/dns")
        assert per_route.status_code == by_middleware.status_code == 401
        for name in ("www-authenticate", "cache-control", "content-type"):
            assert per_route.headers[name] == by_middleware.headers[name], name
        assert "resource_metadata=" in per_route.headers["www-authenticate"]
        assert per_route.content == by_middleware.content
        # a 403 names the API, never the metadata (RFC 9728 §5.1 is for 401s)
        r = await c.get("/dns/zones", headers=bearer(vps.token))
        assert "resource_metadata" not in r.headers["www-authenticate"]
        assert_challenge(r, 403, "insufficient_scope", scope="dns", realm="api")

    run(make_app(store, resource_metadata=meta), check)


def test_require_api_when_the_middleware_wraps_from_outside(store: MemoryStore) -> None:
    # The guard is not in the Starlette app's stack: the default realm is used.
    inner = Starlette(routes=[Route("/dns/zones", zones)])
    app = BearerGuardMiddleware(inner, backend=StoreBackend(store))
    vps = issue(store, ("vps",))
    dns = issue(store, ("dns",))

    async def go() -> None:
        t = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
        async with httpx.AsyncClient(transport=t, base_url="http://star") as c:
            r = await c.get("/dns/zones", headers=bearer(vps.token))
            assert_challenge(r, 403, "insufficient_scope", scope="dns", realm="api")
            assert (await c.get("/dns/zones", headers=bearer(dns.token))).status_code == 200

    asyncio.run(go())


def test_websocket_require_api(store: MemoryStore) -> None:
    dns = issue(store, ("dns",))
    vps = issue(store, ("vps",))
    app = make_app(store)
    with TestClient(app, client=("127.0.0.1", 4321)) as tc:
        with tc.websocket_connect("/ws/dns", headers=bearer(dns.token)) as ws:
            assert ws.receive_text() == dns.key_id
        # TestClient supports the Denial Response extension: the refusal is the 403
        # challenge, before accept.
        from starlette.testclient import WebSocketDenialResponse

        with pytest.raises(WebSocketDenialResponse) as info:
            with tc.websocket_connect("/ws/dns", headers=bearer(vps.token)):
                pass  # pragma: no cover
        denial = info.value
        assert denial.status_code == 403
        assert 'scope="dns"' in denial.headers["www-authenticate"]
        assert denial.json()["error"] == "insufficient_scope"


def test_websocket_refused_with_close_without_denial_extension(store: MemoryStore) -> None:
    vps = issue(store, ("vps",))
    app = make_app(store)
    sent: list[dict[str, Any]] = []

    async def go() -> None:
        scope = {
            "type": "websocket",
            "path": "/ws/dns",
            "raw_path": b"/ws/dns",
            "root_path": "",
            "scheme": "ws",
            "query_string": b"",
            "headers": [(b"authorization", f"Bearer {vps.token}".encode())],
            "client": ("127.0.0.1", 4321),
            "server": ("127.0.0.1", 80),
            "subprotocols": [],
            "extensions": {},
        }
        messages = [{"type": "websocket.connect"}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "websocket.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(go())
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "insufficient_scope"}]


def test_websocket_without_token_is_refused_before_accept(store: MemoryStore) -> None:
    app = make_app(store)
    with TestClient(app, client=("127.0.0.1", 4321)) as tc:
        from starlette.testclient import WebSocketDenialResponse

        with pytest.raises((WebSocketDenialResponse, WebSocketDisconnect)):
            with tc.websocket_connect("/ws/dns"):
                pass  # pragma: no cover


def test_bad_api_name_fails_at_decoration() -> None:
    with pytest.raises(ValueError):
        require_api("bad\napi")
