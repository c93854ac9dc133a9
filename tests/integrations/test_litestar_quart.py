"""The pure ASGI middleware in front of Litestar and Quart apps, served by uvicorn.

Each framework gets its idiomatic wiring (Litestar: ``DefineMiddleware`` in the app's
middleware list; Quart: ``app.asgi_app = BearerGuardMiddleware(app.asgi_app, …)``) and
must show: lifespan passes through, public paths, RFC 6750 refusals, the identity seen
through the framework's own request object, and WebSockets refused before accept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, WebSocket, get, websocket
from litestar.middleware import DefineMiddleware
from quart import Quart
from quart import request as quart_request
from quart import websocket as quart_websocket

from bearerguard import BearerGuardMiddleware, StoreBackend
from bearerguard.stores import MemoryStore
from helpers import issue
from integration_support import RawWebSocket, assert_challenge, bearer, served_asgi

OPTIONS: dict[str, Any] = {"api": "dns", "public_paths": ["/health"]}


def litestar_app(backend: object, started: list[str]) -> Any:
    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/whoami")
    async def whoami(request: Request[Any, Any, Any]) -> dict[str, Any]:
        # Litestar's request.user and request.auth read scope["user"] and scope["auth"].
        return {"key_id": request.user.key_id, "apis": request.auth.scopes}

    @websocket("/ws")
    async def ws(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        await socket.send_text(socket.scope["bearerguard"].key_id)
        await socket.close()

    return Litestar(
        [health, whoami, ws],
        middleware=[DefineMiddleware(BearerGuardMiddleware, backend=backend, **OPTIONS)],
        on_startup=[lambda: started.append("litestar")],
    )


def quart_app(backend: object, started: list[str]) -> Any:
    app = Quart("bearerguard-test")

    @app.before_serving
    async def startup() -> None:
        started.append("quart")

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get("/whoami")
    async def whoami() -> Any:
        ident = quart_request.scope["bearerguard"]
        return {"key_id": ident.key_id, "apis": ident.scopes}

    @app.websocket("/ws")
    async def ws() -> None:
        await quart_websocket.accept()
        await quart_websocket.send(quart_websocket.scope["bearerguard"].key_id)

    app.asgi_app = BearerGuardMiddleware(app.asgi_app, backend=backend, **OPTIONS)  # type: ignore[method-assign]
    return app


APPS: dict[str, Callable[[object, list[str]], Any]] = {
    "litestar": litestar_app,
    "quart": quart_app,
}


@pytest.mark.parametrize("framework", list(APPS))
def test_asgi_middleware_guards_the_framework(framework: str, store: MemoryStore) -> None:
    dns = issue(store, ("dns",))
    vps = issue(store, ("vps",))
    started: list[str] = []
    app = APPS[framework](StoreBackend(store), started)
    with (
        served_asgi(app) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as c,
    ):
        assert started == [framework]  # lifespan went through the middleware
        assert c.get("/health").json() == {"status": "ok"}
        r = c.get("/whoami", headers=bearer(dns.token))
        assert r.status_code == 200, r.text
        assert r.json() == {"key_id": dns.key_id, "apis": ["dns"]}
        assert_challenge(c.get("/whoami"), 401, None)
        assert_challenge(c.get("/whoami", headers=bearer("unknown")), 401, "invalid_token")
        assert_challenge(
            c.get("/whoami", headers=bearer(vps.token)), 403, "insufficient_scope", scope="dns"
        )
        with RawWebSocket(port, "/ws", bearer(dns.token)) as ws:
            assert ws.status == 101
            assert ws.frame() == (0x1, dns.key_id.encode())
        for headers in ({}, bearer(vps.token)):
            with RawWebSocket(port, "/ws", headers) as ws:
                assert ws.status != 101  # refused before accept
                assert 400 <= ws.status < 500
