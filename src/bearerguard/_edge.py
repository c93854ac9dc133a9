"""Waiting, shared by the adapters: timeouts, single-flight and background refreshes.

No decisions here: these helpers call a backend, bound how long and how many calls
run, and hand results back to the core (`Guard`). Threads for WSGI and for sync
backends under ASGI; asyncio tasks for async backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from .errors import BackendUnavailable, ConfigurationError
from .flow import Guard, Lookup
from .metrics import Metrics
from .tokens import Invalidation, TokenInfo, fingerprint

__all__ = ["AsyncCaller", "SyncCaller", "wire_invalidations"]

logger = logging.getLogger("bearerguard")

LookupFn = Callable[[str], Any]


def _wrap(exc: BaseException) -> BackendUnavailable:
    if isinstance(exc, BackendUnavailable):
        return exc
    # A custom backend crashed: that is "cannot decide", never "allow" and never a 500.
    # Only the exception type is logged: its message could quote the token.
    err = BackendUnavailable(f"backend raised {type(exc).__name__}")
    err.__cause__ = exc
    return err


def _timed(lookup: LookupFn, metrics: Metrics | None) -> LookupFn:
    """`lookup`, recording each call's latency and outcome into `metrics`."""
    if metrics is None:
        return lookup

    def timed(token: str) -> Any:
        started = time.perf_counter()
        ok = False
        try:
            result = lookup(token)
            ok = True
            return result
        finally:
            metrics.backend_call(time.perf_counter() - started, ok)

    return timed


def _check_timeout(timeout: float) -> float:
    if not timeout > 0:
        raise ConfigurationError("backend_timeout must be a positive number of seconds")
    return float(timeout)


class SyncCaller:
    """Blocking lookups with a deadline, one call per token at a time (threads).

    Calls run on a bounded pool so a hung backend costs a 503 after `timeout`
    seconds instead of a stuck worker; at most `max_in_flight` calls are outstanding,
    beyond that requests get BackendUnavailable at once.
    """

    def __init__(
        self, lookup: LookupFn, guard: Guard, *, timeout: float = 5.0, max_in_flight: int = 16
    ) -> None:
        self._lookup = _timed(lookup, guard.metrics)
        self._guard = guard
        self._timeout = _check_timeout(timeout)
        self._max = max_in_flight
        self._pool = ThreadPoolExecutor(
            max_workers=max_in_flight, thread_name_prefix="bearerguard-lookup"
        )
        self._lock = threading.Lock()
        self._flights: dict[bytes, Future[Any]] = {}

    def _start(
        self, lk: Lookup, on_done: Callable[[Future[Any]], None] | None = None
    ) -> Future[Any]:
        """Return the flight for `lk`'s token, starting it if none is running.

        `on_done` runs, for a flight started here, before the flight is forgotten.
        """
        with self._lock:
            fut = self._flights.get(lk.key)
            if fut is not None:
                return fut
            if len(self._flights) >= self._max:
                raise BackendUnavailable("too many lookups in flight")
            fut = self._pool.submit(self._lookup, lk.token)
            self._flights[lk.key] = fut
        if on_done is not None:
            fut.add_done_callback(on_done)
        fut.add_done_callback(lambda _f: self._land(lk.key))
        return fut

    def _land(self, key: bytes) -> None:
        with self._lock:
            self._flights.pop(key, None)

    def lookup(self, lk: Lookup) -> TokenInfo | None:
        """Answer the core's `Lookup`, or raise BackendUnavailable."""
        fut = self._start(lk)
        try:
            result: TokenInfo | None = fut.result(self._timeout)
        except FutureTimeout:
            raise BackendUnavailable(f"backend gave no answer in {self._timeout:g}s") from None
        except Exception as exc:
            raise _wrap(exc) from exc
        return result

    def refresh(self, lk: Lookup) -> None:
        """Start a background touch of `lk`'s token unless one is already running."""
        key = lk.key

        def done(f: Future[Any]) -> None:
            if not f.cancelled():
                self._guard.refreshed(key, f.exception() or f.result())

        with contextlib.suppress(BackendUnavailable):
            self._start(lk, done)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class AsyncCaller:
    """Async lookups with a deadline and single-flight (asyncio tasks).

    A sync-only backend runs in a worker thread via `SyncCaller`'s pool, so the event
    loop never blocks.
    """

    def __init__(
        self, backend: object, guard: Guard, *, timeout: float = 5.0, max_in_flight: int = 16
    ) -> None:
        self._guard = guard
        self._timeout = _check_timeout(timeout)
        self._max = max_in_flight
        self._flights: dict[bytes, asyncio.Task[Any]] = {}
        alookup = getattr(backend, "alookup", None)
        lookup = getattr(backend, "lookup", None)
        self._threaded: SyncCaller | None = None
        if alookup is not None and inspect.iscoroutinefunction(alookup):
            self._alookup: Callable[[str], Any] = alookup
        elif callable(lookup):
            pool = SyncCaller(lookup, guard, timeout=timeout, max_in_flight=max_in_flight)
            self._threaded = pool
            self._alookup = self._in_thread
        else:
            raise ConfigurationError(
                "backend needs a lookup(token) method or an async alookup(token) method"
            )

    async def _in_thread(self, token: str) -> Any:
        assert self._threaded is not None
        fut = self._threaded._pool.submit(self._threaded._lookup, token)
        return await asyncio.wrap_future(fut)

    async def _call(self, token: str) -> TokenInfo | None:
        metrics = self._guard.metrics
        started = time.perf_counter()
        ok = False
        try:
            result: TokenInfo | None = await asyncio.wait_for(self._alookup(token), self._timeout)
            ok = True
        except asyncio.TimeoutError:
            raise BackendUnavailable(f"backend gave no answer in {self._timeout:g}s") from None
        except Exception as exc:
            raise _wrap(exc) from exc
        finally:
            if metrics is not None and self._threaded is None:
                metrics.backend_call(time.perf_counter() - started, ok)
        return result

    def _start(
        self, lk: Lookup, on_done: Callable[[asyncio.Task[Any]], None] | None = None
    ) -> asyncio.Task[Any]:
        task = self._flights.get(lk.key)
        if task is not None:
            return task
        if len(self._flights) >= self._max:
            raise BackendUnavailable("too many lookups in flight")
        task = asyncio.ensure_future(self._call(lk.token))
        self._flights[lk.key] = task
        key = lk.key
        if on_done is not None:
            task.add_done_callback(on_done)

        def land(t: asyncio.Task[Any]) -> None:
            self._flights.pop(key, None)
            if not t.cancelled():
                t.exception()  # mark retrieved: followers may all have gone away

        task.add_done_callback(land)
        return task

    async def lookup(self, lk: Lookup) -> TokenInfo | None:
        """Answer the core's `Lookup`, or raise BackendUnavailable."""
        task = self._start(lk)
        # shield: one caller going away (client disconnect) must not cancel the call
        # the others are waiting on.
        result: TokenInfo | None = await asyncio.shield(task)
        return result

    def refresh(self, lk: Lookup) -> None:
        """Start a background touch of `lk`'s token unless one is already running."""
        key = lk.key

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled():
                self._guard.refreshed(key, t.exception() or t.result())

        with contextlib.suppress(BackendUnavailable):
            self._start(lk, done)

    def close(self) -> None:
        if self._threaded is not None:
            self._threaded.close()


def wire_invalidations(backend: object, guard: Guard) -> Callable[[], None] | None:
    """Subscribe the guard's cache to the backend's revocations, if it announces any."""
    subscribe = getattr(backend, "subscribe", None)
    if not callable(subscribe):
        return None
    cache = guard.cache

    def on_invalidation(event: Invalidation) -> None:
        if event.kind == "key":
            n = cache.evict_key(event.value)
            logger.info("key %s revoked: evicted %d cached tokens", event.value, n)
        else:
            cache.evict(event.value)
            logger.info("token %s revoked: evicted", fingerprint(event.value))

    unsubscribe: Callable[[], None] = subscribe(on_invalidation)
    return unsubscribe
