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
own count.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from ..errors import ConfigurationError

__all__ = ["LoginThrottle"]


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
