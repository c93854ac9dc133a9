"""WSGI middleware: every request is checked before the app runs."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

from ._drive import drive
from ._edge import SyncCaller, guard_options, wire_invalidations
from .credentials import query_tokens
from .errors import Challenge
from .flow import Allow, Decision, Guard, RequestFacts
from .ratelimit import LimitedWSGI, RateLimit, rate_limiter

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from typing_extensions import Unpack

    from .backends.base import TokenBackend
    from .options import MiddlewareOptions

__all__ = ["WSGIBearerGuard"]


def _status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


class WSGIBearerGuard:
    """Check the bearer token of every request to a WSGI app.

    ``app.wsgi_app = WSGIBearerGuard(app.wsgi_app, backend=…, api="dns")``. `backend`
    needs a sync `lookup`; an async-only backend is refused here with
    ConfigurationError. `backend_timeout` and `max_in_flight` bound backend calls and
    `rate_limit` limits each API key, as in `BearerGuardMiddleware`; the other options
    are `Guard`'s (``token_format``
    defaults to the backend's, as there).

    An allowed request carries its `Identity` in ``environ["bearerguard.identity"]``.
    WSGI servers join repeated headers with commas, so two ``Authorization`` headers
    arrive as one malformed value and are refused with 400 all the same.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        backend: TokenBackend,
        backend_timeout: float = 5.0,
        max_in_flight: int = 16,
        guard: Guard | None = None,
        rate_limit: RateLimit | float | tuple[float, int] | None = None,
        **options: Unpack[MiddlewareOptions],
    ) -> None:
        # rate_limit (bearerguard.ratelimit) wraps the app: nothing runs when unset.
        self.limiter = rate_limiter(rate_limit, backend)
        self.app = app if self.limiter is None else LimitedWSGI(app, self.limiter)
        self.backend = backend
        self.guard = guard or Guard(**guard_options(backend, options))
        self._caller = SyncCaller.of(
            backend, self.guard, timeout=backend_timeout, max_in_flight=max_in_flight
        )
        self._unsubscribe = wire_invalidations(backend, self.guard)
        resource = self.guard.resource
        self._wellknown = resource.paths if resource is not None else None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._wellknown is not None and environ.get("PATH_INFO") in self._wellknown:
            method = environ.get("REQUEST_METHOD")
            if method in ("GET", "HEAD"):
                return self._serve_metadata(method, start_response)
        auth = environ.get("HTTP_AUTHORIZATION")
        if auth is not None and auth.isascii():
            # The cached path: the token is fresh in the cache.
            ident = self.guard.cached_identity(
                auth.encode(), environ.get("REMOTE_ADDR"), "HTTP_X_FORWARDED_FOR" in environ
            )
            if ident is not None:
                environ["bearerguard.identity"] = ident
                return self.app(environ, start_response)
        decision = self._decide(environ, auth, None)
        if isinstance(decision, Allow):
            if decision.identity is not None:
                environ["bearerguard.identity"] = decision.identity
            return self.app(environ, start_response)
        return self.refuse(decision.challenge, start_response)

    def decide(self, environ: WSGIEnvironment, api: str | None = None) -> Decision:
        """Run the core's flow for one WSGI request."""
        return self._decide(environ, environ.get("HTTP_AUTHORIZATION"), api)

    def _decide(self, environ: WSGIEnvironment, auth: str | None, api: str | None) -> Decision:
        guard = self.guard
        xff = environ.get("HTTP_X_FORWARDED_FOR")
        query: tuple[str, ...] = ()
        if guard.query_token:
            query = query_tokens(environ.get("QUERY_STRING", ""))
        facts = RequestFacts(
            environ.get("PATH_INFO", "") or "/",
            (auth,) if auth is not None else (),
            query,
            environ.get("REMOTE_ADDR"),
            (xff,) if xff else (),
        )
        return drive(guard, facts, api, self._caller)

    def _serve_metadata(self, method: str, start_response: StartResponse) -> list[bytes]:
        # RFC 9728 §3: the metadata is public.
        resource = self.guard.resource
        assert resource is not None
        body = resource.body
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        start_response("200 OK", headers)
        return [b"" if method == "HEAD" else body]

    def refuse(self, challenge: Challenge, start_response: StartResponse) -> list[bytes]:
        """Answer with `challenge`: status, ``WWW-Authenticate`` and the JSON body."""
        start_response(_status_line(challenge.status), self.guard.challenge_headers(challenge))
        return [challenge.to_body()]

    def close(self) -> None:
        """Stop listening for revocations and release worker threads."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._caller.close()
