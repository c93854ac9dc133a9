"""The ``rate_limit`` middleware option: requests per second per API key, with a burst.

``BearerGuardMiddleware(app, backend=…, rate_limit=RateLimit(10, burst=20))`` (or
``rate_limit=10`` for a burst of 10, or ``rate_limit=(10, 20)``). Each API key may send
`burst` requests at once and `rate` a second after that (GCRA, the token bucket as one
timestamp per key). A request over the limit gets 429 with ``Retry-After`` and the
IETF ``RateLimit``/``RateLimit-Policy`` fields (draft-ietf-httpapi-ratelimit-headers,
structured-field form) and a JSON body ``{"error": "rate_limited", …}``; the app does
not run. An allowed HTTP response carries the same two fields, so a client sees how
many requests it has left (``r``) and when its whole burst is back (``t``, seconds).

Where the count lives:

* the middleware's backend is a `StoreBackend` over a `RedisStore`: in that Redis,
  one key per API key (``<prefix>:ratelimit:{<key id>}``: its own hash tag, so the
  script runs on Redis Cluster), one Lua script call per request, on the Redis
  server's clock — every resource-server process on that Redis enforces one limit.
  If Redis fails, the request is counted in this process instead (a warning is
  logged once per outage): the limit degrades to per process, it does not vanish and
  it does not turn every request into an error;
* any other backend: in this process (memory bounded by `max_keys`; a key whose
  bucket is full again is forgotten first). N processes then allow N times the rate.

The limit applies after the token is accepted, to requests that carry an identity:
public paths and refused requests are not counted. With ``rate_limit`` unset nothing
here runs.

The decision is sans-I/O (`gcra`); the Redis script is the same arithmetic in Lua.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._types import ASGIApp, Receive, Scope, Send
from .errors import BackendUnavailable, ConfigurationError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "LimitedASGI",
    "LimitedWSGI",
    "RateLimit",
    "RateLimiter",
    "Verdict",
    "gcra",
    "rate_limiter",
]

logger = logging.getLogger("bearerguard")

_SLACK = 1e-9

POLICY = "per-key"
"""The policy's name in ``RateLimit-Policy`` and ``RateLimit``."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate` requests per second per API key after a `burst` (default: `rate`, ≥ 1).

    `max_keys` bounds the per-process table. Raises ConfigurationError for values that
    cannot work.
    """

    rate: float
    burst: int = 0
    max_keys: int = 100_000

    def __post_init__(self) -> None:
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ConfigurationError("rate_limit rate must be a number of requests per second")
        if not (math.isfinite(rate) and rate > 0):
            raise ConfigurationError("rate_limit rate must be a positive, finite number")
        burst = self.burst
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise ConfigurationError("rate_limit burst must be a whole number, 1 or more")
        if burst == 0:
            object.__setattr__(self, "burst", max(1, math.ceil(rate)))
        if isinstance(self.max_keys, bool) or not isinstance(self.max_keys, int):
            raise ConfigurationError("rate_limit max_keys must be a whole number")
        if self.max_keys < 1:
            raise ConfigurationError("rate_limit max_keys must be at least 1")

    @property
    def interval(self) -> float:
        """Seconds between two requests at the steady rate."""
        return 1.0 / self.rate

    def policy_header(self) -> str:
        """``RateLimit-Policy``: the burst as quota, the seconds to refill it as window."""
        window = max(1, math.ceil(self.burst / self.rate))
        return f'"{POLICY}";q={self.burst};w={window}'

    @classmethod
    def of(cls, value: object) -> RateLimit:
        """A `RateLimit` from the option's value: itself, a rate, or (rate, burst)."""
        if isinstance(value, RateLimit):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, tuple) and len(value) == 2:
            return cls(*value)
        raise ConfigurationError(
            "rate_limit must be a RateLimit, a number of requests per second, "
            f"or a (rate, burst) pair, not {type(value).__name__}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """One request's outcome: `allowed`, requests `remaining` now, seconds to wait."""

    allowed: bool
    remaining: int
    retry_after: float


def gcra(tat: float | None, now: float, limit: RateLimit) -> tuple[float | None, Verdict]:
    """One step of the generic cell rate algorithm: (the key's new TAT, the verdict).

    `tat` is the key's theoretical arrival time (None: never seen, or forgotten). A
    request is allowed when, after adding it, the TAT stays within `burst` intervals of
    now. A refused request leaves the TAT as it was (returned as None: unchanged).
    """
    t = limit.interval
    base = now if tat is None or tat < now else tat
    new_tat = base + t
    allow_at = new_tat - limit.burst * t
    # A nanosecond of slack: burst * t - t is not exactly (burst - 1) * t in floats.
    if allow_at - now > _SLACK:
        return None, Verdict(False, 0, allow_at - now)
    return new_tat, Verdict(True, int((now - allow_at) / t + 1e-9), 0.0)


# KEYS[1] the key's TAT (ms); ARGV[1] interval (ms), ARGV[2] burst, ARGV[3] now (ms;
# '' = the server's clock). The arithmetic of `gcra`. Returns {allowed, remaining,
# ms to wait}.
_LUA_GCRA = """
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local t = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + t
local allow_at = new_tat - burst * t
if allow_at - now > 0.000001 then return {0, 0, math.ceil(allow_at - now)} end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil(new_tat - now))
return {1, math.floor((now - allow_at) / t + 1e-9), 0}
"""

_PLAIN_KEY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def ratelimit_key(prefix: str, key_id: str) -> str:
    """Redis key of one API key's TAT: the key id is the hash tag (a digest if odd)."""
    if not _PLAIN_KEY_ID.fullmatch(key_id):
        key_id = hashlib.sha256(key_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{prefix}:ratelimit:{{{key_id}}}"


class RateLimiter:
    """Counts requests per API key: in Redis through `store`, else in this process.

    `store` is a `RedisStore` (anything with `run_script`, `arun_script`, `prefix`) or
    None. `clock` (seconds) is injectable for tests; with a store it also replaces the
    Redis server's clock.
    """

    def __init__(
        self,
        limit: RateLimit,
        store: Any = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.limit = limit
        self.store = store
        self.shared = store is not None
        self._clock = clock
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._degraded = False
        self._interval_ms = repr(limit.interval * 1000)
        self._burst = str(limit.burst)
        self.policy = limit.policy_header()

    # -- in this process --------------------------------------------------------------
    def local(self, key_id: str) -> Verdict:
        """Count one request of `key_id` in this process's table."""
        now = self._clock() if self._clock is not None else time.monotonic()
        with self._lock:
            tats = self._tats
            new_tat, verdict = gcra(tats.get(key_id), now, self.limit)
            if new_tat is not None:
                tats[key_id] = new_tat
                tats.move_to_end(key_id)
                while len(tats) > self.limit.max_keys:
                    tats.popitem(last=False)
        return verdict

    # -- shared through Redis ---------------------------------------------------------
    def _script(self, key_id: str) -> tuple[list[str], list[str]]:
        now = "" if self._clock is None else repr(self._clock() * 1000)
        return [ratelimit_key(self.store.prefix, key_id)], [self._interval_ms, self._burst, now]

    def _verdict(self, reply: Any) -> Verdict:
        allowed, remaining, wait_ms = (int(x) for x in reply)
        if self._degraded:
            self._degraded = False
            logger.warning("rate limit: Redis answers again; the limit is shared again")
        return Verdict(bool(allowed), remaining, wait_ms / 1000)

    def _fallback(self, key_id: str, exc: Exception) -> Verdict:
        if not self._degraded:
            self._degraded = True
            # The type only: a client library's message can quote the command's arguments.
            logger.warning(
                "rate limit: Redis failed (%s); counting in this process", type(exc).__name__
            )
        return self.local(key_id)

    def check(self, key_id: str) -> Verdict:
        """Count one request of `key_id` (sync face)."""
        if self.store is None:
            return self.local(key_id)
        keys, args = self._script(key_id)
        try:
            return self._verdict(self.store.run_script(_LUA_GCRA, keys, args))
        except (BackendUnavailable, ValueError, TypeError) as exc:
            return self._fallback(key_id, exc)

    async def acheck(self, key_id: str) -> Verdict:
        """Count one request of `key_id` (async face)."""
        if self.store is None:
            return self.local(key_id)
        keys, args = self._script(key_id)
        try:
            return self._verdict(await self.store.arun_script(_LUA_GCRA, keys, args))
        except (BackendUnavailable, ValueError, TypeError) as exc:
            return self._fallback(key_id, exc)

    # -- the answer's fields ----------------------------------------------------------
    def fields(self, verdict: Verdict) -> list[tuple[str, str]]:
        """``RateLimit-Policy`` and ``RateLimit`` for an allowed request's response.

        ``r`` is the requests left now, ``t`` the seconds until the whole burst is back.
        """
        refill = max(0, math.ceil((self.limit.burst - verdict.remaining) * self.limit.interval))
        return [
            ("ratelimit-policy", self.policy),
            ("ratelimit", f'"{POLICY}";r={verdict.remaining};t={refill}'),
        ]

    # -- the refusal ------------------------------------------------------------------
    def refusal(self, verdict: Verdict) -> tuple[list[tuple[str, str]], bytes]:
        """Headers and body of the 429 for a refused `verdict`."""
        wait = max(1, math.ceil(verdict.retry_after))
        body = json.dumps(
            {
                "error": "rate_limited",
                "error_description": f"Too many requests for this API key; retry in {wait} s",
            },
            separators=(",", ":"),
        ).encode()
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
            ("retry-after", str(wait)),
            ("ratelimit-policy", self.policy),
            ("ratelimit", f'"{POLICY}";r={verdict.remaining};t={wait}'),
        ]
        return headers, body


def rate_limiter(value: object, backend: object) -> RateLimiter | None:
    """The limiter for the ``rate_limit`` option (None when unset).

    Shared through Redis when `backend` reads a store that runs Redis scripts
    (`StoreBackend` over `RedisStore`); per process otherwise.
    """
    if value is None:
        return None
    limit = RateLimit.of(value)
    store = getattr(backend, "store", None)
    shared = all(
        callable(getattr(store, name, None)) for name in ("run_script", "arun_script")
    ) and isinstance(getattr(store, "prefix", None), str)
    return RateLimiter(limit, store if shared else None)


def _key_id(identity: object) -> str | None:
    key_id = getattr(identity, "key_id", None)
    return key_id if isinstance(key_id, str) else None


class LimitedASGI:
    """Runs `app` for requests within the limit of their API key; 429 for the others.

    Sits inside `BearerGuardMiddleware`, after the identity is in ``scope``.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key_id = _key_id(scope.get("bearerguard"))
        if key_id is None:
            await self.app(scope, receive, send)
            return
        verdict = await self.limiter.acheck(key_id)
        if not verdict.allowed:
            await self._refuse(scope, verdict, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = [(k.encode(), v.encode()) for k, v in self.limiter.fields(verdict)]

        async def send_with_fields(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *fields]}
            await send(message)

        await self.app(scope, receive, send_with_fields)

    async def _refuse(self, scope: Scope, verdict: Verdict, send: Send) -> None:
        headers, body = self.limiter.refusal(verdict)
        raw = [(k.encode(), v.encode()) for k, v in headers]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 429, "headers": raw})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 429, "headers": raw})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": "rate_limited"})


class LimitedWSGI:
    """The WSGI twin of `LimitedASGI`, after ``environ["bearerguard.identity"]`` is set."""

    def __init__(self, app: WSGIApplication, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        key_id = _key_id(environ.get("bearerguard.identity"))
        if key_id is None:
            return self.app(environ, start_response)
        verdict = self.limiter.check(key_id)
        if not verdict.allowed:
            headers, body = self.limiter.refusal(verdict)
            start_response("429 Too Many Requests", headers)
            return [body]
        fields = self.limiter.fields(verdict)

        def start_with_fields(status: str, headers: Any, exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *fields], exc_info)

        return self.app(environ, start_with_fields)
