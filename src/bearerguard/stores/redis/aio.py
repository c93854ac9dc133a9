"""The async face of `RedisStore`, on one `redis.asyncio.Redis` client per event loop."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterable
from contextlib import AbstractContextManager, suppress
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from ..base import KeyRecord, TokenRecord, new_key
from .codecs import decode_key, read_token, sorted_keys, text, touched
from .keys import account_keys_key, apikey_key, keys_index_key, token_key
from .scripts import Scripts, queue_key, revoke_key_args, revoke_token_args, token_args

__all__ = ["AsyncFace", "close_on_loop"]


class AsyncFace:
    """The ``a*`` methods of `RedisStore`; its sync face and plumbing live in `store`.

    The async client is created on first use inside a running event loop and belongs
    to that loop; each loop that uses the store gets its own client.
    """

    url: str
    prefix: str
    timeout: float
    _options: dict[str, Any]
    _lock: threading.Lock
    _aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[aredis.Redis, Scripts]]

    if TYPE_CHECKING:

        def _errors(self, what: str) -> AbstractContextManager[None]: ...

        def close(self) -> None: ...

    def _aclient(self) -> tuple[aredis.Redis, Scripts]:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.get(loop)
            if entry is None:
                client = aredis.Redis.from_url(
                    self.url, retry=AsyncRetry(NoBackoff(), 1), **self._options
                )
                entry = self._aclients[loop] = (client, Scripts(client))
        return entry

    # -- async face -------------------------------------------------------------------
    async def acreate_key(
        self,
        apis: Iterable[str],
        *,
        introspect: bool = False,
        now: float | None = None,
        account: str = "",
        name: str = "",
        expires_at: float | None = None,
    ) -> tuple[KeyRecord, str]:
        record, secret = new_key(
            apis, introspect=introspect, now=now, account=account, name=name, expires_at=expires_at
        )
        with self._errors("create_key"):
            client, _ = self._aclient()
            pipe = client.pipeline(transaction=True)
            queue_key(pipe, record, self.prefix)
            await pipe.execute()
        return record, secret

    async def aget_key(self, key_id: str) -> KeyRecord | None:
        with self._errors("get_key"):
            client, _ = self._aclient()
            return decode_key(key_id, await client.hgetall(apikey_key(key_id, self.prefix)))

    async def alist_keys(self, account: str | None = None) -> list[KeyRecord]:
        with self._errors("list_keys"):
            client, _ = self._aclient()
            if account is None:
                raw = list(await client.zrange(keys_index_key(self.prefix), 0, -1))
            else:
                raw = list(await client.smembers(account_keys_key(account, self.prefix)))
            ids = [text(i) for i in raw]
            pipe = client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(apikey_key(key_id, self.prefix))
            found = await pipe.execute() if ids else []
            return sorted_keys(ids, found)

    async def arevoke_key(self, key_id: str) -> bool:
        keys, args = revoke_key_args(key_id, self.prefix)
        with self._errors("revoke_key"):
            _, scripts = self._aclient()
            found, _n = await scripts.revoke_key(keys=keys, args=args)
        return bool(found)

    async def aput_token(self, record: TokenRecord) -> None:
        keys, args = token_args(record, self.prefix)
        with self._errors("put_token"):
            _, scripts = self._aclient()
            await scripts.put(keys=keys, args=args)

    async def atouch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        with self._errors("touch_token"):
            _, scripts = self._aclient()
            reply = await scripts.touch(
                keys=[token_key(digest, self.prefix)], args=[client_ip or ""]
            )
            return touched(digest, reply, now)

    async def aget_token(self, digest: str, now: float) -> TokenRecord | None:
        with self._errors("get_token"):
            client, _ = self._aclient()
            pipe = client.pipeline(transaction=True)
            key = token_key(digest, self.prefix)
            pipe.get(key)
            pipe.pttl(key)
            value, pttl = await pipe.execute()
            return read_token(digest, value, pttl, now)

    async def arevoke_token(self, digest: str) -> bool:
        keys, args = revoke_token_args(digest, self.prefix)
        with self._errors("revoke_token"):
            _, scripts = self._aclient()
            return bool(await scripts.revoke_token(keys=keys, args=args))

    async def aping(self) -> None:
        with self._errors("ping"):
            client, _ = self._aclient()
            await client.ping()

    async def aclose(self) -> None:
        """Close this loop's async client, then everything `close` closes."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.pop(loop, None)
        if entry is not None:
            with suppress(redis.RedisError, OSError):
                await entry[0].aclose()
        self.close()


_closing: set[asyncio.Task[None]] = set()


async def _aclose_quietly(client: aredis.Redis) -> None:
    with suppress(redis.RedisError, OSError):
        await client.aclose()


def close_on_loop(loop: asyncio.AbstractEventLoop, client: aredis.Redis, timeout: float) -> None:
    """Close an async client on the loop it belongs to (best effort, see `close`)."""
    if loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        task = loop.create_task(_aclose_quietly(client))
        _closing.add(task)
        task.add_done_callback(_closing.discard)
    elif loop.is_running():
        future = asyncio.run_coroutine_threadsafe(_aclose_quietly(client), loop)
        with suppress(Exception):
            future.result(timeout)
    else:
        # Fails (and is skipped) only when another loop runs in this thread right now.
        with suppress(RuntimeError):
            loop.run_until_complete(_aclose_quietly(client))
