"""A lean asyncio connection for the scripts every request runs, on one Redis.

Each token lookup (the middleware's cold path, the auth service's ``/introspect``) and
each login is one script call. Through ``redis.asyncio`` such a call spends much of its
CPU on the connection pool, command objects and retry wrappers; `LeanClient` does only
what these calls need (CHANGELOG, issue 18: 175 µs of server CPU less a ``/login``). It keeps
one connection per event loop and pipelines on it: a call writes its command (packed
by hiredis) and waits for its reply, which hiredis parses; Redis answers in order, so
replies are handed out in the order the commands were written.

Failures are those of redis-py (`redis.exceptions.ConnectionError`, `ResponseError`),
so the store's error boundary treats both clients alike. A call that finds the
connection lost (Redis restarted, the connection killed) is retried once on a new one,
as the redis-py clients here are (``Retry(NoBackoff(), 1)``). A call cancelled before
its reply came (the caller's deadline, `bearerguard._timeout.within`) aborts the
connection if nothing at all came back on it since that call was sent: a connection
that went silent (a stalled Redis, a flow a NAT dropped) is not waited on by the calls
after it. Those are sent again on a new connection without using up their retry, each
still bounded by its own caller's deadline. A late reply to a cancelled call is dropped.

Used where the store URL names one Redis (``redis://``, or ``rediss://`` with at most
``?ssl_ca_certs=``: the server's certificate and name are checked, as for redis-py,
`connect`), without other redis-py query options (`lean_target`); Sentinel, Cluster and
the rest keep ``redis.asyncio``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import hiredis
from redis.connection import parse_url as redis_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from .connect import Target

__all__ = ["LeanClient", "LeanScript", "lean_target"]

_PLAIN = frozenset({"host", "port", "db", "username", "password"})
_TLS = _PLAIN | {"connection_class", "ssl_ca_certs"}  # rediss://, redis-py's parse_url
_MAX_RESENDS = 8  # sends of one call on connections given up for other calls' deadlines


def lean_target(target: Target) -> dict[str, Any] | None:
    """Host, port, db, credentials (and TLS: ``tls``, ``ssl_ca_certs``) when
    `LeanClient` can serve `target`, else None.

    One Redis, and nothing in the URL's query but a TLS URL's ``ssl_ca_certs``: other
    forms (Sentinel, Cluster, redis-py's own URL options) stay on ``redis.asyncio``.
    """
    if target.kind != "single":
        return None
    options: dict[str, Any] = redis_url(target.url)  # type: ignore[no-untyped-call]
    if set(options) - (_TLS if target.tls else _PLAIN):
        return None
    if not target.tls:
        return options
    if urlsplit(target.url).query.count("=") > 1:  # the one option, given once
        return None
    options.pop("connection_class", None)
    return {**options, "tls": True}


class _Stalled(RedisConnectionError):
    """The connection was given up: silent past another call's deadline."""


class _Connection(asyncio.Protocol):
    """One connection: commands out in order, replies back to their calls in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.stalled = False
        self.received = 0  # replies read so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError:
                # Not Redis speaking, or a stream out of step: nothing after is trusted.
                self.abort()
                return
            if reply is False:
                return
            self.received += 1
            if not waiting:  # a reply nobody asked for
                self.abort()
                return
            future = waiting.popleft()
            if not future.done():  # a cancelled call's reply is dropped here
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        kind = _Stalled if self.stalled else RedisConnectionError
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(kind("Connection lost"))

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.transport.write(hiredis.pack_command(args))
        self.waiting.append(future)
        return future

    def abort(self, *, stalled: bool = False) -> None:
        self.lost = True
        self.stalled = self.stalled or stalled
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails the calls still waiting


class LeanClient:
    """Pipelined calls on one connection to one Redis, for the running event loop.

    `options` are `lean_target`'s; `connect_timeout` bounds connecting, authenticating
    and selecting the database. Replies are RESP2 values as hiredis reads them (bulk
    strings as bytes). The caller bounds each call with a deadline of its own.
    """

    def __init__(self, options: dict[str, Any], connect_timeout: float) -> None:
        self._host = options.get("host") or "localhost"
        self._port = int(options.get("port") or 6379)
        self._db = int(options.get("db") or 0)
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._tls: ssl.SSLContext | None = None
        if options.get("tls"):
            # Verified, name included (create_default_context), as `connect` has redis-py do.
            self._tls = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
        self._connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply; a ``-ERR`` reply raises ResponseError
        (NoScriptError for ``NOSCRIPT``). Retried once on a new connection when the
        connection was lost (module docstring)."""
        lost = stalled = 0
        while True:
            conn = self._connection
            if conn is None or conn.lost:
                conn = await self._connect()
            before = conn.received
            future = conn.send(args)
            try:
                reply = await future
            except _Stalled:
                # Given up for another call's deadline: again, while ours allows.
                stalled += 1
                if stalled > _MAX_RESENDS:
                    raise
                continue
            except RedisConnectionError:
                lost += 1
                if lost > 1:
                    raise
                continue
            except asyncio.CancelledError:
                if (not future.done() or future.cancelled()) and conn.received == before:
                    conn.abort(stalled=True)  # silent since this call went out
                raise
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                if message.startswith("NOSCRIPT"):
                    raise NoScriptError(message)
                raise ResponseError(message)
            return reply

    async def _connect(self) -> _Connection:
        if self._closed:
            raise RedisConnectionError("Client closed")
        task = self._connecting
        if task is None:
            # One attempt at a time, shared by every call that needs it; a caller's
            # deadline cancels its wait, not the attempt.
            task = self._connecting = asyncio.get_running_loop().create_task(self._open())
            task.add_done_callback(self._connected)
        conn = await asyncio.shield(task)
        if self._closed:
            raise RedisConnectionError("Client closed")
        return conn

    def _connected(self, task: asyncio.Task[_Connection]) -> None:
        self._connecting = None
        if task.cancelled() or task.exception() is not None:
            return
        conn = task.result()
        if self._closed:  # closed while connecting: this connection is not kept
            conn.abort()
        else:
            self._connection = conn

    async def _open(self) -> _Connection:
        try:
            # wait_for: once per connection, and asyncio.timeout is Python 3.11+.
            return await asyncio.wait_for(self._handshake(), self._connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RedisConnectionError(f"Cannot connect: {type(exc).__name__}") from exc

    async def _handshake(self) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls
        _, conn = await loop.create_connection(
            _Connection,
            self._host,
            self._port,
            ssl=tls,
            server_hostname=self._host if tls else None,
        )
        hello: list[tuple[Any, ...]] = []
        if self._password is not None:
            user = (self._username,) if self._username else ()
            hello.append(("AUTH", *user, self._password))
        if self._db:
            hello.append(("SELECT", self._db))
        try:
            for future in [conn.send(command) for command in hello]:
                reply = await future
                if isinstance(reply, hiredis.ReplyError):
                    # The reply's first word names the refusal, never the secret.
                    raise RedisConnectionError(str(reply).split(" ", 1)[0])
        except BaseException:
            conn.abort()
            raise
        return conn

    async def aclose(self) -> None:
        """Close the connection; calls after this raise ConnectionError."""
        self._closed = True
        conn, self._connection = self._connection, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()


class LeanScript:
    """A Lua script run by EVALSHA on a `LeanClient`; EVAL when Redis does not have it
    (after a restart or ``SCRIPT FLUSH``), which loads it for the calls after.

    Called as redis-py's registered scripts are: ``await script(keys=[…], args=[…])``.
    """

    def __init__(self, client: LeanClient, lua: str) -> None:
        self.client = client
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()  # noqa: S324  (Redis's script id)

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await self.client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.execute("EVAL", self.lua, len(keys), *keys, *args)
