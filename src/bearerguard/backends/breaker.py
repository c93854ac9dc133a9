"""A circuit breaker as a small state machine: no I/O, clock injected.

States::

    closed ──(threshold consecutive failures)──► open
    open ──(reset_after seconds pass; the next call is the probe)──► half_open
    half_open ──(probe succeeds)──► closed
    half_open ──(probe fails)──► open (for another reset_after seconds)

While open, and while a half-open probe is out, `acquire()` says no and the caller
fails fast instead of waiting on a dead service. Shared by a backend's sync and async
faces; the lock guards bookkeeping only, never I/O.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Literal

from ..errors import ConfigurationError

__all__ = ["CircuitBreaker", "State"]

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Open after `threshold` consecutive failures; probe once after `reset_after` s.

    Use: ``if not breaker.acquire(): fail fast``; then exactly one of `success()` or
    `failure()` per acquired call (a call abandoned half-way counts as a failure).
    `clock` is monotonic seconds, injectable for tests.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_lock",
        "_opened_at",
        "_probing",
        "_state",
        "reset_after",
        "threshold",
    )

    def __init__(
        self,
        threshold: int = 5,
        reset_after: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ConfigurationError("breaker_threshold must be at least 1")
        if not (reset_after > 0 and math.isfinite(reset_after)):
            raise ConfigurationError("breaker_reset must be a positive number of seconds")
        self.threshold = int(threshold)
        self.reset_after = float(reset_after)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> State:
        """The current state; an open breaker past its reset time reads as half-open."""
        with self._lock:
            if self._state == "open" and self._clock() >= self._opened_at + self.reset_after:
                return "half_open"
            return self._state

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        with self._lock:
            if self._state != "open":
                return 0.0
            return max(0.0, self._opened_at + self.reset_after - self._clock())

    def acquire(self) -> bool:
        """Whether a call may go out now; True for the single half-open probe."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self._clock() < self._opened_at + self.reset_after:
                    return False
                self._state = "half_open"
                self._probing = False
            if self._probing:
                return False
            self._probing = True
            return True

    def success(self) -> State:
        """Record a call that reached the service and got a usable answer."""
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._probing = False
            return self._state

    def failure(self) -> State:
        """Record a failed call; returns the state afterwards."""
        with self._lock:
            if self._state == "half_open":
                self._open()
            elif self._state == "closed":
                self._failures += 1
                if self._failures >= self.threshold:
                    self._open()
            # Failures of calls that were let out before the breaker opened change nothing.
            return self._state

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probing = False
        self._failures = 0
