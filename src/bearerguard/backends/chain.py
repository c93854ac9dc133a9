"""`ChainBackend`: several backends behind one middleware, each token to the right one.

"Recognises" is defined by an optional method on backends, ``accepts(token) -> bool``:
the chain asks its backends in order and the first that accepts the token answers it.
A backend without `accepts` takes any token, so it belongs last. `JWTBackend.accepts`
is true for the shape of a JWT (three base64url segments, the first a JSON object), so
``ChainBackend([JWTBackend(…), IntrospectionBackend(…)])`` sends JWTs to the first and
everything else (bearerguard's own tokens, any opaque token) to the second. A token no
backend accepts is unknown (None: 401). Only the chosen backend is asked: a token is
never tried against two sources, so one source's answer cannot leak to another.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence

from ..errors import ConfigurationError
from ..stores import _faces
from ..tokens import Invalidation, TokenInfo

__all__ = ["ChainBackend", "accepts"]


def accepts(backend: object, token: str) -> bool:
    """Whether `backend` recognises `token` (a backend without `accepts` takes all)."""
    check = getattr(backend, "accepts", None)
    return True if check is None else bool(check(token))


class ChainBackend:
    """Route each token to the first backend that `accepts` it; both faces.

    The sync face needs every backend's `lookup`; the async face uses a backend's
    `alookup` when it has one and runs its `lookup` in a thread otherwise. Revocations
    (`subscribe`) of every member reach the middleware; `close`/`aclose` close them all.
    Self-timed when every member is.
    """

    def __init__(self, backends: Sequence[object]) -> None:
        members = tuple(backends)
        if not members:
            raise ConfigurationError("ChainBackend needs at least one backend")
        for b in members:
            if not callable(getattr(b, "lookup", None)) and not callable(
                getattr(b, "alookup", None)
            ):
                raise ConfigurationError(f"{type(b).__name__} has neither lookup nor alookup")
        self.backends = members
        self.self_timed = all(getattr(b, "self_timed", False) is True for b in members)

    def __repr__(self) -> str:
        return f"ChainBackend({list(self.backends)!r})"

    def route(self, token: str) -> object | None:
        """The backend that answers `token`, or None when none recognises it."""
        for backend in self.backends:
            if accepts(backend, token):
                return backend
        return None

    def accepts(self, token: str) -> bool:
        """A chain recognises what any of its members does (chains nest)."""
        return self.route(token) is not None

    def lookup(self, token: str) -> TokenInfo | None:
        """Ask the backend that recognises `token`; None if none does."""
        backend = self.route(token)
        if backend is None:
            return None
        lookup = getattr(backend, "lookup", None)
        if not callable(lookup):
            raise ConfigurationError(f"{type(backend).__name__} has no sync lookup(token)")
        result: TokenInfo | None = lookup(token)
        return result

    async def alookup(self, token: str) -> TokenInfo | None:
        """Async face of `lookup`."""
        backend = self.route(token)
        if backend is None:
            return None
        alookup = getattr(backend, "alookup", None)
        if alookup is not None and inspect.iscoroutinefunction(alookup):
            result: TokenInfo | None = await alookup(token)
        else:
            result = await asyncio.to_thread(getattr(backend, "lookup"), token)  # noqa: B009
        return result

    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Subscribe `callback` to every member that announces revocations."""
        stops: list[Callable[[], None]] = []
        for backend in self.backends:
            subscribe = getattr(backend, "subscribe", None)
            if callable(subscribe):
                stops.append(subscribe(callback))

        def unsubscribe() -> None:
            for stop in stops:
                stop()

        return unsubscribe

    def close(self) -> None:
        """Close every member (sync faces)."""
        for backend in self.backends:
            _faces.close(backend)

    async def aclose(self) -> None:
        """Close every member, async clients on their loop."""
        for backend in self.backends:
            await _faces.aclose(backend)
