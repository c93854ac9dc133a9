"""Starlette integration: per-route API requirements on top of `BearerGuardMiddleware`.

The middleware already makes Starlette's own tools work: an allowed request has
``request.user`` (``is_authenticated``, ``display_name`` = Key ID) and ``request.auth``
(``scopes`` = the key's APIs), so ``starlette.authentication.requires("dns")`` works
as it is. Its refusals are Starlette's, though (a bare 403). `require_api` answers the
RFC 6750 way instead, with the challenge the middleware would give::

    app = Starlette(
        routes=[Route("/dns/zones", zones), WebSocketRoute("/ws", ws)],
        middleware=[Middleware(BearerGuardMiddleware, backend=backend,
                               public_paths=["/health"])],
    )

    @require_api("dns")
    async def zones(request: Request) -> Response:
        return JSONResponse({"key_id": request.user.display_name})

`identity_of(request)` returns the request's `Identity` (None on public paths).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from ._types import Scope
from .errors import MISSING, Challenge, quote_param
from .flow import Guard
from .tokens import Identity

__all__ = ["challenge_for", "guard_for", "identity_of", "refuse", "require_api"]

F = TypeVar("F", bound=Callable[..., Any])

_NO_GUARD = Guard()
"""Stands in when no middleware ran: its default realm and its `check_api` rule."""


def identity_of(conn: HTTPConnection) -> Identity | None:
    """The `Identity` the middleware put on this request or WebSocket, or None."""
    identity = conn.scope.get("bearerguard")
    return identity if isinstance(identity, Identity) else None


def guard_for(scope: Scope) -> Guard | None:
    """The `Guard` of the middleware that let this request in (``scope["bearerguard.guard"]``).

    None when no `BearerGuardMiddleware` ran for this request.
    """
    guard = scope.get("bearerguard.guard")
    return guard if isinstance(guard, Guard) else None


def challenge_for(scope: Scope, api: str | None) -> tuple[Challenge | None, str]:
    """Decide a per-route requirement: (the refusal or None, the realm to render it in).

    `api` None asks only for an identity (any valid token).
    No identity (the path is public, or no middleware ran) is a 401: fail closed.
    """
    guard = guard_for(scope) or _NO_GUARD
    identity = scope.get("bearerguard")
    if not isinstance(identity, Identity):
        return MISSING, guard.realm
    return (None if api is None else guard.check_api(identity, api)), guard.realm


def challenge_headers(scope: Scope, challenge: Challenge, realm: str) -> list[tuple[str, str]]:
    """The headers of a per-route refusal, rendered as the middleware renders its own.

    The middleware's `Guard` renders them (a 401 names the RFC 9728 metadata); without
    one, or for another realm, the `Challenge` renders them itself.
    """
    guard = guard_for(scope)
    if guard is not None and guard.realm == realm:
        return guard.challenge_headers(challenge)
    return challenge.to_headers(realm)


def challenge_response(challenge: Challenge, realm: str, scope: Scope | None = None) -> Response:
    """`challenge` as a Starlette response: status, ``WWW-Authenticate``, JSON body."""
    headers = challenge_headers(scope or {}, challenge, realm)
    return Response(challenge.to_body(), status_code=challenge.status, headers=dict(headers))


async def refuse(conn: HTTPConnection, challenge: Challenge, realm: str) -> Response | None:
    """Refuse `conn`: an HTTP response to return, or (WebSocket) refuse before accept.

    A WebSocket gets the HTTP refusal when the server supports the Denial Response
    extension, else a close with code 1008 (policy violation) — as the middleware does.
    """
    if isinstance(conn, WebSocket):
        if "websocket.http.response" in conn.scope.get("extensions", {}):
            await conn.send_denial_response(challenge_response(challenge, realm, conn.scope))
        else:
            await conn.close(1008, reason=challenge.error or "unauthorized")
        return None
    return challenge_response(challenge, realm, conn.scope)


def _connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection:
    for value in (*args, *kwargs.values()):
        if isinstance(value, HTTPConnection):
            return value
    raise TypeError("require_api: the endpoint got no Request or WebSocket argument")


def require_api(api: str) -> Callable[[F], F]:
    """Decorate an endpoint (HTTP or WebSocket, function or method) to require API `api`.

    A token whose key lacks `api` gets 403 ``insufficient_scope`` with ``scope="<api>"``;
    a request without an identity gets 401. A sync endpoint runs in the thread pool as
    Starlette would run it.
    """
    quote_param(api)  # an API name that cannot go in a challenge fails here, not per request

    def decorate(endpoint: F) -> F:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            conn = _connection(args, kwargs)
            challenge, realm = challenge_for(conn.scope, api)
            if challenge is not None:
                return await refuse(conn, challenge, realm)
            if is_async:
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        return cast(F, wrapper)

    return decorate
