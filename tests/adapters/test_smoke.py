from __future__ import annotations

import httpx
from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, StoreBackend, WSGIBearerGuard
from bearerguard.stores import MemoryStore
from helpers import issue


def test_asgi_and_wsgi_allow_and_deny() -> None:
    store = MemoryStore()
    tok = issue(store, ("dns",))

    async def whoami(req: Request) -> JSONResponse:
        return JSONResponse({"key_id": req.user.display_name, "apis": req.auth.scopes})

    star = Starlette(routes=[Route("/whoami", whoami)])
    asgi = BearerGuardMiddleware(star, backend=StoreBackend(store))

    flask = Flask(__name__)

    @flask.get("/whoami")
    def fwhoami():  # type: ignore[no-untyped-def]
        ident = request.environ["bearerguard.identity"]
        return jsonify(key_id=ident.key_id)

    flask.wsgi_app = WSGIBearerGuard(flask.wsgi_app, backend=StoreBackend(store))  # type: ignore[method-assign]

    import asyncio

    async def run() -> None:
        t = httpx.ASGITransport(app=asgi, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=t, base_url="http://t") as c:
            r = await c.get("/whoami", headers={"Authorization": f"Bearer {tok.token}"})
            assert r.status_code == 200, r.text
            assert r.json()["key_id"] == tok.key_id
            r = await c.get("/whoami")
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == 'Bearer realm="api"'

    asyncio.run(run())
    with httpx.Client(
        transport=httpx.WSGITransport(app=flask, remote_addr="127.0.0.1"), base_url="http://t"
    ) as c:
        r = c.get("/whoami", headers={"Authorization": f"Bearer {tok.token}"})
        assert r.status_code == 200, r.text
        r = c.get("/whoami", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
