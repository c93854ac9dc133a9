"""`IntrospectionBackend`: ask an RFC 7662 token introspection endpoint.

Works with any RFC 7662 server (``bearerguard serve``'s ``/introspect``, Authlib,
Keycloak, …). The pure parts live in `bearerguard.rfc7662` (and are re-exported here):
`introspection_form` builds the request body, `parse_introspection_response` checks and
decodes the answer and `token_info_from_introspection` maps its members onto
`TokenInfo`. The class adds the HTTP client and the resilience around it.

Resilience defaults (all options of `IntrospectionBackend`):

=====================  =========  ===================================================
connect_timeout        2 s        per TCP/TLS connect
read_timeout           2 s        per read (and write) on the socket
budget                 4 s        whole lookup, retries and backoff included
max_connections        16         pooled connections = introspection calls in flight;
                                  more calls wait for one up to `connect_timeout`
keepalive_expiry       4 s        below the 5 s idle timeout of uvicorn and others
retries                2          only for connect failures, full-jitter backoff
                                  (50 ms doubling, at most 500 ms), inside `budget`
stale connection       1 retry    a reused keep-alive connection the server closed
                                  under us (ReadError / RemoteProtocolError)
breaker_threshold      5          consecutive failed lookups open the circuit
breaker_reset          10 s       open time; then one probe call decides
=====================  =========  ===================================================

Give the middleware a `backend_timeout` at least as long as `budget` (its default, 5 s,
is). A 400, 413, 414 or 431 answer is about the one token sent (too long, malformed):
that token is refused (None). Anything else that is not a well-formed 200 JSON answer
raises `BackendUnavailable`: never a crash, never an allow. The breaker counts only
transport failures, timeouts and 5xx answers (H1): whatever a client puts in a token
cannot open it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from ..errors import BackendUnavailable, ConfigurationError
from ..rfc7662 import (
    introspection_form,
    parse_introspection_response,
    token_info_from_introspection,
)
from ..tokens import TokenInfo
from ._http import (
    Answer,
    ConnTrace,
    Failed,
    Reply,
    TooLarge,
    aread_limited,
    classify_failure,
    env_proxy,
    read_limited,
    retry_delay,
    unavailable,
)
from ._http import backoff_delay as backoff_delay  # public before the split
from .breaker import CircuitBreaker

__all__ = [
    "IntrospectionBackend",
    "introspection_form",
    "parse_introspection_response",
    "token_info_from_introspection",
]

logger = logging.getLogger("bearerguard.introspection")

ResponseMapper = Callable[[Mapping[str, Any]], Mapping[str, Any]]

# Answers about the request itself, i.e. about this one token (too long, malformed):
# the token is refused; the service is up (H1).
_REFUSES_TOKEN = frozenset({400, 413, 414, 431})


def _positive(name: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be a positive number of seconds")
    return float(value)


class IntrospectionBackend:
    """Look tokens up at an RFC 7662 introspection endpoint, sync and async.

    ``IntrospectionBackend("https://auth.example/introspect", key_id, secret)``. The
    resource server authenticates with HTTP Basic (RFC 7662 §2.1 leaves the method to
    the server; ``bearerguard serve`` wants a key created with ``--introspect``).
    `lookup` sends through a pooled `httpx.HTTPTransport`, `alookup` through a pooled
    `httpx.AsyncHTTPTransport` created on first use in the running event loop (one loop
    per backend); no cookies are kept and redirects are not followed. Both faces share
    one circuit breaker. Call `close()` / `await aclose()` when done.

    Options (see the module docstring for the defaults and why):
    `connect_timeout`, `read_timeout`, `budget` (total per lookup; default their sum),
    `max_connections`, `keepalive_expiry`, `retries`, `breaker_threshold`,
    `breaker_reset`, `max_response_bytes`, `verify` (httpx TLS verification),
    `trust_env` (httpx: proxies from the environment).

    `require_ip`: the auth service binds tokens to addresses and says so with the
    extension member ``ip``. When an answer has no ``ip``: False (default) lets the
    token through without an address check and logs a warning once; True treats the
    token as inactive. `map_response(claims) -> claims` renames members of servers
    that name things differently, before the standard mapping runs.

    `lookup(token, client_ip)`: the middleware passes the request's address, sent as
    the extension member ``client_ip`` (``bearerguard serve`` then counts the call as a
    use only from the token's own address; other servers ignore it). Against
    ``bearerguard serve``, give the middleware ``token_format="bearerguard"`` (or set
    ``BEARERGUARD_TOKEN_FORMAT=bearerguard``) so junk never costs a call.

    Security: the token travels in the POST body and the client secret in the
    Authorization header; neither is logged. Use https outside loopback.
    """

    #: Each lookup returns or raises within `budget` (httpx timeouts), so WSGI may call
    #: it in the request thread.
    self_timed = True

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 2.0,
        budget: float | None = None,
        max_connections: int = 16,
        keepalive_expiry: float = 4.0,
        retries: int = 2,
        breaker_threshold: int = 5,
        breaker_reset: float = 10.0,
        require_ip: bool = False,
        map_response: ResponseMapper | None = None,
        max_response_bytes: int = 64 * 1024,
        verify: Any = True,
        trust_env: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigurationError("introspection url is not a URL") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigurationError("introspection url must be an absolute http(s) URL")
        if parsed.userinfo:
            # It would end up in logs and reprs; credentials have their own arguments.
            raise ConfigurationError("put credentials in client_id/client_secret, not the url")
        for wrong, message in (
            (not client_id or not client_secret, "client_id and client_secret are required"),
            (max_connections < 1, "max_connections must be at least 1"),
            (retries < 0, "retries must be zero or more"),
            (max_response_bytes < 64, "max_response_bytes is too small"),
        ):
            if wrong:
                raise ConfigurationError(message)
        self.url = str(parsed)
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.read_timeout = _positive("read_timeout", read_timeout)
        self.budget = _positive(
            "budget", self.connect_timeout + self.read_timeout if budget is None else budget
        )
        self.retries = int(retries)
        self.require_ip = require_ip
        self.map_response = map_response
        self.max_response_bytes = int(max_response_bytes)
        self.breaker = CircuitBreaker(breaker_threshold, breaker_reset, clock=clock)
        self._clock = clock
        self._rng = random.Random()  # noqa: S311  (jitter, not secrecy)
        self._warned_no_ip = False
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        # One request template: the Basic header is encoded once, the form per lookup.
        self._url = parsed
        self._headers = {
            "Accept": "application/json",
            "Authorization": "Basic " + basic,
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "bearerguard",
        }
        self._transport_kwargs: dict[str, Any] = {
            "limits": httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=_positive("keepalive_expiry", keepalive_expiry),
            ),
            "verify": verify,
            "trust_env": trust_env,
            "proxy": env_proxy(parsed) if trust_env else None,
        }
        self._lock = threading.Lock()
        self._transport: httpx.HTTPTransport | None = None
        self._atransport: httpx.AsyncHTTPTransport | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"IntrospectionBackend({self.url!r})"

    # -- one lookup, written once for both faces ----------------------------------------

    def _request(self, body: bytes, remaining: float) -> httpx.Request:
        rt = min(self.read_timeout, remaining)
        ct = min(self.connect_timeout, remaining)
        timeout = {"connect": ct, "read": rt, "write": rt, "pool": ct}
        return httpx.Request(
            "POST", self._url, headers=self._headers, content=body, extensions={"timeout": timeout}
        )

    def _flow(
        self, token: str, client_ip: str | None
    ) -> Generator[float | httpx.Request, Reply, TokenInfo | None]:
        """One lookup as a generator, no I/O and no waiting (httpx's `auth_flow` pattern).

        Yields an `httpx.Request` to send: the loop (`lookup` or `alookup`) sends back
        an `Answer` or a `Failed`. Yields a float for "wait this many seconds, then go on" (`next`).
        Returns the token's `TokenInfo` or None.
        Raises BackendUnavailable: breaker open, budget spent, a failure that is not
        retried, or an answer that is not RFC 7662. The breaker hears exactly once how
        the lookup went; a lookup abandoned half-way (`close()`) counts as a failure.
        """
        if not self.breaker.acquire():
            raise BackendUnavailable(
                f"introspection circuit open; next try in {self.breaker.retry_in():.1f}s"
            )
        deadline = self._clock() + self.budget
        body = urlencode(introspection_form(token, client_ip)).encode()
        attempt, stale_retried, ok = 0, False, False
        try:
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise BackendUnavailable(f"introspection budget of {self.budget:g}s spent")
                reply = yield self._request(body, remaining)
                if isinstance(reply, Answer):
                    break
                exc, new_connection = reply
                kind = classify_failure(exc, new_connection=new_connection)
                attempt += kind == "connect"
                delay = retry_delay(
                    kind,
                    attempt,
                    stale_retried,
                    self.retries,
                    self._rng.random(),
                    deadline - self._clock(),
                )
                if delay < 0:
                    raise unavailable(exc) from exc
                stale_retried |= kind == "stale"
                logger.debug("introspection retry after %s", type(exc).__name__)
                if delay:
                    yield delay
            ok = reply.status < 500
            return self._interpret(reply.status, reply.content_type, reply.body)
        finally:
            self._settle(ok)

    def _settle(self, ok: bool) -> None:
        """Tell the breaker how the call went: `ok` is "the service answered below 500"."""
        before = self.breaker.state
        if ok:
            self.breaker.success()
            if before != "closed":
                logger.info("introspection endpoint answers again: circuit closed")
        elif self.breaker.failure() == "open" and before != "open":
            logger.warning(
                "introspection endpoint failing: circuit open, failing fast for %gs",
                self.breaker.reset_after,
            )

    def _interpret(self, status: int, content_type: str, body: bytes) -> TokenInfo | None:
        if status in _REFUSES_TOKEN:
            logger.debug("introspection endpoint refused one token with HTTP %d", status)
            return None
        data: Mapping[str, Any] = parse_introspection_response(status, content_type, body)
        if self.map_response is not None:
            try:
                data = self.map_response(data)
            except Exception as exc:
                raise BackendUnavailable(f"map_response raised {type(exc).__name__}") from exc
            if not isinstance(data, Mapping):
                raise BackendUnavailable("map_response did not return a mapping")
        info = token_info_from_introspection(data, require_ip=self.require_ip)
        if data.get("active") is True and data.get("ip") is None and not self._warned_no_ip:
            self._warned_no_ip = True
            logger.warning(
                "introspection endpoint %s gives no 'ip' member: %s",
                self.url,
                "tokens are refused (require_ip=True)"
                if self.require_ip
                else "IP binding is NOT enforced (pass require_ip=True to refuse such tokens)",
            )
        return info

    # -- sync face -------------------------------------------------------------------

    def _sync_transport(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._transport is None:
                self._transport = httpx.HTTPTransport(**self._transport_kwargs)
            return self._transport

    def _send(self, transport: httpx.HTTPTransport, request: httpx.Request) -> Reply:
        trace = request.extensions["trace"] = ConnTrace()
        try:
            response = transport.handle_request(request)
            try:
                body = read_limited(response.iter_bytes(), self.max_response_bytes)
            finally:
                response.close()
        except (httpx.HTTPError, TooLarge) as exc:
            return Failed(exc, trace.new_connection)
        return Answer(response.status_code, response.headers.get("content-type", ""), body)

    def lookup(self, token: str, client_ip: str | None = None) -> TokenInfo | None:
        """Introspect `token` for a request from `client_ip`; None if inactive.

        Raises BackendUnavailable.
        """
        flow = self._flow(token, client_ip)
        try:
            step, transport = next(flow), self._sync_transport()
            while True:
                if isinstance(step, float):
                    time.sleep(step)
                    step = next(flow)
                else:
                    step = flow.send(self._send(transport, step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            flow.close()

    def close(self) -> None:
        """Close the sync connections (the async ones: `aclose`)."""
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def __enter__(self) -> IntrospectionBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- async face ------------------------------------------------------------------

    def _async_transport(self) -> httpx.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        if self._atransport is None or self._aloop is not loop:
            if self._atransport is not None:
                logger.warning("IntrospectionBackend used from a second event loop: new pool")
            self._atransport = httpx.AsyncHTTPTransport(**self._transport_kwargs)
            self._aloop = loop
        return self._atransport

    async def _asend(self, transport: httpx.AsyncHTTPTransport, request: httpx.Request) -> Reply:
        trace = ConnTrace()
        request.extensions["trace"] = trace.acall
        try:
            response = await transport.handle_async_request(request)
            try:
                body = await aread_limited(response.aiter_bytes(), self.max_response_bytes)
            finally:
                await response.aclose()
        except (httpx.HTTPError, TooLarge) as exc:
            return Failed(exc, trace.new_connection)
        return Answer(response.status_code, response.headers.get("content-type", ""), body)

    async def alookup(self, token: str, client_ip: str | None = None) -> TokenInfo | None:
        """Async face of `lookup`; never blocks the event loop.

        A cancelled call (the caller's deadline) counts as a failure for the breaker.
        """
        flow = self._flow(token, client_ip)
        try:
            step, transport = next(flow), self._async_transport()
            while True:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                    step = next(flow)
                else:
                    step = flow.send(await self._asend(transport, step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            flow.close()

    async def aclose(self) -> None:
        """Close the async connections (from their event loop) and the sync ones."""
        transport, self._atransport, self._aloop = self._atransport, None, None
        if transport is not None:
            await transport.aclose()
        self.close()

    async def __aenter__(self) -> IntrospectionBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
