"""A resource server for `bench.scaling`: bearerguard over introspection, its cache tuned.

``GET /whoami`` answers the key id of an allowed token. Configured from the environment:
``SCALING_INTROSPECTION_URL``, ``SCALING_CLIENT_ID``, ``SCALING_CLIENT_SECRET``,
``SCALING_CACHE_TTL`` and ``SCALING_TOUCH_INTERVAL`` (seconds).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware
from bearerguard.backends.introspection import IntrospectionBackend


async def whoami(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.user.display_name)


app = BearerGuardMiddleware(
    Starlette(routes=[Route("/whoami", whoami)]),
    backend=IntrospectionBackend(
        os.environ["SCALING_INTROSPECTION_URL"],
        os.environ["SCALING_CLIENT_ID"],
        os.environ["SCALING_CLIENT_SECRET"],
    ),
    cache_ttl=float(os.environ["SCALING_CACHE_TTL"]),
    touch_interval=float(os.environ["SCALING_TOUCH_INTERVAL"]),
    cache_maxsize=100_000,
)
