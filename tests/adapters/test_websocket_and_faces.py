"""WebSockets are checked before accept; lifespan passes; one-faced custom backends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from bearerguard import (
    BearerGuardMiddleware,
    Challenge,
    ConfigurationError,
    StoreBackend,
    TokenInfo,
    WSGIBearerGuard,
)
from bearerguard.stores import MemoryStore
from helpers import issue


def ws_app(accepted: list[str]) -> Starlette:
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        accepted.append(websocket.scope["bearerguard"].key_id)
        await websocket.send_text(websocket.scope["bearerguard"].key_id)
        await websocket.close()

    return Starlette(routes=[WebSocketRoute("/ws", ws)])


def test_websocket_with_valid_token() -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",), ip="testclient")
    accepted: list[str] = []
    app = BearerGuardMiddleware(ws_app(accepted), backend=StoreBackend(store), ip_binding=False)
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", headers={"Authorization": f"Bearer {tok.token}"}) as ws,
    ):
        assert ws.receive_text() == tok.key_id
    assert accepted == [tok.key_id]


def test_websocket_refused_before_accept_with_denial_response() -> None:
    accepted: list[str] = []
    app = BearerGuardMiddleware(ws_app(accepted), backend=StoreBackend(MemoryStore()))
    with TestClient(app) as client:
        with pytest.raises(WebSocketDenialResponse) as info:
            with client.websocket_connect("/ws", headers={"Authorization": "Bearer nope"}):
                pass
        resp = info.value
        assert resp.status_code == 401
        assert Challenge.from_header(resp.headers["www-authenticate"])["error"] == "invalid_token"
    assert accepted == []


def test_websocket_refused_with_close_when_server_lacks_denial_extension() -> None:
    accepted: list[str] = []
    app = BearerGuardMiddleware(ws_app(accepted), backend=StoreBackend(MemoryStore()))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "query_string": b"",
        "extensions": {},
    }
    asyncio.run(app(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthorized"}]
    assert accepted == []


def test_websocket_query_token_opt_in() -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",))
    accepted: list[str] = []
    app = BearerGuardMiddleware(
        ws_app(accepted),
        backend=StoreBackend(store),
        ip_binding=False,
        websocket_query_token=True,
    )
    with TestClient(app) as client:
        with client.websocket_connect(f"/ws?access_token={tok.token}") as ws:
            assert ws.receive_text() == tok.key_id
        # HTTP requests still may not use the query string
        r = client.get(f"/ws?access_token={tok.token}")
        assert r.status_code == 401
    off = BearerGuardMiddleware(ws_app(accepted), backend=StoreBackend(store), ip_binding=False)
    with TestClient(off) as client, pytest.raises((WebSocketDenialResponse, WebSocketDisconnect)):
        with client.websocket_connect(f"/ws?access_token={tok.token}"):
            pass


def test_lifespan_passes_through() -> None:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            msg = await receive()
            events.append(msg["type"])
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    guarded = BearerGuardMiddleware(app, backend=StoreBackend(MemoryStore()))
    with TestClient(guarded):
        pass
    assert events == ["lifespan.startup", "lifespan.shutdown"]


class AsyncOnly:
    def __init__(self, store: MemoryStore) -> None:
        self.inner = StoreBackend(store)

    async def alookup(self, token: str) -> TokenInfo | None:
        return self.inner.lookup(token)


def test_async_only_backend_works_under_asgi() -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",), ip="testclient")
    accepted: list[str] = []
    app = BearerGuardMiddleware(ws_app(accepted), backend=AsyncOnly(store), ip_binding=False)
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws", headers={"Authorization": f"Bearer {tok.token}"}) as ws,
    ):
        assert ws.receive_text() == tok.key_id


def test_async_only_backend_refused_by_wsgi_at_startup() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    with pytest.raises(ConfigurationError, match="async-only"):
        WSGIBearerGuard(app, backend=AsyncOnly(MemoryStore()))


def test_backend_with_no_face_refused_by_asgi() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(ConfigurationError):
        BearerGuardMiddleware(app, backend=object())
