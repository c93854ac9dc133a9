"""Waiting, shared by the adapters: timeouts, single-flight and background refreshes.

No decisions here: these helpers call a backend, bound how long and how many calls
run, and hand results back to the core (`Guard`). Threads for WSGI and for sync
backends under ASGI; asyncio tasks for async backends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
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

    The first request for a token is the leader: it calls the backend, and requests
    for the same token that arrive meanwhile wait for its answer (at most `timeout`
    seconds). A backend whose `self_timed` attribute is true (the built-in ones: each
    call returns or raises within its own timeouts) is called in the leader's own
    thread. Any other backend runs on a bounded pool, so a hung custom backend costs a
    503 after `timeout` seconds instead of a stuck worker. At most `max_in_flight`
    lookups are outstanding; beyond that, BackendUnavailable at once.
    """

    def __init__(
        self,
        lookup: LookupFn,
        guard: Guard,
        *,
        timeout: float = 5.0,
        max_in_flight: int = 16,
        self_timed: bool = False,
    ) -> None:
        self._lookup = _timed(lookup, guard.metrics)
        self._guard = guard
        self._timeout = _check_timeout(timeout)
        self._max = max_in_flight
        self._inline = self_timed
        self._pool = ThreadPoolExecutor(
            max_workers=max_in_flight, thread_name_prefix="bearerguard-lookup"
        )
        self._lock = threading.Lock()
        self._flights: dict[bytes, Future[Any]] = {}

    def _join(self, lk: Lookup, *, background: bool) -> tuple[Future[Any], bool]:
        """Return (the flight for `lk`'s token, whether the caller must run it)."""
        with self._lock:
            fut = self._flights.get(lk.key)
            if fut is not None:
                return fut, False
            if len(self._flights) >= self._max:
                raise BackendUnavailable("too many lookups in flight")
            if background or not self._inline:
                fut = self._pool.submit(self._lookup, lk.token)
                lead = False
            else:
                fut = Future()
                lead = True
            self._flights[lk.key] = fut
        fut.add_done_callback(lambda _f: self._land(lk.key))
        return fut, lead

    def _land(self, key: bytes) -> None:
        with self._lock:
            self._flights.pop(key, None)

    def lookup(self, lk: Lookup) -> TokenInfo | None:
        """Answer the core's `Lookup`, or raise BackendUnavailable."""
        fut, lead = self._join(lk, background=False)
        if lead:
            try:
                fut.set_result(self._lookup(lk.token))
            except Exception as exc:
                fut.set_exception(_wrap(exc))
        try:
            result: TokenInfo | None = fut.result(self._timeout)
        except FutureTimeout:
            raise BackendUnavailable(f"backend gave no answer in {self._timeout:g}s") from None
        except Exception as exc:
            raise _wrap(exc) from exc
        return result

    def refresh(self, lk: Lookup) -> None:
        """Start a background touch of `lk`'s token unless one is already running."""
        try:
            fut, _ = self._join(lk, background=True)
        except BackendUnavailable:
            return
        key = lk.key

        def done(f: Future[Any]) -> None:
            if not f.cancelled():
                self._guard.refreshed(key, f.exception() or f.result())

        fut.add_done_callback(done)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


if sys.version_info >= (3, 11):

    async def _within(coro: Awaitable[Any], seconds: float) -> Any:
        async with asyncio.timeout(seconds):
            return await coro

else:  # pragma: no cover - Python 3.10

    async def _within(coro: Awaitable[Any], seconds: float) -> Any:
        return await asyncio.wait_for(coro, seconds)


_RETRY = object()  # a leader that was cancelled: its followers try again


class AsyncCaller:
    """Async lookups with a deadline and single-flight.

    The first request for a token awaits the backend itself (no task, no extra turn
    of the event loop); requests for the same token that arrive meanwhile await its
    answer. A self-timed backend is awaited as is, any other within `timeout`.
    Background refreshes run as tasks. A sync-only backend runs in a worker thread, so
    the event loop never blocks.
    """

    def __init__(
        self, backend: object, guard: Guard, *, timeout: float = 5.0, max_in_flight: int = 16
    ) -> None:
        self._guard = guard
        self._timeout = _check_timeout(timeout)
        self._max = max_in_flight
        self._flights: dict[bytes, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        alookup = getattr(backend, "alookup", None)
        lookup = getattr(backend, "lookup", None)
        self._threaded: SyncCaller | None = None
        # A self-timed backend bounds its own calls (see SyncCaller): no timer of ours.
        self._self_timed = getattr(backend, "self_timed", False) is True
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
            if self._self_timed:
                result: TokenInfo | None = await self._alookup(token)
            else:
                result = await _within(self._alookup(token), self._timeout)
            ok = True
        except asyncio.TimeoutError:
            raise BackendUnavailable(f"backend gave no answer in {self._timeout:g}s") from None
        except Exception as exc:
            raise _wrap(exc) from exc
        finally:
            if metrics is not None and self._threaded is None:
                metrics.backend_call(time.perf_counter() - started, ok)
        return result

    async def lookup(self, lk: Lookup) -> TokenInfo | None:
        """Answer the core's `Lookup`, or raise BackendUnavailable."""
        key = lk.key
        while True:
            waiter = self._flights.get(key)
            if waiter is None:
                break
            # shield: this caller going away must not cancel the others' answer.
            answer = await asyncio.shield(waiter)
            if answer is not _RETRY:
                result: TokenInfo | None = answer
                return result
        if len(self._flights) >= self._max:
            raise BackendUnavailable("too many lookups in flight")
        waiter = asyncio.get_running_loop().create_future()
        self._flights[key] = waiter
        try:
            result = await self._call(lk.token)
        except BackendUnavailable as exc:
            waiter.set_exception(exc)
            waiter.exception()  # retrieved: there may be no follower to read it
            raise
        except BaseException:
            waiter.set_result(_RETRY)  # cancelled: a follower takes over
            raise
        else:
            waiter.set_result(result)
            return result
        finally:
            del self._flights[key]

    def refresh(self, lk: Lookup) -> None:
        """Start a background touch of `lk`'s token unless one is already running."""
        if lk.key in self._flights or len(self._tasks) >= self._max:
            return
        task = asyncio.ensure_future(self._refresh(lk))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, lk: Lookup) -> None:
        if lk.key in self._flights:
            return
        try:
            answer: object = await self.lookup(lk)
        except BackendUnavailable as exc:
            answer = exc
        self._guard.refreshed(lk.key, answer)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
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
