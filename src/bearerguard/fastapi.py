"""FastAPI integration: the `Identity` as a dependency, per-route APIs, OpenAPI security.

Install `BearerGuardMiddleware` as usual (it decides every request); these
dependencies read its decision from the scope and add per-route API requirements::

    app = FastAPI()
    app.add_middleware(BearerGuardMiddleware, backend=backend,
                       public_paths=["/health", *DOCS_PATHS])
    add_challenge_handler(app)          # RFC 6750 JSON bodies for per-route refusals

    @app.get("/whoami")
    async def whoami(identity: CurrentIdentity) -> dict[str, object]: ...

    @app.get("/dns/zones")
    async def zones(identity: Identity = Security(require_api("dns"))): ...

    @app.get("/vps/servers", dependencies=[Security(require_api("vps"))])
    async def servers(): ...

Each dependency is an HTTP bearer security scheme (`BearerAuth`): the OpenAPI document
lists it under ``components.securitySchemes`` (``type: http, scheme: bearer``) and in
``security`` of every operation that uses it, so the /docs "Authorize" button works
(keep /docs and /openapi.json public: `DOCS_PATHS`).

Without the middleware: not supported. The dependencies never check tokens themselves;
with no identity in the scope they refuse with 401 (fail closed), so a forgotten
middleware shows up as every protected route answering 401.

Without `add_challenge_handler`, refusals from the dependencies still carry the right
status and ``WWW-Authenticate`` challenge, but FastAPI wraps the body as
``{"detail": {"error": …, "error_description": …}}``.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import FastAPI, Security
from fastapi.exceptions import HTTPException, WebSocketException
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ._types import Scope
from .errors import Challenge, quote_param
from .starlette import challenge_for, challenge_headers, challenge_response
from .tokens import Identity

__all__ = [
    "BearerAuth",
    "BearerChallenge",
    "CurrentIdentity",
    "DOCS_PATHS",
    "add_challenge_handler",
    "bearer_auth",
    "challenge_handler",
    "require_api",
]

DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
"""FastAPI's documentation routes, to list in the middleware's ``public_paths``."""

_BODY_HEADERS = ("content-type", "content-length")

DESCRIPTION = (
    "Access token from the auth service: POST /login with grant_type=client_credentials "
    "and the API key (Key ID and secret) as HTTP Basic."
)


class BearerChallenge(HTTPException):
    """A per-route refusal, carrying the `Challenge` and the realm to render it in."""

    def __init__(self, challenge: Challenge, realm: str, scope: Scope | None = None) -> None:
        # The one renderer: FastAPI's default handler writes its own JSON body, so the
        # body's content headers are left out here.
        headers = {
            name: value
            for name, value in challenge_headers(scope or {}, challenge, realm)
            if name not in _BODY_HEADERS
        }
        body = json.loads(challenge.to_body())
        super().__init__(challenge.status, detail=body, headers=headers)
        self.challenge = challenge
        self.realm = realm
        self.scope = scope


class BearerAuth(SecurityBase):
    """A dependency yielding the request's `Identity`; an HTTP bearer security scheme.

    ``BearerAuth(api="dns")`` also requires the key to have API ``dns`` (403
    ``insufficient_scope``, ``scope="dns"``). No identity: 401. Works for HTTP routes
    and WebSocket routes (refused with close code 1008 before accept).
    `scheme_name` is the name under ``components.securitySchemes``.
    """

    def __init__(
        self,
        api: str | None = None,
        *,
        scheme_name: str = "BearerGuard",
        description: str = DESCRIPTION,
    ) -> None:
        if api is not None:
            quote_param(api)  # fails at definition, not per request
        self.api = api
        self.model = HTTPBearerModel(description=description)
        self.scheme_name = scheme_name

    async def __call__(self, conn: HTTPConnection) -> Identity:
        challenge, realm = challenge_for(conn.scope, self.api)
        if challenge is None:
            identity = conn.scope["bearerguard"]
            assert isinstance(identity, Identity)
            return identity
        if conn.scope["type"] == "websocket":
            raise WebSocketException(code=1008, reason=challenge.error or "unauthorized")
        raise BearerChallenge(challenge, realm, conn.scope)


bearer_auth = BearerAuth()
"""The default scheme: any valid token (the middleware's own `api`, if set, applies)."""

CurrentIdentity = Annotated[Identity, Security(bearer_auth)]
"""``identity: CurrentIdentity`` in an endpoint's parameters."""


def require_api(api: str) -> BearerAuth:
    """A dependency that yields the `Identity` only if its key has API `api`."""
    return BearerAuth(api)


async def challenge_handler(request: Request, exc: Exception) -> Response:
    """Render a `BearerChallenge` as the middleware would (RFC 6750 JSON body)."""
    assert isinstance(exc, BearerChallenge)
    return challenge_response(exc.challenge, exc.realm, exc.scope)


def add_challenge_handler(app: FastAPI) -> None:
    """Make `app` answer `BearerChallenge` refusals with RFC 6750 JSON bodies."""
    app.add_exception_handler(BearerChallenge, challenge_handler)
