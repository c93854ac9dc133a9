"""What a backend is: something that can say whether a token is active.

A backend has a sync face, `lookup(token)`, an async face, `alookup(token)`, or both.
Either returns a `TokenInfo` for an active token and None for an unknown, revoked or
expired one, counts as a use of the token at the source (sliding expiry), and raises
`BackendUnavailable` when it cannot tell. The ASGI middleware runs a sync-only backend
in a worker thread; the WSGI middleware refuses an async-only one at start-up.

A backend whose `self_timed` attribute is True promises that every call returns or
raises within its own timeouts; the WSGI middleware then calls it in the request's
thread. Otherwise calls go through a worker pool so `backend_timeout` can be enforced.

A backend may also offer `subscribe(callback)`, calling `callback(Invalidation)` when
the source revokes a token or a key, so that running middlewares evict at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..tokens import Invalidation, TokenInfo

__all__ = [
    "AsyncTokenBackend",
    "DualBackend",
    "Invalidation",
    "InvalidationSource",
    "TokenBackend",
]


@runtime_checkable
class TokenBackend(Protocol):
    """A backend with the sync face (required by the WSGI middleware)."""

    def lookup(self, token: str) -> TokenInfo | None:
        """Return the token's facts, None if it is not active; may raise BackendUnavailable."""
        ...


@runtime_checkable
class AsyncTokenBackend(Protocol):
    """A backend with the async face (preferred by the ASGI middleware)."""

    async def alookup(self, token: str) -> TokenInfo | None:
        """Async face of `TokenBackend.lookup`."""
        ...


@runtime_checkable
class DualBackend(TokenBackend, AsyncTokenBackend, Protocol):
    """A backend with both faces, as every built-in one has (usable by both middlewares)."""


@runtime_checkable
class InvalidationSource(Protocol):
    """A backend that announces revocations, so middlewares evict without waiting."""

    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Call `callback` on each revocation until the returned function is called."""
        ...
