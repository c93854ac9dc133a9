"""Waiting, shared by the adapters: timeouts, single-flight and background refreshes.

No decisions here: these helpers call a backend, bound how long and how many calls
run, and hand results back to the core (`Guard`). Threads for WSGI and for sync
backends under ASGI; asyncio tasks for async backends.

Sharing (H2): at most `max_in_flight` lookups for requests run at once, and once half
of those slots are taken, an address that already holds a quarter of them gets no
more (BackendUnavailable, so a 503 for that address alone): a client spraying junk
tokens from one address cannot starve the others. Background refreshes of tokens in
use have a budget of their own (and, for a backend that runs in threads, a pool of
their own), so they never wait behind a spray.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ._drive import LookupFn, faces, with_client_ip
from ._timeout import within as _within
from .errors import BackendUnavailable, ConfigurationError, log_safe
from .flow import Guard, Lookup
from .metrics import Metrics
from .tokens import Invalidation, TokenInfo, fingerprint

__all__ = ["AsyncCaller", "SyncCaller", "guard_options", "wire_invalidations"]

logger = logging.getLogger("bearerguard")

FlightKey = tuple[bytes, "str | None"]


class _Slots:
    """Who holds the lookup slots for requests: the fair-share rule (no I/O, no lock).

    The caller serialises access (a lock under threads, the event loop under asyncio).
    """

    __slots__ = ("_held", "_max", "_share", "total")

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight must be at least 1")
        self._max = max_in_flight
        self._share = max(1, max_in_flight // 4)
        self._held: dict[str | None, int] = {}
        self.total = 0

    def take(self, client_ip: str | None) -> None:
        """Take a slot for `client_ip`, or raise BackendUnavailable."""
        if self.total >= self._max:
            raise BackendUnavailable("too many lookups in flight")
        held = self._held.get(client_ip, 0)
        if held >= self._share and self.total >= self._max // 2:
            raise BackendUnavailable("too many lookups in flight from this address")
        self._held[client_ip] = held + 1
        self.total += 1

    def give(self, client_ip: str | None) -> None:
        held = self._held[client_ip] - 1
        if held:
            self._held[client_ip] = held
        else:
            del self._held[client_ip]
        self.total -= 1


class _Lead:
    """The flight of a leader that calls a self-timed backend in its own thread.

    Its future is made when the first follower joins: most misses have none, and a
    `Future` (a condition, a lock) set and read per miss was a fair share of the WSGI
    miss work (docs/benchmarks.md, the cold paths). Read and set under the caller's lock.
    """

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future[Any] | None = None

    def follow(self) -> Future[Any]:
        if self.future is None:
            self.future = Future()
        return self.future


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

    def timed(token: str, client_ip: str | None) -> Any:
        started = time.perf_counter()
        ok = False
        try:
            result = lookup(token, client_ip)
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
    lookups for requests are outstanding, shared fairly between addresses (module
    docstring); beyond that, BackendUnavailable at once. Background refreshes run on a
    pool of their own, at most `max_in_flight` at a time.
    """

    def __init__(
        self,
        lookup: Callable[..., Any],
        guard: Guard,
        *,
        timeout: float = 5.0,
        max_in_flight: int = 16,
        self_timed: bool = False,
    ) -> None:
        self._lookup = _timed(with_client_ip(lookup), guard.metrics)
        self._guard = guard
        self._timeout = _check_timeout(timeout)
        self._max = max_in_flight
        self._slots = _Slots(max_in_flight)
        self._refreshing = 0
        self._inline = self_timed
        self._pool = ThreadPoolExecutor(
            max_workers=max_in_flight, thread_name_prefix="bearerguard-lookup"
        )
        self._refresh_pool = ThreadPoolExecutor(
            max_workers=max(2, max_in_flight // 4), thread_name_prefix="bearerguard-refresh"
        )
        self._lock = threading.Lock()
        self._flights: dict[FlightKey, Future[Any] | _Lead] = {}

    @classmethod
    def of(
        cls, backend: object, guard: Guard, *, timeout: float = 5.0, max_in_flight: int = 16
    ) -> SyncCaller:
        """A caller for `backend`'s sync face; ConfigurationError when it has none."""
        face = faces(backend)
        if face.lookup is None:
            raise ConfigurationError(
                f"{type(backend).__name__} has no sync lookup(token): WSGI cannot use an "
                "async-only backend; give it a lookup method or use the ASGI middleware"
            )
        return cls(
            face.lookup,
            guard,
            timeout=timeout,
            max_in_flight=max_in_flight,
            self_timed=face.self_timed,
        )

    def submit(self, lk: Lookup, *, background: bool = False) -> Future[Any]:
        """Run one backend call on a worker thread (the refresh pool for `background`)."""
        pool = self._refresh_pool if background else self._pool
        return pool.submit(self._lookup, lk.token, lk.client_ip)

    def _join(self, lk: Lookup, *, background: bool) -> Future[Any] | _Lead:
        """The flight for `lk`'s token and address: a `_Lead` when the caller must run it."""
        fk = (lk.key, lk.client_ip)
        with self._lock:
            flight = self._flights.get(fk)
            if flight is not None:
                return flight.follow() if isinstance(flight, _Lead) else flight
            if background:
                if self._refreshing >= self._max:
                    raise BackendUnavailable("too many refreshes in flight")
                self._refreshing += 1
                fut = self.submit(lk, background=True)
            else:
                self._slots.take(lk.client_ip)
                if self._inline:
                    lead = self._flights[fk] = _Lead()
                    return lead
                fut = self.submit(lk)
            self._flights[fk] = fut
        fut.add_done_callback(lambda _f: self._land(fk, background))
        return fut

    def _land(self, fk: FlightKey, background: bool) -> _Lead | Future[Any] | None:
        with self._lock:
            flight = self._flights.pop(fk, None)
            if background:
                self._refreshing -= 1
            else:
                self._slots.give(fk[1])
        return flight

    def _lead(self, lk: Lookup) -> TokenInfo | None:
        """Run the call in this thread (a self-timed backend bounds it), then land."""
        fk = (lk.key, lk.client_ip)
        try:
            answer: TokenInfo | None = self._lookup(lk.token, lk.client_ip)
        except BaseException as exc:
            err = _wrap(exc) if isinstance(exc, Exception) else None
            flight = self._land(fk, False)
            if isinstance(flight, _Lead) and flight.future is not None:
                # Interrupted (not an Exception): followers must not wait out the timeout.
                flight.future.set_exception(err or BackendUnavailable("lookup interrupted"))
            if err is None:
                raise
            raise err from err.__cause__  # `exc` itself, or wrapped by `_wrap`
        flight = self._land(fk, False)
        if isinstance(flight, _Lead) and flight.future is not None:
            flight.future.set_result(answer)
        return answer

    def lookup(self, lk: Lookup) -> TokenInfo | None:
        """Answer the core's `Lookup`, or raise BackendUnavailable."""
        flight = self._join(lk, background=False)
        if isinstance(flight, _Lead):
            return self._lead(lk)
        try:
            result: TokenInfo | None = flight.result(self._timeout)
        except FutureTimeout:
            raise BackendUnavailable(f"backend gave no answer in {self._timeout:g}s") from None
        except Exception as exc:
            raise _wrap(exc) from exc
        return result

    def refresh(self, lk: Lookup) -> None:
        """Start a background touch of `lk`'s token unless one is already running."""
        try:
            fut = self._join(lk, background=True)
        except BackendUnavailable:
            return
        assert not isinstance(fut, _Lead)  # a background join never leads in this thread
        key, asker = lk.key, lk.client_ip

        def done(f: Future[Any]) -> None:
            if not f.cancelled():
                self._guard.refreshed(key, f.exception() or f.result(), asker)

        fut.add_done_callback(done)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._refresh_pool.shutdown(wait=False, cancel_futures=True)


_RETRY = object()  # a leader that was cancelled: its followers try again


class AsyncCaller:
    """Async lookups with a deadline and single-flight.

    The first request for a token awaits the backend itself (no task, no extra turn
    of the event loop); requests for the same token that arrive meanwhile await its
    answer. A self-timed backend is awaited as is, any other within `timeout`.
    Background refreshes run as tasks, at most `max_in_flight` of them, outside the
    request slots (module docstring). A sync-only backend runs in a worker thread, so
    the event loop never blocks.
    """

    def __init__(
        self, backend: object, guard: Guard, *, timeout: float = 5.0, max_in_flight: int = 16
    ) -> None:
        self._guard = guard
        self._timeout = _check_timeout(timeout)
        self._max = max_in_flight
        self._slots = _Slots(max_in_flight)
        self._flights: dict[FlightKey, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        face = faces(backend)
        self._threaded: SyncCaller | None = None
        # A self-timed backend bounds its own calls (see SyncCaller): no timer of ours.
        self._self_timed = face.self_timed
        if face.alookup is not None:
            self._alookup: Callable[[Lookup, bool], Awaitable[Any]] = self._awaited(face.alookup)
        elif face.lookup is not None:
            self._threaded = SyncCaller(
                face.lookup, guard, timeout=timeout, max_in_flight=max_in_flight
            )
            self._alookup = self._in_thread
        else:
            raise ConfigurationError(
                "backend needs a lookup(token) method or an async alookup(token) method"
            )
        # Each call timed into the guard's metrics (SyncCaller times a threaded one).
        metered = guard.metrics is not None and self._threaded is None
        self._call = self._metered if metered else self._bounded

    @staticmethod
    def _awaited(alookup: Callable[..., Any]) -> Callable[[Lookup, bool], Awaitable[Any]]:
        call = with_client_ip(alookup)
        return lambda lk, _background: call(lk.token, lk.client_ip)

    async def _in_thread(self, lk: Lookup, background: bool) -> Any:
        assert self._threaded is not None
        return await asyncio.wrap_future(self._threaded.submit(lk, background=background))

    async def _metered(self, lk: Lookup, background: bool) -> TokenInfo | None:
        metrics = self._guard.metrics
        assert metrics is not None
        started = time.perf_counter()
        ok = False
        try:
            result = await self._bounded(lk, background)
            ok = True
        finally:
            metrics.backend_call(time.perf_counter() - started, ok)
        return result

    async def _bounded(self, lk: Lookup, background: bool) -> TokenInfo | None:
        call = self._alookup(lk, background)
        try:
            if self._self_timed:
                result: TokenInfo | None = await call
            else:
                result = await _within(call, self._timeout)
        except asyncio.TimeoutError:
            raise BackendUnavailable(f"backend gave no answer in {self._timeout:g}s") from None
        except Exception as exc:
            raise _wrap(exc) from exc
        return result

    async def lookup(self, lk: Lookup, *, background: bool = False) -> TokenInfo | None:
        """Answer the core's `Lookup`, or raise BackendUnavailable."""
        fk = (lk.key, lk.client_ip)
        while True:
            waiter = self._flights.get(fk)
            if waiter is None:
                break
            # shield: this caller going away must not cancel the others' answer.
            answer = await asyncio.shield(waiter)
            if answer is not _RETRY:
                result: TokenInfo | None = answer
                return result
        if not background:
            self._slots.take(lk.client_ip)
        waiter = asyncio.get_running_loop().create_future()
        self._flights[fk] = waiter
        try:
            result = await self._call(lk, background)
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
            del self._flights[fk]
            if not background:
                self._slots.give(lk.client_ip)

    def refresh(self, lk: Lookup) -> None:
        """Start a background touch of `lk`'s token unless one is already running."""
        if (lk.key, lk.client_ip) in self._flights or len(self._tasks) >= self._max:
            return
        task = asyncio.ensure_future(self._refresh(lk))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, lk: Lookup) -> None:
        if (lk.key, lk.client_ip) in self._flights:
            return
        try:
            answer: object = await self.lookup(lk, background=True)
        except BackendUnavailable as exc:
            answer = exc
        self._guard.refreshed(lk.key, answer, lk.client_ip)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._threaded is not None:
            self._threaded.close()


def guard_options(backend: object, options: Mapping[str, Any]) -> dict[str, Any]:
    """`Guard` options for `backend`: ``token_format`` from the backend unless given (H2)."""
    if "token_format" not in options:
        return {**options, "token_format": getattr(backend, "token_format", None)}
    return dict(options)


def wire_invalidations(backend: object, guard: Guard) -> Callable[[], None] | None:
    """Subscribe the guard's cache to the backend's revocations, if it announces any.

    A revoked token is evicted, and every cached token of a revoked key; other
    announcements (a key's rotated secret) evict nothing.
    """
    subscribe = getattr(backend, "subscribe", None)
    if not callable(subscribe):
        return None
    cache = guard.cache

    def on_invalidation(event: Invalidation) -> None:
        if event.kind == "token":
            cache.evict(event.value)
            logger.info("token %s revoked: evicted", log_safe(fingerprint(event.value)))
        elif event.kind == "key":
            n = cache.evict_key(event.value)
            logger.info("key %s revoked: evicted %d cached tokens", log_safe(event.value), n)
        # Anything else evicts nothing: a rotated secret ("secret") leaves the key's
        # tokens valid, and a kind added later is none of a resource server's business.

    unsubscribe: Callable[[], None] = subscribe(on_invalidation)
    return unsubscribe
