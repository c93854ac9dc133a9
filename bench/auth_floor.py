"""The Redis floor of the auth service: bare uvicorn plus one redis-py round trip.

`auth_app` is also the bare floor (`bench.loopback_apps:auth_bare`); `app` is the same
app (body read, same-shaped JSON) and makes exactly one asyncio redis-py call per request, as
``bearerguard serve`` does with its key cache warm: ``SET … PX`` for /login (a token
stored with its TTL) and ``GET`` for /introspect. No checks, no Lua. Its req/s ÷ bare
uvicorn's is the most any service on this stack (Starlette, uvicorn, redis-py asyncio
with hiredis, redis-server on the same cores) can reach with one Redis call per request.
The Redis URL comes from ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any


def auth_app(
    on_login: Callable[[str], Awaitable[Any]] | None = None,
    on_introspect: Callable[[], Awaitable[Any]] | None = None,
) -> Any:
    """Bare auth-service floor: POST /login and /introspect answer the same-shaped JSON
    as `bearerguard serve`, reading the body but checking nothing and storing nothing.

    `on_login(token)` and `on_introspect()`, when given, run once per request (the Redis
    floor in bench/auth_floor.py makes its one Redis call there)."""
    import secrets
    import time

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}

    async def login(request: Request) -> JSONResponse:
        await request.body()
        token = secrets.token_urlsafe(32)
        if on_login is not None:
            await on_login(token)
        body = {"access_token": token, "expires_in": 300, "token_type": "bearer"}
        return JSONResponse(body, headers=no_store)

    async def introspect(request: Request) -> JSONResponse:
        await request.body()
        if on_introspect is not None:
            await on_introspect()
        now = int(time.time())
        return JSONResponse(
            {
                "active": True,
                "client_id": "key_bench",
                "scope": "dns",
                "exp": now + 300,
                "iat": now,
                "token_type": "bearer",
                "ip": "127.0.0.1",
                "ttl": 300,
            },
            headers=no_store,
        )

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/introspect", introspect, methods=["POST"]),
        ]
    )


def _app() -> Any:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))

    async def store_token(token: str) -> None:
        await client.set("bench:floor:" + token[:16], token, px=300_000)

    async def read_token() -> None:
        await client.get("bench:floor:introspect")

    return auth_app(store_token, read_token)


app = _app()
