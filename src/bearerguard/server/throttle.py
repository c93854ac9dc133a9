"""Slowing down repeated failed logins for one key id (per process, no I/O).

The limit: after `max_failures` failed authentications for a key id within `window`
seconds, further attempts for that key id are refused with 429 and ``Retry-After``
(without checking the secret, and without counting them as failures) until the oldest
of those failures is `window` seconds old. A success clears the key id's record. The
real owner is therefore never locked out for longer than `window` seconds after the
last burst of failures.

Failures are counted when an attempt completes: a burst of parallel attempts can pass
the limit by as many as are in flight at once. (Secrets have 256 random bits; the
throttle is a brake on noise and log spam, not the thing that makes guessing hopeless.)

State lives in this process's memory: with several service processes each keeps its
own count, so the effective limit is `max_failures` per process. At most `max_tracked`
key ids are remembered; beyond that the least recently failed are forgotten, so memory
stays bounded under a spray of made-up key ids.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from ..errors import ConfigurationError

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """Count failed client authentications per key id in a sliding window."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        max_tracked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or not window > 0 or max_tracked < 1:
            raise ConfigurationError("login throttle needs max_failures >= 1 and window > 0")
        self.max_failures = max_failures
        self.window = float(window)
        self._max_tracked = max_tracked
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key_id: str, now: float) -> deque[float] | None:
        times = self._failures.get(key_id)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key_id]
            return None
        return times

    def retry_after(self, key_id: str) -> int | None:
        """Seconds the caller must wait before trying `key_id` again, None if it may try."""
        with self._lock:
            now = self._clock()
            times = self._recent(key_id, now)
            if times is None or len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, key_id: str) -> None:
        """Record a failed authentication for `key_id`."""
        with self._lock:
            now = self._clock()
            times = self._recent(key_id, now)
            if times is None:
                times = self._failures[key_id] = deque(maxlen=self.max_failures)
            times.append(now)
            self._failures.move_to_end(key_id)
            while len(self._failures) > self._max_tracked:
                self._failures.popitem(last=False)

    def succeeded(self, key_id: str) -> None:
        """Forget the failures of `key_id` after a successful authentication."""
        with self._lock:
            self._failures.pop(key_id, None)
