"""Apps served over loopback by the bench (uvicorn / gunicorn import these).

The token comes from ``BENCH_TOKEN`` in the environment and is issued, at import, into
an in-process MemoryStore bound to 127.0.0.1: the guarded apps answer it from cache.
"""

from __future__ import annotations

import os
import time

from bearerguard import BearerGuardMiddleware, WSGIBearerGuard
from bearerguard.tokens import Identity, TokenInfo
from bench.apps import _memory_backend
from bench.auth_floor import auth_app
from bench.plumbing import ContractFloorMiddleware, flask_app, sha256, starlette_app

_TOKEN = os.environ.get("BENCH_TOKEN", "")

starlette_bare = starlette_app()
starlette_guarded = BearerGuardMiddleware(
    starlette_app(), backend=_memory_backend(_TOKEN), api="dns"
)


def _contract_table(token: str) -> dict[bytes, tuple[float, TokenInfo, Identity]]:
    """The contract floor's one cached entry: the token, bound to 127.0.0.1, for dns."""
    expires = time.time() + 86400
    info = TokenInfo("key_bench", frozenset({"dns"}), "127.0.0.1", expires, 86400.0)
    ident = Identity(info.key_id, info.apis, "127.0.0.1", info)
    return {sha256(token.encode()).digest(): (expires, info, ident)}


starlette_contract = ContractFloorMiddleware(
    starlette_app(), table=_contract_table(_TOKEN), api="dns"
)

flask_bare = flask_app()
flask_guarded = flask_app()
flask_guarded.wsgi_app = WSGIBearerGuard(  # type: ignore[method-assign]
    flask_guarded.wsgi_app, backend=_memory_backend(_TOKEN), api="dns"
)


auth_bare = auth_app()
