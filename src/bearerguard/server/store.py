"""The auth service's view of its store: one async face, every failure a 503.

One face adapter, chosen once per store when the service starts (not per call and not
by method name): the store's async face when it has one (Redis: asyncio redis-py;
memory: inline; SQLite: the per-request statements inline on a connection that never
waits for a lock — a one-row statement costs less than the hop to a thread — and in a
worker thread when the file is locked, so a lock held by another process never stalls
the loop: `bearerguard.stores.sqlite`), else its sync face in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..errors import BackendUnavailable
from ..stores.base import AsyncTokenStore, KeyRecord, StoreUnavailable, TokenRecord, TokenStore

__all__ = ["ServiceStore"]

logger = logging.getLogger("bearerguard.server")

_Face = Callable[..., Awaitable[Any]]


def _failed(op: str, exc: Exception) -> StoreUnavailable:
    # Only the exception type is logged: a client library's message could quote arguments.
    logger.error("store %s failed: %s", op, type(exc).__name__)
    return StoreUnavailable(f"store {op} raised {type(exc).__name__}")


def _threaded(call: Callable[..., Any]) -> _Face:
    async def face(*args: Any) -> Any:
        return await run_in_threadpool(call, *args)

    return face


class ServiceStore:
    """The store's operations as coroutines (the module docstring says which face).

    Every failure becomes StoreUnavailable: a store that breaks its contract by raising
    its client library's own error still yields 503, not 500.
    """

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.astore: AsyncTokenStore | None = store if isinstance(store, AsyncTokenStore) else None
        a = self.astore
        if a is None:
            sync = (store.get_key, store.put_token, store.touch_token, store.get_token)
            faces = [_threaded(f) for f in (*sync, store.revoke_token, store.ping)]
        else:
            faces = [
                a.aget_key,
                a.aput_token,
                a.atouch_token,
                a.aget_token,
                a.arevoke_token,
                a.aping,
            ]
        (self._get_key, self._put_token, self._touch_token) = faces[:3]
        (self._get_token, self._revoke_token, self._ping) = faces[3:]

    async def _call(self, op: str, face: _Face, *args: Any) -> Any:
        try:
            return await face(*args)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise _failed(op, exc) from exc

    async def get_key(self, key_id: str) -> KeyRecord | None:
        result: KeyRecord | None = await self._call("get_key", self._get_key, key_id)
        return result

    async def put_token(self, record: TokenRecord) -> None:
        await self._call("put_token", self._put_token, record)

    async def touch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        result: TokenRecord | None = await self._call(
            "touch_token", self._touch_token, digest, now, client_ip
        )
        return result

    async def get_token(self, digest: str, now: float) -> TokenRecord | None:
        result: TokenRecord | None = await self._call("get_token", self._get_token, digest, now)
        return result

    async def revoke_token(self, digest: str) -> bool:
        return bool(await self._call("revoke_token", self._revoke_token, digest))

    async def ping(self) -> None:
        await self._call("ping", self._ping)

    async def call_sync(self, op: str, /, *args: Any, **kwargs: Any) -> Any:
        """A sync-only store operation (accounts, sessions) in a worker thread."""
        try:
            return await run_in_threadpool(getattr(self.store, op), *args, **kwargs)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise _failed(op, exc) from exc

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None] | None:
        """The store's invalidations to `callback`; None when the store cannot say."""
        try:
            return self.store.subscribe(callback)
        except Exception as exc:
            # No subscription: the key cache's TTL alone bounds revocation.
            logger.warning("cannot subscribe to store invalidations: %s", type(exc).__name__)
            return None

    async def close(self) -> None:
        if self.astore is not None:
            await self.astore.aclose()
        await run_in_threadpool(self.store.close)
