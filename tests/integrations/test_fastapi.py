"""FastAPI: the Identity dependency, per-route APIs, and the OpenAPI bearer scheme."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Security, WebSocket
from starlette.testclient import TestClient

from bearerguard import BearerGuardMiddleware, Identity, StoreBackend
from bearerguard.fastapi import (
    DOCS_PATHS,
    CurrentIdentity,
    add_challenge_handler,
    bearer_auth,
    require_api,
)
from bearerguard.stores import MemoryStore
from helpers import issue
from integration_support import assert_challenge, bearer


def make_app(store: MemoryStore | None, *, handler: bool = True) -> FastAPI:
    app = FastAPI()
    if store is not None:
        app.add_middleware(
            BearerGuardMiddleware,
            backend=StoreBackend(store),
            public_paths=["/health", *DOCS_PATHS],
            realm="fa",
        )
    if handler:
        add_challenge_handler(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/whoami")
    async def whoami(identity: CurrentIdentity) -> dict[str, Any]:
        return {"key_id": identity.key_id, "apis": sorted(identity.apis)}

    @app.get("/dns/zones")
    async def zones(
        identity: Annotated[Identity, Security(require_api("dns"))],
    ) -> dict[str, Any]:
        return {"zones": ["example.com"], "key_id": identity.key_id}

    @app.get("/vps/servers", dependencies=[Security(require_api("vps"))])
    def servers() -> dict[str, Any]:
        return {"servers": ["web-1"]}

    @app.get("/depends")
    async def depends(identity: Annotated[Identity, Depends(bearer_auth)]) -> dict[str, str]:
        return {"key_id": identity.key_id}

    @app.websocket("/ws")
    async def ws(
        websocket: WebSocket, identity: Annotated[Identity, Depends(require_api("dns"))]
    ) -> None:
        await websocket.accept()
        await websocket.send_text(identity.key_id)
        await websocket.close()

    return app


def run(app: FastAPI, check: Callable[[httpx.AsyncClient], Coroutine[Any, Any, None]]) -> None:
    async def go() -> None:
        t = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
        async with httpx.AsyncClient(transport=t, base_url="http://fa") as c:
            await check(c)

    asyncio.run(go())


def test_identity_dependency_and_per_route_apis(store: MemoryStore) -> None:
    dns = issue(store, ("dns",))
    vps = issue(store, ("vps",))

    async def check(c: httpx.AsyncClient) -> None:
        r = await c.get("/whoami", headers=bearer(dns.token))
        assert r.json() == {"key_id": dns.key_id, "apis": ["dns"]}
        r = await c.get("/depends", headers=bearer(vps.token))
        assert r.json() == {"key_id": vps.key_id}
        r = await c.get("/dns/zones", headers=bearer(dns.token))
        assert r.json() == {"zones": ["example.com"], "key_id": dns.key_id}
        assert (await c.get("/vps/servers", headers=bearer(vps.token))).status_code == 200
        for path, api, refused in [("/dns/zones", "dns", vps), ("/vps/servers", "vps", dns)]:
            r = await c.get(path, headers=bearer(refused.token))
            assert_challenge(r, 403, "insufficient_scope", scope=api, realm="fa")
        assert_challenge(await c.get("/whoami"), 401, None, realm="fa")
        assert_challenge(
            await c.get("/whoami", headers=bearer("nope")), 401, "invalid_token", realm="fa"
        )
        assert (await c.get("/health")).json() == {"status": "ok"}

    run(make_app(store), check)


def test_without_handler_status_and_challenge_are_still_right(store: MemoryStore) -> None:
    vps = issue(store, ("vps",))

    async def check(c: httpx.AsyncClient) -> None:
        r = await c.get("/dns/zones", headers=bearer(vps.token))
        assert r.status_code == 403
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        assert 'scope="dns"' in r.headers["www-authenticate"]
        assert r.json()["detail"]["error"] == "insufficient_scope"

    run(make_app(store, handler=False), check)


def test_without_middleware_every_protected_route_is_401(store: MemoryStore) -> None:
    tok = issue(store, ("dns",))

    async def check(c: httpx.AsyncClient) -> None:
        # The dependency does not check tokens itself: fail closed.
        r = await c.get("/whoami", headers=bearer(tok.token))
        assert_challenge(r, 401, None)
        assert (await c.get("/health")).status_code == 200

    run(make_app(None), check)


def test_openapi_has_the_bearer_scheme_on_protected_routes(store: MemoryStore) -> None:
    async def check(c: httpx.AsyncClient) -> None:
        r = await c.get("/openapi.json")  # public: listed in DOCS_PATHS
        assert r.status_code == 200
        doc = r.json()
        schemes = doc["components"]["securitySchemes"]
        assert schemes == {
            "BearerGuard": {
                "type": "http",
                "scheme": "bearer",
                "description": schemes["BearerGuard"]["description"],
            }
        }
        paths = doc["paths"]
        for path in ("/whoami", "/dns/zones", "/vps/servers", "/depends"):
            assert {"BearerGuard": []} in paths[path]["get"]["security"], path
        assert "security" not in paths["/health"]["get"]
        docs = await c.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()

    run(make_app(store), check)


def test_websocket_dependency(store: MemoryStore) -> None:
    dns = issue(store, ("dns",))
    vps = issue(store, ("vps",))
    with TestClient(make_app(store), client=("127.0.0.1", 4321)) as tc:
        with tc.websocket_connect("/ws", headers=bearer(dns.token)) as ws:
            assert ws.receive_text() == dns.key_id
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect) as info:
            with tc.websocket_connect("/ws", headers=bearer(vps.token)) as ws:
                ws.receive_text()
        assert info.value.code == 1008


def test_bad_api_name_fails_at_definition() -> None:
    with pytest.raises(ValueError):
        require_api("x\ny")
