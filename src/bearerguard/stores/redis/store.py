"""`RedisStore`: its construction, error boundary, sync face and lifecycle.

The async face is `AsyncFace` (module `aio`); the Lua scripts and their arguments are
in `scripts`, the record codecs in `codecs`, the key names in `keys`, the pub/sub
listener in `listener`.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aredis
from redis.exceptions import NoScriptError

from ...errors import ConfigurationError
from ...tokens import Invalidation
from ..accounts import AccountRecord, SessionRecord
from ..base import (
    KeyRecord,
    StoreUnavailable,
    TokenRecord,
    new_key,
    page_of,
    parse_key_cursor,
    rotated,
)
from .aio import AsyncFace, close_on_loop
from .codecs import (
    apis_json,
    decode_account,
    decode_key,
    decode_session,
    encode_session,
    read_token,
    sorted_keys,
    text,
    touched,
    ttl_ms,
)
from .connect import DRIVER_ERRORS, failure, parse_url, sync_client
from .keys import DEFAULT_PREFIX, Layout
from .lean import LeanClient, lean_target
from .listener import Listener

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..base import KeyOptions

from .scripts import (
    LeanScripts,
    Plan,
    Scripts,
    create_key_step,
    disable_account_plan,
    put_session_plan,
    put_token_plan,
    read_token_step,
    revoke_key_plan,
    revoke_token_plan,
    rotate_key_plan,
    start,
)

__all__ = ["RedisStore"]


class Boundary:
    """`RedisStore._errors`: client-library errors raised inside become StoreUnavailable.

    A class, not ``@contextmanager``: it runs on every lookup, and a generator-based
    context manager costs several times as much (docs/benchmarks.md, the cold paths).
    """

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        if exc is None:
            return
        what = self._what
        if isinstance(exc, DRIVER_ERRORS):
            raise StoreUnavailable(f"Redis store {what} failed: {failure(exc)}") from exc
        if isinstance(exc, (OSError, asyncio.TimeoutError)):  # a deadline of ours, too
            detail = str(exc) or type(exc).__name__  # a deadline's TimeoutError says nothing
            raise StoreUnavailable(f"Redis store {what} failed: {detail}") from exc
        if isinstance(exc, (ValueError, TypeError, KeyError)):
            raise StoreUnavailable(f"Redis store {what} returned bad data") from exc


_boundaries: dict[str, Boundary] = {}


def _boundary(what: str) -> Boundary:
    # One stateless boundary per operation name, made once.
    b = _boundaries.get(what)
    if b is None:
        b = _boundaries[what] = Boundary(what)
    return b


class RedisStore(AsyncFace):
    """A store in Redis; sync face on `redis.Redis`, async face on `redis.asyncio.Redis`,
    a request's own calls (a lookup, a login) on the lean clients of module `lean`
    where the URL names one Redis.

    ``RedisStore("redis://127.0.0.1:6379/0", timeout=2.0, prefix="bearerguard")``; the
    URL may also name Sentinels (``redis+sentinel://…/SERVICE``) or a cluster
    (``redis+cluster://…``, on `redis.RedisCluster` and its asyncio twin), see `connect`.
    `timeout` bounds connecting and each reply (seconds); a call fails over to one
    reconnect, then raises StoreUnavailable. No I/O happens at construction: call
    `ping()` to check the server is there.

    The async client is created on first use inside a running event loop and belongs
    to that loop: close it with ``await store.aclose()`` from the same loop. Each loop
    that uses the store gets its own client.

    `subscribe(callback)` starts a background thread listening on the invalidation
    channel; it sees revocations and rotations from every process using the same Redis,
    reconnects with backoff after Redis restarts (those published while it is
    disconnected are missed: the caches' lifetimes bound those), and stops when the
    returned function is called or the store is closed.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, prefix: str = DEFAULT_PREFIX) -> None:
        if not timeout > 0:
            raise ConfigurationError("Redis timeout must be a positive number of seconds")
        if not prefix or any(c.isspace() or c in "{}" for c in prefix):
            raise ConfigurationError("Redis key prefix must be non-empty, without spaces or braces")
        self._target = parse_url(url)
        self.url = url
        self.prefix = prefix
        self._layout = Layout(prefix, cluster=self._target.cluster)
        self.timeout = float(timeout)
        self._options: dict[str, Any] = {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
        }
        # Made on first use: a cluster client connects as it is made, and opening a
        # store does no I/O (a store opened while Redis is down answers StoreUnavailable).
        self._sync: tuple[Any, Scripts] | None = None
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aredis.Redis, Scripts]
        ] = weakref.WeakKeyDictionary()
        self._alookups: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Scripts | LeanScripts
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._listeners: set[Listener] = set()
        self._closed = False
        if not self._target.cluster:
            self._connected()  # no I/O: a bad URL fails here, as a ConfigurationError
        # The sync face's per-request calls (`touch_token`, `put_token`) on one Redis.
        lean = lean_target(self._target)
        self._lean_client = LeanClient(lean, self.timeout) if lean is not None else None
        self._lean = LeanScripts(self._lean_client) if self._lean_client is not None else None

    # -- plumbing ---------------------------------------------------------------------
    def _connected(self) -> tuple[Any, Scripts]:
        with self._lock:
            if self._sync is None:
                client = sync_client(self._target, self._options)
                self._sync = (client, Scripts(client))
            return self._sync

    @property
    def _client(self) -> Any:
        return self._connected()[0]

    @property
    def _scripts(self) -> Scripts:
        return self._connected()[1]

    def _errors(self, what: str) -> Boundary:
        """Translate client-library errors at one boundary: all become StoreUnavailable."""
        if self._closed:
            raise StoreUnavailable("Redis store is closed")
        return _boundary(what)

    def _run(self, plan: Plan, scripts: LeanScripts | None = None) -> Any:
        """Drive a plan (module `scripts`) with blocking calls; return its result.

        With `scripts` (the lean client's, `_lean`), on that client instead.
        """
        client, using = self._connected() if scripts is None else (None, scripts)
        reply: Any = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value
            reply = start(step, client, using)

    # -- keys -------------------------------------------------------------------------
    def create_key(
        self, apis: Iterable[str], **options: Unpack[KeyOptions]
    ) -> tuple[KeyRecord, str]:
        record, secret = new_key(apis, **options)
        with self._errors("create_key"):
            start(create_key_step(record, self._layout), self._client, self._scripts)
        return record, secret

    def rotate_key(
        self, key_id: str, *, grace: float, now: float | None = None
    ) -> tuple[KeyRecord, str] | None:
        now = time.time() if now is None else now
        with self._errors("rotate_key"):
            record = self.get_key(key_id)
            if record is None:
                return None
            record, secret = rotated(record, grace, now)
            if not self._run(rotate_key_plan(record, grace > 0, self._layout)):
                return None
            fresh = self.get_key(key_id)
        return (fresh, secret) if fresh is not None else None

    # -- accounts and panel sessions ----------------------------------------------------
    def create_account(self, record: AccountRecord) -> bool:
        fields = {
            "password_hash": record.password_hash,
            "apis": apis_json(record.apis),
            "disabled": "1" if record.disabled else "0",
            "created_at": repr(record.created_at),
        }
        pairs = [item for kv in fields.items() for item in kv]
        with self._errors("create_account"):
            return bool(
                self._scripts.create_account(
                    keys=[self._layout.account(record.name), self._layout.accounts_index()],
                    args=[record.name, repr(record.created_at), *pairs],
                )
            )

    def get_account(self, name: str) -> AccountRecord | None:
        with self._errors("get_account"):
            return decode_account(name, self._client.hgetall(self._layout.account(name)))

    def list_accounts(self) -> list[AccountRecord]:
        with self._errors("list_accounts"):
            names = [text(n) for n in self._client.zrange(self._layout.accounts_index(), 0, -1)]
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._layout.account(name))
            found = pipe.execute() if names else []
            records = [decode_account(n, f) for n, f in zip(names, found, strict=True)]
            present = [r for r in records if r is not None]
            return sorted(present, key=lambda a: (a.created_at, a.name))

    def set_account_apis(self, name: str, apis: Iterable[str]) -> bool:
        with self._errors("set_account_apis"):
            return bool(
                self._scripts.set_account(
                    keys=[self._layout.account(name)], args=["apis", apis_json(apis)]
                )
            )

    def disable_account(self, name: str) -> bool:
        with self._errors("disable_account"):
            # The account's key ids stay indexed: the keys still exist (disabled).
            return bool(self._run(disable_account_plan(name, self._layout)))

    def put_session(self, record: SessionRecord) -> None:
        value = encode_session(record)
        lifetime_ms = ttl_ms(max(record.expires_at - time.time(), 0.001))
        plan = put_session_plan(record.digest, record.account, value, lifetime_ms, self._layout)
        with self._errors("put_session"):
            self._run(plan)

    def get_session(self, digest: str, now: float) -> SessionRecord | None:
        with self._errors("get_session"):
            value = self._client.get(self._layout.session(digest))
            if value is None:
                return None
            record = decode_session(digest, value)
        return record if now < record.expires_at else None

    def delete_session(self, digest: str) -> None:
        with self._errors("delete_session"):
            self._client.delete(self._layout.session(digest))

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._errors("get_key"):
            return decode_key(key_id, self._client.hgetall(self._layout.apikey(key_id)))

    def list_keys(
        self, account: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[KeyRecord]:
        raw: list[Any]
        with self._errors("list_keys"):
            if account is not None:
                raw = list(self._client.smembers(self._layout.account_keys(account)))
            elif after is None and limit is None:
                raw = list(self._client.zrange(self._layout.keys_index(), 0, -1))
            else:
                # By score from the cursor's creation time on; members sharing that exact
                # score are filtered below, so fetch a few more than a page.
                low = repr(parse_key_cursor(after)[0]) if after is not None else "-inf"
                num = -1 if limit is None else limit + 8
                raw = list(
                    self._client.zrangebyscore(
                        self._layout.keys_index(), low, "+inf", start=0, num=num
                    )
                )
            ids = [text(i) for i in raw]
            pipe = self._client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(self._layout.apikey(key_id))
            found = pipe.execute() if ids else []
            return page_of(sorted_keys(ids, found), after, limit)

    def revoke_key(self, key_id: str) -> bool:
        with self._errors("revoke_key"):
            return bool(self._run(revoke_key_plan(key_id, self._layout)))

    # -- tokens -----------------------------------------------------------------------
    def put_token(self, record: TokenRecord) -> None:
        """Store a newly issued token (TTL = its `ttl`), unless its key is gone."""
        with self._errors("put_token"):
            self._run(put_token_plan(record, self._layout), self._lean)

    def touch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        with self._errors("touch_token"):
            key, asker = self._layout.token(digest), client_ip or ""
            lean = self._lean
            if lean is not None:
                return touched(digest, lean.touch(keys=[key], args=[asker]), now)
            client, scripts = self._sync or self._connected()
            try:
                # EVALSHA itself: what Script.__call__ does, minus its per-call work.
                reply = client.evalsha(scripts.touch.sha, 1, key, asker)
            except NoScriptError:  # a server that lost its scripts (restart, failover)
                reply = scripts.touch(keys=[key], args=[asker])
            return touched(digest, reply, now)

    def get_token(self, digest: str, now: float) -> TokenRecord | None:
        with self._errors("get_token"):
            value, pttl = start(read_token_step(digest, self._layout), self._client, self._scripts)
            return read_token(digest, value or None, pttl, now)

    def revoke_token(self, digest: str) -> bool:
        with self._errors("revoke_token"):
            return bool(self._run(revoke_token_plan(digest, self._layout)))

    # -- invalidations ----------------------------------------------------------------
    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Call `callback(Invalidation)` from a background thread for every revocation
        and rotation.

        Returns after the first attempt to subscribe (at most about `timeout` seconds),
        whether or not Redis answered: the thread keeps retrying with backoff.
        """
        if self._closed:
            raise StoreUnavailable("Redis store is closed")
        target, options = self._target, self._options
        listener = Listener(
            lambda: sync_client(target, options, retry=False),
            self._layout.channel(),
            callback,
            sharded=self._layout.cluster,
        )
        with self._lock:
            self._listeners.add(listener)
        listener.start()
        listener.first_attempt.wait(self.timeout * 2 + 1)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.discard(listener)
            listener.stop()

        return unsubscribe

    # -- scripts of the shared limits (server.throttle, ratelimit) ---------------------
    def run_script(self, lua: str, keys: list[str], args: list[str]) -> Any:
        """Run a Lua script of another part, atomically; StoreUnavailable if Redis fails.

        Every key the script touches must be in `keys`, all in one hash slot.
        """
        with self._errors("script"):
            return self._client.register_script(lua)(keys=keys, args=args)

    async def arun_script(self, lua: str, keys: list[str], args: list[str]) -> Any:
        """`run_script` on this event loop's async client."""
        with self._errors("script"):
            client, _ = self._aclient()
            return await client.register_script(lua)(keys=keys, args=args)

    # -- lifecycle --------------------------------------------------------------------
    def ping(self) -> None:
        """Ask the key index's node (on a cluster, the ``{prefix}`` slot's master, which
        every login needs: PING to any node answers while that slot has none)."""
        with self._errors("ping"):
            self._client.exists(self._layout.keys_index())

    def close(self) -> None:
        """Stop listeners, close the sync client and, where possible, the async ones.

        An async client is closed on its own loop: directly when that loop is idle,
        through the loop when it runs in another thread, as a task when it runs in this
        one. A client whose loop is already closed cannot be closed cleanly any more:
        call `aclose` (or `close`) before closing a loop that used the store.
        """
        self._closed = True
        with self._lock:
            listeners = list(self._listeners)
            self._listeners.clear()
            aclients: list[tuple[asyncio.AbstractEventLoop, Any]] = [
                (loop, client) for loop, (client, _) in self._aclients.items()
            ]
            aclients += [(loop, s.client) for loop, s in self._alookups.items()]
            self._aclients.clear()
            self._alookups.clear()
        for listener in listeners:
            listener.stop()
        if self._sync is not None:
            with suppress(redis.RedisError, OSError):
                self._sync[0].close()
        if self._lean_client is not None:
            self._lean_client.close()
        for loop, client in aclients:
            close_on_loop(loop, client, self.timeout)
