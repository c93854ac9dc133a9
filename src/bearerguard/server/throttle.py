"""Slowing down wrong guesses of key secrets (per process, no I/O).

The rule (docs/design.md H3): the right secret is always accepted — it is checked, in constant
time, on every attempt, throttled or not — so failed logins can never lock a key's
owner out. Only wrong guesses are slowed: after `max_failures` failures within
`window` seconds for one key id, or from one source address, a further wrong guess
gets 429 with ``Retry-After`` (without being counted again) until the oldest of those
failures is `window` seconds old.

Two tables, neither of which an attacker can flush:

* per key id, holding only key ids that exist (a made-up key id is never written),
  so spraying made-up ids cannot push a real key's count out;
* per source address (IPv6 grouped by /64, what one client usually holds), bounded by
  `max_tracked` with the least recently failed forgotten first: to push an address
  out, an attacker needs that many addresses of their own, and the key-id table still
  slows guesses at any one key.

A success does not clear a count: the owner is not slowed anyway, and clearing would
hand an attacker a fresh set of guesses at every login of the owner.

Failures are counted when an attempt completes: a burst of parallel attempts can pass
the limit by as many as are in flight at once. (Secrets have 256 random bits; the
throttle is a brake on noise and log spam, not the thing that makes guessing hopeless.)
State lives in this process's memory: with several service processes each keeps its
own count: that is what `LoginThrottle` does.

`SharedLoginThrottle` keeps the same two tables in Redis when the store is Redis, so N
service replicas enforce one limit: each subject (an existing key id, a source address,
an account name) is one Redis list of failure times under its own hash tag (each
script touches one key, so it runs on Redis Cluster too), expiring `window` seconds
after its last failure. Times come from the Redis server's clock, so replicas with
skewed clocks agree. If Redis fails while a wrong guess is being recorded, the guess
gets 503 ``temporarily_unavailable`` (it is refused either way, and nothing is heard
from it); the right secret was checked before the throttle was asked, so a Redis
failure can never turn it away. `default_throttle(store)` picks the shared throttle
for a Redis store and the per-process one for any other.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ConfigurationError

__all__ = ["LoginThrottle", "SharedLoginThrottle", "Throttle", "default_throttle"]


class Throttle(Protocol):
    """What the auth service asks a throttle (per process or shared)."""

    async def awrong_guess(
        self, key_id: str | None, source: str | None = None, *, known: bool = True
    ) -> int | None:
        """A wrong guess: seconds to wait if throttled (not counted), else count it, None."""
        ...


class ScriptRunner(Protocol):
    """A store that runs Lua scripts on Redis (`RedisStore`)."""

    prefix: str

    async def arun_script(self, lua: str, keys: list[str], args: list[str]) -> Any:
        """Run `lua` with `keys` and `args`; StoreUnavailable when Redis fails."""
        ...


class _Window:
    """Failure times per name in a sliding window; the least recently failed go first."""

    def __init__(self, max_failures: int, window: float, max_tracked: int) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_tracked = max_tracked
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, name: str, now: float) -> deque[float] | None:
        times = self.failures.get(name)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.failures[name]
            return None
        return times

    def wait(self, name: str, now: float) -> float | None:
        times = self._recent(name, now)
        if times is None or len(times) < self.max_failures:
            return None
        return times[0] + self.window - now

    def add(self, name: str, now: float) -> None:
        times = self._recent(name, now)
        if times is None:
            times = self.failures[name] = deque(maxlen=self.max_failures)
        times.append(now)
        self.failures.move_to_end(name)
        while len(self.failures) > self.max_tracked:
            self.failures.popitem(last=False)


def _source_name(source: str) -> str:
    """The throttle's name for a client address: IPv4 as is, IPv6 by its /64."""
    try:
        addr = ipaddress.ip_address(source)
    except ValueError:
        return source
    if addr.version == 6:
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return source


class LoginThrottle:
    """Count wrong guesses per existing key id and per source address (module docstring).

    `max_tracked` bounds the source table; the key-id table holds only real key ids
    (it is bounded by `max_keys` all the same, as a guard against a store with
    millions of keys).
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        max_tracked: int = 10_000,
        max_keys: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or not window > 0 or max_tracked < 1 or max_keys < 1:
            raise ConfigurationError("login throttle needs max_failures >= 1 and window > 0")
        self.max_failures = max_failures
        self.window = float(window)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys = _Window(max_failures, self.window, max_keys)
        self._sources = _Window(max_failures, self.window, max_tracked)

    def retry_after(self, key_id: str | None, source: str | None = None) -> int | None:
        """Seconds before a wrong guess for `key_id` from `source` is heard again.

        None: not throttled. Ask only after the secret turned out wrong.
        """
        with self._lock:
            now = self._clock()
            waits = [
                w
                for w in (
                    self._keys.wait(key_id, now) if key_id is not None else None,
                    self._sources.wait(_source_name(source), now) if source else None,
                )
                if w is not None
            ]
        if not waits:
            return None
        return max(1, math.ceil(max(waits)))

    def failed(self, key_id: str | None, source: str | None = None, *, known: bool = True) -> None:
        """Record a wrong guess for `key_id` from `source`.

        `known` False: no key has that id; only the source is counted, so made-up key
        ids never enter the key-id table.
        """
        with self._lock:
            now = self._clock()
            if key_id is not None and known:
                self._keys.add(key_id, now)
            if source:
                self._sources.add(_source_name(source), now)

    def succeeded(self, key_id: str) -> None:
        """A right secret for `key_id`: nothing to do (a success clears no count)."""
        return None

    async def awrong_guess(
        self, key_id: str | None, source: str | None = None, *, known: bool = True
    ) -> int | None:
        """`retry_after`, and when it is None `failed`: the service's one call."""
        wait = self.retry_after(key_id, source)
        if wait is None:
            self.failed(key_id, source, known=known)
        return wait


# KEYS[1] one subject's failure times, oldest first (ms); ARGV[1] 'wait' or 'add',
# ARGV[2] max failures, ARGV[3] window (ms), ARGV[4] now (ms; '' = the server's clock).
# 'wait' returns the ms before a wrong guess is heard again, or -1; 'add' appends now,
# keeps the newest max failures, and lets the list expire a window after it. Times
# older than the window are dropped first.
_LUA_THROTTLE = """
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window = tonumber(ARGV[3])
local max = tonumber(ARGV[2])
while true do
  local first = redis.call('LINDEX', KEYS[1], 0)
  if not first or tonumber(first) > now - window then break end
  redis.call('LPOP', KEYS[1])
end
if ARGV[1] == 'add' then
  redis.call('RPUSH', KEYS[1], string.format('%d', now))
  redis.call('LTRIM', KEYS[1], -max, -1)
  redis.call('PEXPIRE', KEYS[1], window)
  return -1
end
if redis.call('LLEN', KEYS[1]) < max then return -1 end
return tonumber(redis.call('LINDEX', KEYS[1], 0)) + window - now
"""


def throttle_key(prefix: str, table: str, kind: str, subject: str) -> str:
    """Redis key of one throttled subject: its own hash tag, so one slot per script.

    The subject appears only as a digest: key ids, account names and addresses of any
    length or character make a key of fixed shape (and braces in a name cannot move
    the hash tag).
    """
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{prefix}:throttle:{table}:{kind}:{{{digest}}}"


class SharedLoginThrottle:
    """`LoginThrottle`'s rules with its tables in Redis, shared by every replica.

    `store` is the service's `RedisStore`; `table` separates the ``/login`` throttle
    (``"login"``) from the panel's sign-in throttle (``"panel"``). `clock` (seconds)
    replaces the Redis server's clock, for tests only. Memory: one short list per
    subject that failed in the last `window` seconds, each expiring on its own; made-up
    key ids are never written (only their source is).
    """

    def __init__(
        self,
        store: ScriptRunner,
        *,
        table: str = "login",
        max_failures: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if max_failures < 1 or not window >= 0.001:
            raise ConfigurationError("login throttle needs max_failures >= 1 and window > 0")
        self.store = store
        self.table = table
        self.max_failures = max_failures
        self.window = float(window)
        self._window_ms = str(math.ceil(self.window * 1000))
        self._clock = clock

    async def _run(self, mode: str, kind: str, subject: str) -> int:
        now = "" if self._clock is None else str(int(self._clock() * 1000))
        key = throttle_key(self.store.prefix, self.table, kind, subject)
        args = [mode, str(self.max_failures), self._window_ms, now]
        return int(await self.store.arun_script(_LUA_THROTTLE, [key], args))

    async def awrong_guess(
        self, key_id: str | None, source: str | None = None, *, known: bool = True
    ) -> int | None:
        """As `LoginThrottle.awrong_guess`; StoreUnavailable (503) if Redis fails."""
        subjects: list[tuple[str, str]] = []
        if key_id is not None and known:
            subjects.append(("key", key_id))
        if source:
            subjects.append(("src", _source_name(source)))
        waits = [w for w in [await self._run("wait", k, s) for k, s in subjects] if w >= 0]
        if waits:
            return max(1, math.ceil(max(waits) / 1000))
        for kind, subject in subjects:
            await self._run("add", kind, subject)
        return None


def default_throttle(store: object, table: str = "login") -> Throttle:
    """The shared throttle for a store that runs Redis scripts, else a per-process one."""
    if callable(getattr(store, "arun_script", None)) and isinstance(
        getattr(store, "prefix", None), str
    ):
        shared: Any = store
        return SharedLoginThrottle(shared, table=table)
    return LoginThrottle()
