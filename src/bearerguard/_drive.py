"""What both middlewares do with a backend, written once: ask which faces it has
(`faces`), and drive the core's flow to a decision against it (`drive`, `drive_async`).

The waiting itself (timeouts, single-flight, slots, refreshes) is `_edge.py`'s.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BackendUnavailable
from .flow import Allow, Decision, Lookup
from .tokens import TokenInfo

if TYPE_CHECKING:
    from ._edge import AsyncCaller, SyncCaller

__all__ = ["Faces", "LookupFn", "drive", "drive_async", "faces", "with_client_ip"]

LookupFn = Callable[[str, "str | None"], Any]
Flow = Generator[Lookup, "TokenInfo | None", Decision]


@dataclass(frozen=True, slots=True)
class Faces:
    """What a backend offers: a sync `lookup`, an async `alookup` (either may be None),
    and whether it bounds its own calls (`self_timed`, the built-in backends)."""

    lookup: Callable[..., Any] | None
    alookup: Callable[..., Any] | None
    self_timed: bool


def faces(backend: object) -> Faces:
    """The faces of `backend`: the one place that asks a backend what it has."""
    lookup = getattr(backend, "lookup", None)
    alookup = getattr(backend, "alookup", None)
    return Faces(
        lookup if callable(lookup) else None,
        alookup if alookup is not None and inspect.iscoroutinefunction(alookup) else None,
        getattr(backend, "self_timed", False) is True,
    )


def with_client_ip(fn: Callable[..., Any]) -> LookupFn:
    """A face as a (token, client_ip) callable: built-in backends take `client_ip`,
    a custom backend with a one-argument `lookup(token)` is called as before."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "client_ip" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    ):
        return lambda token, client_ip: fn(token, client_ip=client_ip)
    return lambda token, _client_ip: fn(token)


async def _run(
    flow: Flow,
    lookup: Callable[[Lookup], Awaitable[TokenInfo | None]],
    refresh: Callable[[Lookup], None],
) -> Decision:
    # The one drive loop: answer each Lookup, throw BackendUnavailable back in, start
    # the follow-up refresh of an allowed request.
    try:
        step = next(flow)
        while True:
            try:
                answer = await lookup(step)
            except BackendUnavailable as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as stop:
        decision: Decision = stop.value
    if isinstance(decision, Allow) and decision.follow_up is not None:
        refresh(decision.follow_up)
    return decision


def drive(flow: Flow, caller: SyncCaller) -> Decision:
    """Run the core's flow to its decision, answering each `Lookup` with `caller`.

    The loop is `_run`'s: a sync lookup never suspends it, so one ``send`` runs it to
    the end, with no event loop.
    """

    async def lookup(lk: Lookup) -> TokenInfo | None:
        return caller.lookup(lk)

    run = _run(flow, lookup, caller.refresh)
    try:
        run.send(None)
    except StopIteration as done:
        decision: Decision = done.value
        return decision
    run.close()  # pragma: no cover - nothing in the loop can suspend
    raise RuntimeError("a sync lookup suspended")  # pragma: no cover


async def drive_async(flow: Flow, caller: AsyncCaller) -> Decision:
    """`drive` under an event loop: each `Lookup` is awaited through `caller`."""
    return await _run(flow, caller.lookup, caller.refresh)
