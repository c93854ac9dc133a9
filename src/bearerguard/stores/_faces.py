"""The one face adapter: how a sync method gets its async twin, and how to close
whatever faces an object has. Written once, for every store, backend and config.

A store with no I/O (memory) answers inline; a store whose calls block (SQLite) runs
them in a worker thread so the event loop never waits on them::

    class MemoryStore:
        def get_key(self, key_id: str) -> KeyRecord | None: ...
        aget_key = inline(get_key)

The twin calls the method by name on the instance, so it always runs what
``store.get_key`` is at call time, as a hand-written ``return self.get_key(...)`` did.
mypy sees the twin's exact signature, returning an awaitable of the same type.

Code that holds a store or backend of unknown faces closes it with `close` (its sync
face, if any) or ``await aclose(obj)`` (its async face if it has one, so async clients
close on their own loop, else its sync face).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = ["aclose", "by_store", "close", "inline", "threaded"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

_Sync = Callable[Concatenate[S, P], R]
_Async = Callable[Concatenate[S, P], Coroutine[Any, Any, R]]


def _twin(method: _Sync[S, P, R], in_thread: Callable[[S], bool]) -> _Async[S, P, R]:
    name = method.__name__

    @functools.wraps(method)
    async def face(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        call: Callable[P, R] = getattr(self, name)
        if in_thread(self):
            return await asyncio.to_thread(call, *args, **kwargs)
        return call(*args, **kwargs)

    face.__name__ = "a" + name
    owner, _, _ = method.__qualname__.rpartition(".")
    face.__qualname__ = f"{owner}.a{name}" if owner else face.__name__
    return face


def inline(method: _Sync[S, P, R]) -> _Async[S, P, R]:
    """The async twin of `method` that calls it directly (for stores without I/O)."""
    return _twin(method, lambda _: False)


def threaded(method: _Sync[S, P, R]) -> _Async[S, P, R]:
    """The async twin of `method` that runs it in a worker thread (`asyncio.to_thread`)."""
    return _twin(method, lambda _: True)


def by_store(method: _Sync[S, P, R]) -> _Async[S, P, R]:
    """The async twin of `method`: in a worker thread when the store's ``blocking``
    attribute is true (its calls wait on I/O), inline otherwise."""
    return _twin(method, lambda store: getattr(store, "blocking", False) is True)


def close(obj: object) -> None:
    """Call ``obj.close()`` if `obj` has one."""
    method = getattr(obj, "close", None)
    if callable(method):
        method()


async def aclose(obj: object) -> None:
    """Await ``obj.aclose()`` if `obj` has one, else call its ``close()`` (if any)."""
    method = getattr(obj, "aclose", None)
    if callable(method):
        await method()
    else:
        close(obj)
