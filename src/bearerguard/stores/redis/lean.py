"""Lean clients for the scripts every request runs, on one Redis.

Each token lookup (the middleware's cold path, the auth service's ``/introspect``) and
each login is one script call. Through redis-py such a call spends much of its CPU on
the connection pool, command objects and retry wrappers; the clients here do only what
these calls need (CHANGELOG, issue 18): hiredis packs each command and parses its reply.

`AsyncLeanClient` keeps one connection per event loop and pipelines on it: a call
writes its command and waits for its reply; Redis answers in order, so replies are
handed out in the order the commands were written. Each call has a deadline (the
client's `timeout`), kept by one timer per connection rather than one per call. A call
past its deadline (or cancelled by its caller) before its reply came aborts the
connection if nothing at all came back on it since that call was sent: a connection
that went silent (a stalled Redis, a flow a NAT dropped) is not waited on by the calls
after it. Those are sent again on a new connection without using up their retry, each
still bounded by its own deadline. A late reply to a timed-out call is dropped.

`LeanClient` is the blocking twin (the WSGI middleware's cold path): one call at a time
per connection, idle connections kept for the next call in any thread, each call bounded
by the client's timeout. A connection that failed or timed out is closed, never reused,
so no late reply is read by another call; a process forked with idle connections drops
them in the child.

Failures are those of redis-py (`redis.exceptions.ConnectionError`, `TimeoutError`,
`ResponseError`), so the store's error boundary treats every client alike. A call that
finds the connection lost (Redis restarted, the connection killed) is retried once on a
new one, as the redis-py clients here are (``Retry(NoBackoff(), 1)``).

Used where the store URL names one Redis (``redis://``, or ``rediss://`` with at most
``?ssl_ca_certs=``: the server's certificate and name are checked, as for redis-py,
`connect`), without other redis-py query options (`lean_target`); Sentinel, Cluster and
the rest keep redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import time
import weakref
from collections import deque
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import hiredis
from redis.connection import parse_url as redis_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connect import Target

__all__ = ["AsyncLeanClient", "LeanClient", "LeanScript", "lean_target"]

_PLAIN = frozenset({"host", "port", "db", "username", "password"})
_TLS = _PLAIN | {"connection_class", "ssl_ca_certs"}  # rediss://, redis-py's parse_url
_MAX_RESENDS = 8  # sends of one call on connections given up for other calls' deadlines
_READ = 65536


def lean_target(target: Target) -> dict[str, Any] | None:
    """Host, port, db, credentials (and TLS: ``tls``, ``ssl_ca_certs``) when the lean
    clients can serve `target`, else None.

    One Redis, and nothing in the URL's query but a TLS URL's ``ssl_ca_certs``: other
    forms (Sentinel, Cluster, redis-py's own URL options) stay on redis-py.
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


class _Server:
    """Where a lean client connects, and what it says first (`lean_target`'s options)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.host: str = options.get("host") or "localhost"
        self.port = int(options.get("port") or 6379)
        self._tls: bool = bool(options.get("tls"))
        self._cafile: str | None = options.get("ssl_ca_certs")
        hello: list[tuple[Any, ...]] = []
        password: str | None = options.get("password")
        if password is not None:
            username: str | None = options.get("username")
            hello.append(("AUTH", *((username,) if username else ()), password))
        db = int(options.get("db") or 0)
        if db:
            hello.append(("SELECT", db))
        self.hello = hello  # AUTH, SELECT: sent on every new connection

    def tls(self) -> ssl.SSLContext | None:
        """A new connection's TLS context (None: plain TCP).

        Verified, name included (create_default_context), as `connect` has redis-py do;
        made per connection, as redis-py does, so a CA file is read when one is opened:
        a missing one fails that connection (StoreUnavailable), and a replaced one is
        read by the next.
        """
        return ssl.create_default_context(cafile=self._cafile) if self._tls else None


def _refused(reply: Any) -> None:
    # A handshake refused: the reply's first word names the refusal, never the secret.
    if isinstance(reply, hiredis.ReplyError):
        raise RedisConnectionError(str(reply).split(" ", 1)[0])


def _checked(reply: Any) -> Any:
    """The reply, or redis-py's exception for an error reply."""
    if isinstance(reply, hiredis.ReplyError):
        message = str(reply)
        if message.startswith("NOSCRIPT"):
            raise NoScriptError(message)
        raise ResponseError(message)
    return reply


# -- asyncio ----------------------------------------------------------------------------


class _Stalled(RedisConnectionError):
    """The connection was given up: silent past another call's deadline."""


class _Connection(asyncio.Protocol):
    """One connection: commands out in order, replies back to their calls in order.

    Each call waits with its deadline and the count of replies read when it was sent.
    One timer (`watch`) serves them all: armed at the earliest deadline, re-armed when
    it fires, moved only for a call due before it, so a call costs no timer of its own.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[Any], float, int]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.stalled = False
        self.received = 0  # replies read so far
        self.watch: asyncio.TimerHandle | None = None

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
            future = waiting.popleft()[0]
            if not future.done():  # a timed-out or cancelled call's reply is dropped here
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.watch is not None:
            self.watch.cancel()
        kind = _Stalled if self.stalled else RedisConnectionError
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(kind("Connection lost"))

    def send(self, args: tuple[Any, ...], deadline: float) -> asyncio.Future[Any]:
        assert self.transport is not None
        future: asyncio.Future[Any] = self.loop.create_future()
        self.transport.write(hiredis.pack_command(args))
        self.waiting.append((future, deadline, self.received))
        watch = self.watch
        # Deadlines mostly grow in the order calls are sent; one sent again, or a
        # script's EVAL after its EVALSHA, may come due before the timer: moved up.
        if watch is None or deadline < watch.when():
            if watch is not None:
                watch.cancel()
            self.watch = self.loop.call_at(deadline, self._due)
        return future

    def _due(self) -> None:
        # Calls past their deadline fail; if one of them has seen nothing at all come
        # back since it was sent, the connection went silent: given up (module docstring).
        self.watch = None
        now, next_due = self.loop.time(), 0.0
        for future, deadline, before in self.waiting:
            if future.done():
                continue
            if deadline > now:
                next_due = min(next_due, deadline) if next_due else deadline
            elif before == self.received:
                self.abort(stalled=True)
                return
            else:
                future.set_exception(RedisTimeoutError("Timeout reading from socket"))
        if next_due:
            self.watch = self.loop.call_at(next_due, self._due)

    def abort(self, *, stalled: bool = False) -> None:
        self.lost = True
        self.stalled = self.stalled or stalled
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails the calls still waiting


class AsyncLeanClient:
    """Pipelined calls on one connection to one Redis, for the running event loop.

    `options` are `lean_target`'s; `timeout` bounds each call, connecting (with
    authenticating and selecting the database) included. Replies are RESP2 values as
    hiredis reads them (bulk strings as bytes).
    """

    def __init__(self, options: dict[str, Any], timeout: float) -> None:
        self._server = _Server(options)
        self._timeout = timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False

    async def execute(self, *args: Any, deadline: float = 0.0) -> Any:
        """Send one command and return its reply; a ``-ERR`` reply raises ResponseError
        (NoScriptError for ``NOSCRIPT``), no reply by `deadline` (the loop's clock;
        default: `timeout` from now) TimeoutError. Retried once on a new connection when
        the connection was lost (module docstring)."""
        loop = asyncio.get_running_loop()
        deadline = deadline or loop.time() + self._timeout
        lost = stalled = 0
        while True:
            conn = self._connection
            if conn is None or conn.lost:
                conn = await self._connect(deadline)
            before = conn.received
            future = conn.send(args, deadline)
            try:
                reply = await future
            except _Stalled:
                # Given up for another call's deadline (or ours): again, while ours allows.
                stalled += 1
                if loop.time() >= deadline:
                    raise RedisTimeoutError("Timeout reading from socket") from None
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
            return _checked(reply)

    async def script(self, script: LeanScript, keys: list[Any], args: list[Any]) -> Any:
        """`script` by EVALSHA; by EVAL when Redis does not have it (see `LeanScript`),
        both within one `timeout`."""
        deadline = asyncio.get_running_loop().time() + self._timeout
        keys_args = (len(keys), *keys, *args)
        try:
            return await self.execute("EVALSHA", script.sha, *keys_args, deadline=deadline)
        except NoScriptError:
            return await self.execute("EVAL", script.lua, *keys_args, deadline=deadline)

    async def _connect(self, deadline: float) -> _Connection:
        if self._closed:
            raise RedisConnectionError("Client closed")
        loop = asyncio.get_running_loop()
        task = self._connecting
        if task is None:
            # One attempt at a time, shared by every call that needs it; a caller's
            # deadline ends its wait, not the attempt.
            task = self._connecting = loop.create_task(self._open())
            task.add_done_callback(self._connected)
        try:
            conn = await asyncio.wait_for(asyncio.shield(task), max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            raise RedisTimeoutError("Timeout connecting") from None
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
            return await asyncio.wait_for(self._handshake(), self._timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RedisConnectionError(f"Cannot connect: {type(exc).__name__}") from exc

    async def _handshake(self) -> _Connection:
        loop = asyncio.get_running_loop()
        server = self._server
        tls = server.tls()
        _, conn = await loop.create_connection(
            _Connection,
            server.host,
            server.port,
            ssl=tls,
            server_hostname=server.host if tls else None,
        )
        deadline = loop.time() + self._timeout
        try:
            for future in [conn.send(command, deadline) for command in server.hello]:
                _refused(await future)
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


# -- blocking ---------------------------------------------------------------------------


class _Lost(Exception):
    """The connection failed under a call (closed, reset, not Redis): retry once."""


class _Socket:
    """One blocking connection; used by one call at a time."""

    __slots__ = ("reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()

    def call(self, packed: bytes, timeout: float) -> Any:
        """Send `packed`, return its reply; within `timeout` seconds of being called."""
        sock, reader = self.sock, self.reader
        try:
            sock.sendall(packed)
            reply = reader.gets()
            deadline = 0.0
            shortened = False
            while reply is False:
                # The socket's timeout is the client's; a reply in pieces (rare) shares it.
                if deadline:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                    shortened = True
                else:
                    deadline = time.monotonic() + timeout
                data = sock.recv(_READ)
                if not data:
                    raise _Lost("Connection closed by server")
                reader.feed(data)
                reply = reader.gets()
            if shortened:  # each settimeout is a system call: only to undo our own
                sock.settimeout(timeout)
            return reply
        except hiredis.ProtocolError as exc:
            raise _Lost("Protocol error") from exc
        except TimeoutError as exc:  # socket.timeout, Python 3.10+
            raise RedisTimeoutError("Timeout reading from socket") from exc
        except OSError as exc:
            raise _Lost(f"Connection lost: {type(exc).__name__}") from exc

    def close(self) -> None:
        with suppress(OSError):
            self.sock.close()


_forked: weakref.WeakSet[LeanClient] = weakref.WeakSet()


def _drop_idle_after_fork() -> None:
    # The child shares the parent's sockets: using them would mix both processes'
    # replies. Dropped, not closed, so nothing is said on the parent's connections.
    for client in list(_forked):
        client._idle = []


os.register_at_fork(after_in_child=_drop_idle_after_fork)


class LeanClient:
    """Blocking calls to one Redis, on connections kept between calls (module docstring).

    `options` are `lean_target`'s; `timeout` bounds connecting (with authenticating
    and selecting the database) and each call. Safe to use from many threads: a call
    takes an idle connection, or opens one, and gives it back when it is done.
    """

    def __init__(self, options: dict[str, Any], timeout: float) -> None:
        self._server = _Server(options)
        self._timeout = timeout
        self._idle: list[_Socket] = []
        self._closed = False
        _forked.add(self)

    def execute(self, *args: Any) -> Any:
        """Send one command and return its reply; a ``-ERR`` reply raises ResponseError
        (NoScriptError for ``NOSCRIPT``). Retried once on a new connection when the
        connection was lost, not when it timed out."""
        packed = hiredis.pack_command(args)
        for attempt in (1, 2):
            try:
                # One step, so threads never share a connection; the retry on a new one
                # (other idle connections may be as dead: Redis restarted).
                conn = self._idle.pop() if attempt == 1 else self._open()
            except IndexError:
                conn = self._open()
            try:
                reply = conn.call(packed, self._timeout)
            except _Lost as exc:
                conn.close()
                if attempt == 2:
                    raise RedisConnectionError(str(exc)) from exc
                continue
            except BaseException:
                conn.close()  # its reply may still come: never read by another call
                raise
            self._idle.append(conn)
            if self._closed:  # closed meanwhile: `close` may have missed this one
                self.close()
            return _checked(reply)
        raise AssertionError("unreachable")  # pragma: no cover

    def script(self, script: LeanScript, keys: list[Any], args: list[Any]) -> Any:
        """`script` by EVALSHA; by EVAL when Redis does not have it (see `LeanScript`)."""
        try:
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self.execute("EVAL", script.lua, len(keys), *keys, *args)

    def _open(self) -> _Socket:
        if self._closed:
            raise RedisConnectionError("Client closed")
        server = self._server
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection((server.host, server.port), self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = server.tls()
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=server.host)
            conn = _Socket(sock)
            if server.hello:
                sock.sendall(b"".join(hiredis.pack_command(c) for c in server.hello))
                for _ in server.hello:
                    _refused(conn.call(b"", self._timeout))
        except (OSError, _Lost, RedisTimeoutError) as exc:
            if sock is not None:
                sock.close()
            raise RedisConnectionError(f"Cannot connect: {type(exc).__name__}") from exc
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        return conn

    def close(self) -> None:
        """Close the idle connections; calls after this raise ConnectionError (those
        under way close theirs when they end)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class LeanScript:
    """A Lua script run by EVALSHA on a lean client; EVAL when Redis does not have it
    (after a restart or ``SCRIPT FLUSH``), which loads it for the calls after.

    Called as redis-py's registered scripts are: ``script(keys=[…], args=[…])``, which
    returns the reply on a `LeanClient` and an awaitable of it on an `AsyncLeanClient`.
    """

    def __init__(self, client: LeanClient | AsyncLeanClient, lua: str) -> None:
        self.client = client
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()  # noqa: S324  (Redis's script id)

    def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        return self.client.script(self, keys, args)
