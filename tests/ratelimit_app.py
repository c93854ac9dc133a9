"""Resource servers for the ``rate_limit`` tests: `make_asgi()` (uvicorn --factory) and
`make_wsgi()` (gunicorn), each a bare app behind the middleware over a `StoreBackend`.

Environment: ``BEARERGUARD_STORE`` (the store URL) and ``RATE_LIMIT`` (``rate,burst``).
Routes: ``/health`` (public) and anything else (any valid token) → ``{"key_id": …}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bearerguard import BearerGuardMiddleware, StoreBackend, WSGIBearerGuard
from bearerguard.ratelimit import RateLimit
from bearerguard.stores import open_store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def _options() -> dict[str, Any]:
    rate, burst = os.environ["RATE_LIMIT"].split(",")
    return {"public_paths": ["/health"], "rate_limit": RateLimit(float(rate), burst=int(burst))}


def _body(identity: Any) -> bytes:
    return json.dumps({"key_id": identity.key_id if identity else None}).encode()


def make_asgi() -> BearerGuardMiddleware:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = _body(scope.get("bearerguard"))
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    backend = StoreBackend(open_store(os.environ["BEARERGUARD_STORE"]))
    return BearerGuardMiddleware(app, backend=backend, **_options())


def make_wsgi() -> WSGIBearerGuard:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("content-type", "application/json")])
        return [_body(environ.get("bearerguard.identity"))]

    backend = StoreBackend(open_store(os.environ["BEARERGUARD_STORE"]))
    return WSGIBearerGuard(app, backend=backend, **_options())
