"""The auth service's view of its store: one async face, every failure a 503.

One face adapter, chosen once per store when the service starts (not per call):

* a store whose sync calls cost less than a thread hand-off (SQLite in WAL mode: a
  read or a one-row write on a local file, tens of microseconds, against the hundred or
  more a hop to a worker thread and back costs) is called inline, on the event loop;
* otherwise its async face (Redis: asyncio redis-py), when it has one;
* otherwise its sync face in a worker thread.
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
    # Only the exception type is logged: a driver's message could quote arguments.
    logger.error("store %s failed: %s", op, type(exc).__name__)
    return StoreUnavailable(f"store {op} raised {type(exc).__name__}")


def _inline(call: Callable[..., Any]) -> _Face:
    async def face(*args: Any) -> Any:
        return call(*args)

    return face


def _threaded(call: Callable[..., Any]) -> _Face:
    async def face(*args: Any) -> Any:
        return await run_in_threadpool(call, *args)

    return face


class ServiceStore:
    """The store's operations as coroutines (see the module docstring for which face).

    Every failure becomes StoreUnavailable: a store that breaks its contract by raising
    its driver's own error still yields 503, not 500.
    """

    def __init__(self, store: TokenStore, *, inline: bool = False) -> None:
        self.store = store
        self.astore: AsyncTokenStore | None = store if isinstance(store, AsyncTokenStore) else None
        a = self.astore
        if inline or a is None:
            wrap = _inline if inline else _threaded
            faces = [
                wrap(store.get_key),
                wrap(store.put_token),
                wrap(store.touch_token),
                wrap(store.get_token),
                wrap(store.revoke_token),
                wrap(store.ping),
            ]
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
