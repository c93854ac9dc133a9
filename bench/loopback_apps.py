"""Apps served over loopback by the bench (uvicorn / gunicorn import these).

The token comes from ``BENCH_TOKEN`` in the environment and is issued, at import, into
an in-process MemoryStore bound to 127.0.0.1: the guarded apps answer it from cache.
"""

from __future__ import annotations

import os
from typing import Any

from bearerguard import BearerGuardMiddleware, WSGIBearerGuard
from bench.apps import _memory_backend
from bench.plumbing import flask_app, starlette_app

_TOKEN = os.environ.get("BENCH_TOKEN", "")

starlette_bare = starlette_app()
starlette_guarded = BearerGuardMiddleware(
    starlette_app(), backend=_memory_backend(_TOKEN), api="dns"
)

flask_bare = flask_app()
flask_guarded = flask_app()
flask_guarded.wsgi_app = WSGIBearerGuard(  # type: ignore[method-assign]
    flask_guarded.wsgi_app, backend=_memory_backend(_TOKEN), api="dns"
)


def _auth_bare() -> Any:
    """Bare auth-service floor: POST /login and /introspect answer the same-shaped JSON
    as `bearerguard serve`, reading the body but checking nothing and storing nothing."""
    import secrets
    import time

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}

    async def login(request: Request) -> JSONResponse:
        await request.body()
        body = {"access_token": secrets.token_urlsafe(32), "expires_in": 300}
        body["token_type"] = "bearer"
        return JSONResponse(body, headers=no_store)

    async def introspect(request: Request) -> JSONResponse:
        await request.body()
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


auth_bare = _auth_bare()
