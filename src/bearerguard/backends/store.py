"""`StoreBackend`: the middleware reads the auth service's store directly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..stores import _faces
from ..stores.base import AsyncTokenStore, TokenStore
from ..tokens import Invalidation, TokenInfo, token_digest

__all__ = ["StoreBackend"]


class StoreBackend:
    """Look tokens up in a shared store; each lookup extends the token (sliding expiry).

    `store` is any store object (`open_store(url)`); it must have the sync face for
    WSGI, and uses its async face under ASGI when it has one. `client_ip` (passed by
    the middleware) is the request's address: a lookup from another address than the
    token's own extends nothing (the store checks it atomically, H4).
    """

    #: Each lookup returns or raises within the store's own timeouts (SQLite's busy
    #: timeout, Redis socket timeouts), so WSGI may call it in the request thread.
    self_timed = True
    #: The tokens in a bearerguard store are ``bgt_`` tokens: the middleware turns on
    #: ``token_format="bearerguard"`` for this backend unless told otherwise (H2).
    token_format = "bearerguard"  # noqa: S105  (a format name)

    def __init__(self, store: TokenStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._astore: AsyncTokenStore | None = store if isinstance(store, AsyncTokenStore) else None

    def lookup(self, token: str, client_ip: str | None = None) -> TokenInfo | None:
        record = self.store.touch_token(token_digest(token), self._clock(), client_ip)
        return None if record is None else record.to_info()

    async def alookup(self, token: str, client_ip: str | None = None) -> TokenInfo | None:
        if self._astore is None:
            return await asyncio.to_thread(self.lookup, token, client_ip)
        record = await self._astore.atouch_token(token_digest(token), self._clock(), client_ip)
        return None if record is None else record.to_info()

    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        return self.store.subscribe(callback)

    def close(self) -> None:
        """Close the store (its sync face)."""
        self.store.close()

    async def aclose(self) -> None:
        """Close the store from the event loop, so async clients close on their loop."""
        await _faces.aclose(self.store)
