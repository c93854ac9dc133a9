"""The auth service's view of its store: one async face, every failure a 503."""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..errors import BackendUnavailable
from ..stores.base import AsyncTokenStore, KeyRecord, StoreUnavailable, TokenRecord, TokenStore

__all__ = ["ServiceStore"]

logger = logging.getLogger("bearerguard.server")


class ServiceStore:
    """The store's async face when it has one, else its sync face in a thread.

    Every failure becomes StoreUnavailable: a store that breaks its contract by raising
    its driver's own error still yields 503, not 500. Only the exception type is
    logged, since a driver's message could quote arguments.
    """

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.astore: AsyncTokenStore | None = store if isinstance(store, AsyncTokenStore) else None

    async def _call(self, name: str, *args: Any) -> Any:
        try:
            if self.astore is not None:
                return await getattr(self.astore, "a" + name)(*args)
            return await run_in_threadpool(getattr(self.store, name), *args)
        except BackendUnavailable:
            raise
        except Exception as exc:
            logger.error("store %s failed: %s", name, type(exc).__name__)
            raise StoreUnavailable(f"store {name} raised {type(exc).__name__}") from exc

    async def get_key(self, key_id: str) -> KeyRecord | None:
        result: KeyRecord | None = await self._call("get_key", key_id)
        return result

    async def put_token(self, record: TokenRecord) -> None:
        await self._call("put_token", record)

    async def touch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        result: TokenRecord | None = await self._call("touch_token", digest, now, client_ip)
        return result

    async def get_token(self, digest: str, now: float) -> TokenRecord | None:
        result: TokenRecord | None = await self._call("get_token", digest, now)
        return result

    async def revoke_token(self, digest: str) -> bool:
        return bool(await self._call("revoke_token", digest))

    async def ping(self) -> None:
        await self._call("ping")

    async def call_sync(self, op: str, /, *args: Any, **kwargs: Any) -> Any:
        """A sync-only store operation (accounts, sessions) in a worker thread."""
        try:
            return await run_in_threadpool(getattr(self.store, op), *args, **kwargs)
        except BackendUnavailable:
            raise
        except Exception as exc:
            logger.error("store %s failed: %s", op, type(exc).__name__)
            raise StoreUnavailable(f"store {op} raised {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self.astore is not None:
            await self.astore.aclose()
        await run_in_threadpool(self.store.close)
