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

from ..._timeout import within
from ..base import KeyRecord, TokenRecord, new_key
from .codecs import decode_key, read_token, sorted_keys, text, touched
from .connect import Target, async_client
from .keys import Layout
from .lean import AsyncLeanClient, lean_target

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..base import KeyOptions

from .scripts import (
    LeanScripts,
    Plan,
    Scripts,
    create_key_step,
    put_token_plan,
    read_token_step,
    revoke_key_plan,
    revoke_token_plan,
    start,
)

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
    _target: Target
    _layout: Layout
    _lock: threading.Lock
    _aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[aredis.Redis, Scripts]]
    _alookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Scripts | LeanScripts]

    if TYPE_CHECKING:

        def _errors(self, what: str) -> AbstractContextManager[None]: ...

        def close(self) -> None: ...

    def _aclient(self) -> tuple[aredis.Redis, Scripts]:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.get(loop)
            if entry is None:
                client = async_client(self._target, self._options)
                entry = self._aclients[loop] = (client, Scripts(client))
        return entry

    async def _arun(self, plan: Plan, scripts: Scripts | LeanScripts | None = None) -> Any:
        """Drive a plan (module `scripts`) on this loop's client; return its result.

        With `scripts` (`_alookup_scripts`), on that untimed client instead: the caller
        bounds the whole plan with one deadline.
        """
        client, scripts = self._aclient() if scripts is None else (scripts.client, scripts)
        reply: Any = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value
            reply = await start(step, client, scripts)

    # -- async face -------------------------------------------------------------------
    async def acreate_key(
        self, apis: Iterable[str], **options: Unpack[KeyOptions]
    ) -> tuple[KeyRecord, str]:
        record, secret = new_key(apis, **options)
        with self._errors("create_key"):
            client, scripts = self._aclient()
            await start(create_key_step(record, self._layout), client, scripts)
        return record, secret

    async def aget_key(self, key_id: str) -> KeyRecord | None:
        with self._errors("get_key"):
            client, _ = self._aclient()
            return decode_key(key_id, await client.hgetall(self._layout.apikey(key_id)))

    async def alist_keys(self, account: str | None = None) -> list[KeyRecord]:
        with self._errors("list_keys"):
            client, _ = self._aclient()
            if account is None:
                raw = list(await client.zrange(self._layout.keys_index(), 0, -1))
            else:
                raw = list(await client.smembers(self._layout.account_keys(account)))
            ids = [text(i) for i in raw]
            pipe = client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(self._layout.apikey(key_id))
            found = await pipe.execute() if ids else []
            return sorted_keys(ids, found)

    async def arevoke_key(self, key_id: str) -> bool:
        with self._errors("revoke_key"):
            return bool(await self._arun(revoke_key_plan(key_id, self._layout)))

    async def aput_token(self, record: TokenRecord) -> None:
        # Every login stores a token: like a lookup, on the per-request client
        # (`_alookup_scripts`), each call within the store's timeout.
        with self._errors("put_token"):
            scripts = self._alookups.get(asyncio.get_running_loop()) or self._alookup_scripts()
            plan = self._arun(put_token_plan(record, self._layout), scripts)
            await (plan if isinstance(scripts, LeanScripts) else within(plan, self.timeout))

    async def atouch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        with self._errors("touch_token"):
            scripts = self._alookups.get(asyncio.get_running_loop()) or self._alookup_scripts()
            call = scripts.touch(keys=[self._layout.token(digest)], args=[client_ip or ""])
            reply = await (call if isinstance(scripts, LeanScripts) else within(call, self.timeout))
            return touched(digest, reply, now)

    def _alookup_scripts(self) -> Scripts | LeanScripts:
        """This loop's client for the per-request calls, one deadline a call.

        On one Redis (TLS too) that client is an `AsyncLeanClient` (module `lean`),
        which keeps each call's deadline itself without a timer a call. Otherwise it is
        redis.asyncio without socket timeouts, whose own would cost a timer a read and,
        on Python 3.10 and 3.11, a task a write: `atouch_token` and `aput_token` bound
        its calls with `within`, which cancels them; the client then drops the
        connection, so no late reply is read by the next command. The other async calls
        keep the timed client of `_aclient`.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            scripts = self._alookups.get(loop)
            if scripts is None:
                lean = lean_target(self._target)
                if lean is not None:
                    scripts = LeanScripts(AsyncLeanClient(lean, self.timeout))
                else:
                    # None, not left out: redis.asyncio's default read timeout is 5 s.
                    connect = {"socket_connect_timeout": self.timeout, "socket_timeout": None}
                    scripts = Scripts(async_client(self._target, connect))
                self._alookups[loop] = scripts
        return scripts

    async def aget_token(self, digest: str, now: float) -> TokenRecord | None:
        with self._errors("get_token"):
            client, scripts = self._aclient()
            step = read_token_step(digest, self._layout)
            value, pttl = await start(step, client, scripts)
            return read_token(digest, value or None, pttl, now)

    async def arevoke_token(self, digest: str) -> bool:
        with self._errors("revoke_token"):
            return bool(await self._arun(revoke_token_plan(digest, self._layout)))

    async def aping(self) -> None:
        with self._errors("ping"):
            client, _ = self._aclient()
            await client.exists(self._layout.keys_index())  # as `ping`

    async def aclose(self) -> None:
        """Close this loop's async client, then everything `close` closes."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.pop(loop, None)
            lookups = self._alookups.pop(loop, None)
        clients: list[Any] = [entry[0]] if entry is not None else []
        clients += [lookups.client] if lookups is not None else []
        for client in clients:
            with suppress(redis.RedisError, OSError):
                await client.aclose()
        self.close()


_closing: set[asyncio.Task[None]] = set()


async def _aclose_quietly(client: Any) -> None:
    with suppress(redis.RedisError, OSError):
        await client.aclose()


def close_on_loop(loop: asyncio.AbstractEventLoop, client: Any, timeout: float) -> None:
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
