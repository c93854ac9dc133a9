"""`JWTBackend`: the backend itself, its HTTP clients and its two faces.

`lookup` and `alookup` drive one shared generator (`JWTBackend._check`) and fetch the
keys with one shared flow (`discover`, `fetch_jwks`); the rules live in the sibling
modules. The package docstring (`bearerguard.backends.jwt`) describes the checks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable
from types import TracebackType
from typing import Any

import httpx

from ...errors import BackendUnavailable, ConfigurationError
from ...tokens import TokenInfo, fingerprint, token_key
from .claims import verify_access_token
from .compact import header_problem, looks_like_jwt, parse_compact
from .fetch import Answer, Get, answer_of, discover, fetch_jwks, is_absolute_url
from .keys import (
    DEFAULT_ALGORITHMS,
    FAMILIES,
    UNAVAILABLE,
    UNKNOWN,
    Fetch,
    KeyRing,
    VerifyingKey,
)

__all__ = ["JWTBackend"]

logger = logging.getLogger("bearerguard.jwt")


class JWTBackend:
    """Check RFC 9068 JWT access tokens locally against the issuer's JWKS, sync and async.

    ``JWTBackend(issuer="https://idp.example/realms/api", audience="https://api.example")``
    finds the JWKS through the issuer's RFC 8414 or OpenID Connect metadata (whose
    ``issuer`` must equal `issuer`); ``jwks_url=`` names it directly. See the module
    docstring for the checks. `accepts(token)` says whether the token looks like a JWT
    (`ChainBackend` routes on it). `lookup` answers None for any token that fails a
    check (the middleware: 401 ``invalid_token``) and raises BackendUnavailable when
    no usable key can be had (503).

    Options: `algorithms` (default RS256, ES256, EdDSA), `leeway` (seconds of clock
    skew, default 10), `refetch_interval` (unknown ``kid``: at most one fetch this
    often, default 15 s), `retry_interval` (after a failed fetch, default 5 s),
    `timeout` (per HTTP request, default 2 s), `max_response_bytes`, `verify`
    (httpx TLS verification), `clock` (wall-clock seconds).

    Security: use https for the issuer and the JWKS outside loopback (the keys decide
    who gets in). Tokens are never logged; refusals are logged at INFO with the
    token's fingerprint and the reason.
    """

    #: Every call returns or raises within its own HTTP timeouts.
    self_timed = True

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = 10.0,
        refetch_interval: float = 15.0,
        retry_interval: float = 5.0,
        timeout: float = 2.0,
        max_response_bytes: int = 256 * 1024,
        verify: Any = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not is_absolute_url(issuer):
            raise ConfigurationError("issuer must be an absolute http(s) URL")
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("audience is required (RFC 9068 §4: aud is checked)")
        if jwks_url is not None and not is_absolute_url(jwks_url):
            raise ConfigurationError("jwks_url must be an absolute http(s) URL")
        algs = tuple(algorithms)
        unknown = [a for a in algs if a not in FAMILIES]
        if not algs or unknown:
            raise ConfigurationError(
                f"algorithms must be among {', '.join(FAMILIES)} (HMAC and none never are)"
            )
        for name, value in (("leeway", leeway), ("timeout", timeout)):
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigurationError(f"{name} must be a non-negative number of seconds")
        if not (0 < refetch_interval <= 60 and 0 < retry_interval <= 60):
            # "A key the issuer really added is picked up within a minute."
            raise ConfigurationError("refetch_interval and retry_interval must be in (0, 60]")
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.algorithms = frozenset(algs)
        self.leeway = float(leeway)
        self.max_response_bytes = int(max_response_bytes)
        self.ring = KeyRing(
            refetch_interval=refetch_interval,
            retry_interval=retry_interval,
            default_max_age=300.0,
        )
        self._clock = clock
        self._client_kwargs: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout or 2.0),
            "verify": verify,
            "follow_redirects": False,
            "headers": {"Accept": "application/json"},
        }
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._alock: asyncio.Lock | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"JWTBackend(issuer={self.issuer!r}, audience={self.audience!r})"

    def accepts(self, token: str) -> bool:
        """Whether `token` is shaped like a JWT (three base64url parts, JSON header)."""
        return looks_like_jwt(token)

    # -- the flow both faces drive ---------------------------------------------------

    def _check(self, token: str) -> Generator[Fetch, None, TokenInfo | None]:
        """Decide one token; yields `Fetch` when the keys must be fetched first."""
        compact = parse_compact(token)
        if compact is None:
            return self._refuse(token, "not a JWT")
        header = compact.header
        problem = header_problem(header, self.algorithms)
        if problem is not None:
            return self._refuse(token, problem)
        kid: str | None = header.get("kid")
        for _ in range(3):
            step = self.ring.plan(kid, header["alg"], self._clock())
            if step is UNKNOWN:
                return self._refuse(token, "no key with this kid")
            if step is UNAVAILABLE:
                raise BackendUnavailable("no usable key from the issuer yet")
            if isinstance(step, Fetch):
                yield step
                continue
            if isinstance(step, VerifyingKey):
                result = verify_access_token(
                    compact,
                    step,
                    issuer=self.issuer,
                    audience=self.audience,
                    leeway=self.leeway,
                    now=self._clock(),
                )
                return result if isinstance(result, TokenInfo) else self._refuse(token, result)
        raise BackendUnavailable("no usable key from the issuer")

    def _refuse(self, token: str, reason: str | None) -> TokenInfo | None:
        logger.info("refused JWT %s: %s", fingerprint(token_key(token)), reason)
        return None

    def _fetch_flow(self, generation: int) -> Generator[Get, Answer, tuple[Any, float] | None]:
        """Find the JWKS (through the metadata unless `jwks_url`) and fetch it.

        None at once when `generation` has moved on: another face fetched meanwhile.
        """
        if self.ring.generation != generation:
            return None
        url = self.jwks_url
        if url is None:
            url = self.jwks_url = yield from discover(self.issuer)
        return (yield from fetch_jwks(url, self.ring.default_max_age))

    def _landed(self, outcome: tuple[Any, float] | BackendUnavailable | None) -> None:
        if outcome is None:
            return
        now = self._clock()
        if isinstance(outcome, BackendUnavailable):
            logger.warning("fetching the keys of %s failed: %s", self.issuer, outcome)
            self.ring.failed(now)
            return
        jwks, age = outcome
        if self.ring.install(jwks, age, now, self.algorithms) == 0:
            logger.warning("the JWKS of %s has no usable key; keeping the old keys", self.issuer)

    def _landing(self) -> _Landing:
        return _Landing(self._landed, lambda: self.ring.failed(self._clock()))

    def _limit(self, body: bytearray) -> None:
        if len(body) > self.max_response_bytes:
            raise BackendUnavailable("answer too large")

    # -- sync face -------------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._client_kwargs)
            return self._client

    def _get(self, url: str) -> Answer:
        buf = bytearray()
        try:
            with self._sync_client().stream("GET", url) as r:
                for chunk in r.iter_bytes():
                    buf += chunk
                    self._limit(buf)
                return answer_of(r, bytes(buf))
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{type(exc).__name__} fetching {url}") from exc

    def _fetch(self, generation: int) -> None:
        # Single flight: whoever holds the lock fetches; the others wait for it and
        # then plan again with the keys it brought (or its failure).
        with self._fetch_lock, self._landing():
            flow = self._fetch_flow(generation)
            get = next(flow)
            while True:
                get = flow.send(self._get(get.url))

    def lookup(self, token: str) -> TokenInfo | None:
        """Check `token`; None if it is not a valid access token. Raises BackendUnavailable."""
        generation = self.ring.generation if self.ring.refresh_due(self._clock()) else None
        try:
            flow = self._check(token)
            try:
                step = next(flow)
                while True:
                    self._fetch(step.generation)
                    step = next(flow)
            except StopIteration as stop:
                result: TokenInfo | None = stop.value
                return result
        finally:
            if generation is not None:
                # The refresh starts once this check is done, in a thread of its own: the
                # request that found the keys due is answered with the keys it found (as
                # on the async face, whose refresh task runs at the check's first await).
                threading.Thread(
                    target=self._fetch, args=(generation,), name="bearerguard-jwks", daemon=True
                ).start()

    def close(self) -> None:
        """Close the sync HTTP client (the async one: `aclose`)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- async face ------------------------------------------------------------------

    def _async_parts(self) -> tuple[httpx.AsyncClient, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._alock is None or self._aloop is not loop:
            self._aclient = httpx.AsyncClient(**self._client_kwargs)
            self._alock = asyncio.Lock()
            self._aloop = loop
        return self._aclient, self._alock

    async def _aget(self, url: str) -> Answer:
        client, _ = self._async_parts()
        buf = bytearray()
        try:
            async with client.stream("GET", url) as r:
                async for chunk in r.aiter_bytes():
                    buf += chunk
                    self._limit(buf)
                return answer_of(r, bytes(buf))
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{type(exc).__name__} fetching {url}") from exc

    async def _afetch(self, generation: int) -> None:
        _, lock = self._async_parts()
        async with lock:
            with self._landing():
                flow = self._fetch_flow(generation)
                get = next(flow)
                while True:
                    get = flow.send(await self._aget(get.url))

    async def alookup(self, token: str) -> TokenInfo | None:
        """Async face of `lookup`; fetches never block the event loop."""
        if self.ring.refresh_due(self._clock()):
            task = asyncio.ensure_future(self._afetch(self.ring.generation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        flow = self._check(token)
        try:
            step = next(flow)
            while True:
                await self._afetch(step.generation)
                step = next(flow)
        except StopIteration as stop:
            result: TokenInfo | None = stop.value
            return result

    async def aclose(self) -> None:
        """Close the async client (from its event loop) and the sync client."""
        for task in list(self._tasks):
            task.cancel()
        client, self._aclient, self._aloop, self._alock = self._aclient, None, None, None
        if client is not None:
            await client.aclose()
        self.close()


class _Landing:
    """Where a fetch flow ends, for both faces: with the flow's outcome, or its failure.

    The flow's return value (`StopIteration`) or its `BackendUnavailable` goes to
    `landed`; anything else (cancelled or crashed) calls `failed`, so the ring is never
    left waiting for this fetch, and propagates.
    """

    __slots__ = ("failed", "landed")

    def __init__(
        self,
        landed: Callable[[tuple[Any, float] | BackendUnavailable | None], None],
        failed: Callable[[], None],
    ) -> None:
        self.landed = landed
        self.failed = failed

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if isinstance(exc, StopIteration):
            self.landed(exc.value)
            return True
        if isinstance(exc, BackendUnavailable):
            self.landed(exc)
            return True
        if exc is not None:
            self.failed()
        return False
