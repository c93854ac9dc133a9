"""Pure ASGI middleware: HTTP and WebSocket requests are checked before the app runs.

Lifespan and other scope types pass straight through; response bodies are never
touched, so streaming works as without us.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ._drive import drive_async
from ._edge import AsyncCaller, guard_options, wire_invalidations
from ._types import ASGIApp, Receive, Scope, Send
from .credentials import query_tokens
from .errors import Challenge
from .flow import Allow, Decision, Guard, RequestFacts
from .ratelimit import LimitedASGI, RateLimit, rate_limiter
from .tokens import ANONYMOUS

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .backends.base import AsyncTokenBackend, TokenBackend
    from .options import MiddlewareOptions

__all__ = ["BearerGuardMiddleware"]


def _scan(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The ``Authorization`` and ``X-Forwarded-For`` values: the one pass per request."""
    auth: tuple[bytes, ...] = ()
    xff: tuple[bytes, ...] = ()
    for name, value in headers:
        if name == b"authorization":
            auth += (value,)
        elif name == b"x-forwarded-for":
            xff += (value,)
    return auth, xff


def _query_tokens(scope: Scope) -> tuple[str, ...]:
    qs: bytes = scope.get("query_string", b"")
    if b"access_token" not in qs:
        return ()
    return query_tokens(qs.decode("latin-1"))


class BearerGuardMiddleware:
    """Check the bearer token of every HTTP and WebSocket request.

    ``BearerGuardMiddleware(app, backend=…, api="dns", public_paths=["/health"])``.
    `backend` has `alookup` and/or `lookup` (a sync-only backend runs in a worker
    thread). `backend_timeout` (default 5 s) bounds each call to a backend that is not
    self-timed (the built-in ones bound their own calls: `bearerguard.backends.base`) and
    `max_in_flight` (default 16) the calls outstanding at once. `rate_limit` (a
    `bearerguard.ratelimit.RateLimit`, requests per second, or (rate, burst)) limits
    each API key; 429 beyond it (shared through Redis with a `StoreBackend` over a
    `RedisStore`, per process otherwise). The other keyword options are `Guard`'s.

    An allowed request carries its `Identity` in ``scope["bearerguard"]``, and in
    ``scope["user"]``/``scope["auth"]`` for Starlette's ``request.user`` and
    ``@requires``; ``scope["bearerguard.guard"]`` is this middleware's `Guard`, for
    per-route checks (`bearerguard.starlette.require_api`).

    ``token_format`` defaults to the backend's own ``token_format`` attribute:
    `StoreBackend` turns on ``"bearerguard"`` (malformed tokens get 401 without a
    lookup); pass ``token_format=None`` to accept any b64token.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        backend: TokenBackend | AsyncTokenBackend,
        backend_timeout: float = 5.0,
        max_in_flight: int = 16,
        guard: Guard | None = None,
        rate_limit: RateLimit | float | tuple[float, int] | None = None,
        **options: Unpack[MiddlewareOptions],
    ) -> None:
        # rate_limit (bearerguard.ratelimit) wraps the app: nothing runs when unset.
        self.limiter = rate_limiter(rate_limit, backend)
        self.app = app if self.limiter is None else LimitedASGI(app, self.limiter)
        self.backend = backend
        self.guard = guard or Guard(**guard_options(backend, options))
        self._caller = AsyncCaller(
            backend, self.guard, timeout=backend_timeout, max_in_flight=max_in_flight
        )
        self._unsubscribe = wire_invalidations(backend, self.guard)
        self._cached = self.guard.cached_identity
        resource = self.guard.resource
        self._wellknown = resource.paths if resource is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self._wellknown is not None and scope["path"] in self._wellknown:
                await self._serve_metadata(scope, receive, send)
                return
            # The cached path: one Authorization header whose token is fresh in the cache.
            # The headers are read here without a call or a tuple (each costs more than
            # a tenth of this path); a request that leaves it is scanned again by `_scan`.
            auth = b""
            count = 0
            forwarded = False
            for name, value in scope["headers"]:
                if name == b"authorization":
                    auth = value
                    count += 1
                elif name == b"x-forwarded-for":
                    forwarded = True
            if count == 1:
                client = scope.get("client")
                ident = self._cached(auth, client[0] if client else None, forwarded)
                if ident is not None:
                    scope["bearerguard"] = scope["user"] = scope["auth"] = ident
                    scope["bearerguard.guard"] = self.guard
                    await self.app(scope, receive, send)
                    return
        elif kind != "websocket":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = client[0] if client else None
        decision = await self._decide(scope, *_scan(scope["headers"]), peer, None)
        if isinstance(decision, Allow):
            identity = decision.identity
            scope["bearerguard.guard"] = self.guard
            if identity is None:
                scope.setdefault("user", ANONYMOUS)
                scope.setdefault("auth", ANONYMOUS)
            else:
                scope["bearerguard"] = scope["user"] = scope["auth"] = identity
            await self.app(scope, receive, send)
        elif kind == "http":
            await self._refuse_http(decision.challenge, send)
        else:
            await self._refuse_websocket(scope, decision.challenge, send)

    async def decide(self, scope: Scope, api: str | None = None) -> Decision:
        """Run the core's flow for one HTTP or WebSocket scope."""
        client = scope.get("client")
        peer = client[0] if client else None
        return await self._decide(scope, *_scan(scope["headers"]), peer, api)

    def _decide(
        self,
        scope: Scope,
        auth: tuple[bytes, ...],
        xff: tuple[bytes, ...],
        peer: str | None,
        api: str | None,
    ) -> Coroutine[Any, Any, Decision]:
        # Not a coroutine of its own: the caller awaits `drive_async`'s, one frame fewer.
        guard = self.guard
        query = guard.query_token or (guard.websocket_query_token and scope["type"] == "websocket")
        facts = RequestFacts(
            scope["path"],
            tuple([v.decode("latin-1") for v in auth]),
            _query_tokens(scope) if query else (),
            peer,
            tuple([v.decode("latin-1") for v in xff]) if xff else (),
        )
        return drive_async(guard, facts, api, self._caller)

    async def _serve_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        # RFC 9728 §3: the metadata is public; only GET (and HEAD) read it.
        resource = self.guard.resource
        assert resource is not None
        if scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body = resource.body
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _refuse_http(self, challenge: Challenge, send: Send) -> None:
        headers = [(k.encode(), v.encode()) for k, v in self.guard.challenge_headers(challenge)]
        await send({"type": "http.response.start", "status": challenge.status, "headers": headers})
        await send({"type": "http.response.body", "body": challenge.to_body()})

    async def _refuse_websocket(self, scope: Scope, challenge: Challenge, send: Send) -> None:
        # Refuse before accept. With the WebSocket Denial Response extension the client
        # sees our status and challenge; without it the server answers 403.
        if "websocket.http.response" in scope.get("extensions", {}):
            headers = [(k.encode(), v.encode()) for k, v in self.guard.challenge_headers(challenge)]
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": challenge.status,
                    "headers": headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": challenge.to_body()})
        else:
            await send(
                {
                    "type": "websocket.close",
                    "code": 1008,
                    "reason": challenge.error or "unauthorized",
                }
            )

    def close(self) -> None:
        """Stop listening for revocations and release worker threads."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._caller.close()
