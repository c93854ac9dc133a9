"""A guarded Starlette app for the fault suites, run under a real uvicorn.

Like ``examples/starlette_app`` (same routes, configured from ``BEARERGUARD_*``), plus:

* ``RELIABILITY_BREAKER_RESET`` (s): the introspection backend's breaker interval,
  shortened so a test can watch recovery within one interval;
* ``RELIABILITY_CACHE_TTL`` (s): the middleware's cache lifetime;
* ``GET /_stats`` (public): the middleware's `Metrics` snapshot, so a test can count
  backend calls per request from outside the process, plus the introspection
  breaker's state (``breaker``);
* ``RELIABILITY_LOG=1``: bearerguard's log lines (INFO) on stderr, for log checks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware
from bearerguard.config import from_env
from bearerguard.metrics import Metrics
from bearerguard.starlette import require_api

backend: Any
if os.environ.get("BEARERGUARD_INTROSPECTION_URL"):
    from bearerguard.backends.introspection import IntrospectionBackend

    backend = IntrospectionBackend(
        os.environ["BEARERGUARD_INTROSPECTION_URL"],
        os.environ["BEARERGUARD_CLIENT_ID"],
        os.environ["BEARERGUARD_CLIENT_SECRET"],
        breaker_reset=float(os.environ.get("RELIABILITY_BREAKER_RESET", "10")),
        require_ip=True,
    )
else:
    backend = from_env().backend

metrics = Metrics()
if os.environ.get("RELIABILITY_LOG"):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def stats(request: Request) -> JSONResponse:
    breaker = getattr(backend, "breaker", None)
    return JSONResponse({**metrics.snapshot(), "breaker": breaker.state if breaker else None})


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"key_id": request.user.display_name, "apis": request.auth.scopes})


@require_api("dns")
async def dns_zones(request: Request) -> JSONResponse:
    return JSONResponse({"zones": ["example.com"]})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await backend.aclose()


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/_stats", stats),
        Route("/whoami", whoami),
        Route("/dns/zones", dns_zones),
    ],
    middleware=[
        Middleware(
            BearerGuardMiddleware,
            backend=backend,
            public_paths=["/health", "/_stats"],
            cache_ttl=float(os.environ.get("RELIABILITY_CACHE_TTL", "10")),
            metrics=metrics,
        )
    ],
    lifespan=lifespan,
)
