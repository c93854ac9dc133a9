"""Apps served over loopback by the bench (uvicorn / gunicorn import these).

The token comes from ``BENCH_TOKEN`` in the environment and is issued, at import, into
an in-process MemoryStore bound to 127.0.0.1: the guarded apps answer it from cache.
"""

from __future__ import annotations

import os

from bearerguard import BearerGuardMiddleware, WSGIBearerGuard
from bench.apps import _memory_backend
from bench.auth_floor import auth_app
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


auth_bare = auth_app()
