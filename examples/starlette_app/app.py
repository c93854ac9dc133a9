"""A resource server guarded by bearerguard, on Starlette (ASGI ``app``).

Configured from the environment (see ``bearerguard.config.from_env``)::

    BEARERGUARD_STORE=sqlite:///bearerguard.db                    # the auth service's store
    # or introspect at the auth service instead:
    BEARERGUARD_INTROSPECTION_URL=http://127.0.0.1:8000/introspect
    BEARERGUARD_CLIENT_ID=… BEARERGUARD_CLIENT_SECRET=…
    BEARERGUARD_TRUSTED_PROXIES=10.0.0.1,10.0.0.2                 # optional
    BEARERGUARD_TOKEN_FORMAT=bearerguard    # optional: 401 for non-bgt_ tokens, no lookup
    # JWT access tokens of an identity provider too (a chain: JWTs there, the rest as above):
    BEARERGUARD_JWT_ISSUER=https://idp.example/realms/api         # BEARERGUARD_JWKS_URL optional
    BEARERGUARD_AUDIENCE=https://api.example                      # RFC 8707, any backend
    BEARERGUARD_RESOURCE=https://api.example                      # RFC 9728 metadata on

Routes: GET /health (public), GET /whoami (any valid token), GET /dns/zones (API dns),
GET /vps/servers (API vps), WebSocket /ws (any valid token; sends the Key ID, closes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from bearerguard import BearerGuardMiddleware
from bearerguard.config import from_env
from bearerguard.starlette import require_api

settings = from_env()


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def whoami(request: Request) -> JSONResponse:
    # request.user / request.auth are the bearerguard Identity (Starlette-compatible).
    return JSONResponse({"key_id": request.user.display_name, "apis": request.auth.scopes})


@require_api("dns")
async def dns_zones(request: Request) -> JSONResponse:
    return JSONResponse({"zones": ["example.com", "example.org"]})


@require_api("vps")
async def vps_servers(request: Request) -> JSONResponse:
    return JSONResponse({"servers": [{"name": "web-1", "status": "running"}]})


async def ws(websocket: WebSocket) -> None:
    # The middleware refused bad tokens before accept; whoever gets here is allowed.
    await websocket.accept()
    await websocket.send_text(websocket.user.display_name)
    await websocket.close()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await settings.aclose()


app = Starlette(
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/whoami", whoami, methods=["GET"]),
        Route("/dns/zones", dns_zones, methods=["GET"]),
        Route("/vps/servers", vps_servers, methods=["GET"]),
        WebSocketRoute("/ws", ws),
    ],
    middleware=[
        Middleware(
            BearerGuardMiddleware,
            backend=settings.backend,
            public_paths=["/health"],
            **settings.options,
        )
    ],
    lifespan=lifespan,
)
