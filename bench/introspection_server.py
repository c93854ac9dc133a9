"""A tiny RFC 7662 introspection endpoint for the bench (served by uvicorn).

POST /introspect with HTTP Basic client credentials and a form ``token=…``: active
when the token starts with ``BENCH_ACTIVE_PREFIX`` (a random secret prefix chosen by
the bench), inactive otherwise. GET /stats counts the introspection calls, so the bench
can check single-flight (N concurrent misses for one token = one call).
"""

from __future__ import annotations

import base64
import hmac
import os
import time
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_PREFIX = os.environ.get("BENCH_ACTIVE_PREFIX", "")
_CLIENT = os.environ.get("BENCH_INTROSPECT_CLIENT", "")
_EXPECTED = "Basic " + base64.b64encode(_CLIENT.encode()).decode()
_calls = 0


async def introspect(request: Request) -> JSONResponse:
    global _calls
    _calls += 1
    if not _CLIENT or not hmac.compare_digest(request.headers.get("authorization", ""), _EXPECTED):
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    form = parse_qs((await request.body()).decode("latin-1"))
    token = form.get("token", [""])[0]
    if not _PREFIX or not token.startswith(_PREFIX):
        return JSONResponse({"active": False})
    return JSONResponse(
        {
            "active": True,
            "client_id": "key_bench",
            "scope": "dns vps",
            "token_type": "Bearer",
            "exp": int(time.time()) + 300,
            "ip": "127.0.0.1",
        }
    )


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"calls": _calls})


app = Starlette(routes=[Route("/introspect", introspect, methods=["POST"]), Route("/stats", stats)])
