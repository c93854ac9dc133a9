"""Plumbing for the in-process bench: the variant record and registry, synthetic ASGI and
WSGI requests, the tiny app ("GET /whoami" -> small JSON) and the reference middlewares.

Each variant is one callable that serves one request in-process: ASGI apps get a
synthetic HTTP scope with prebuilt receive/send coroutines, WSGI apps a prepared
environ and a no-op start_response.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bearerguard import tokens

# Every request carries the same headers, bare apps included.
HOST_HEADER = (b"host", b"bench.local")
ACCEPT_HEADER = (b"accept", b"*/*")
UA_HEADER = (b"user-agent", b"bench/1")
PEER = ("127.0.0.1", 50000)
APIS = ("dns", "vps")
KEY_ID = "key_bench"


@dataclass
class Variant:
    """One thing measured: `call()` serves one request (async when `is_async`)."""

    name: str
    label: str
    group: str  # baseline | floor | peer | bearerguard | cold | raw
    baseline: str | None
    is_async: bool
    call: Callable[[], Any] | None = None
    check: Callable[[], Any] | None = None  # returns (status, body)
    compare_to: str | None = None  # for cold introspection: the raw POST variant
    note: str = ""
    unavailable: str | None = None
    expect_status: int = 200
    closers: list[Callable[[], Any]] = field(default_factory=list)


# -- request plumbing -----------------------------------------------------------------

_REQUEST_MSG = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> dict[str, Any]:
    return _REQUEST_MSG


async def _send(message: dict[str, Any]) -> None:
    return None


def asgi_scope(token: str | None, path: str = "/whoami") -> dict[str, Any]:
    headers = [HOST_HEADER, UA_HEADER, ACCEPT_HEADER]
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": PEER,
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }


def asgi_call(app: Any, token: str | None) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(call, check) for an ASGI app; the scope is copied per call (apps write to it)."""
    template = asgi_scope(token)
    receive, send = _receive, _send

    async def call() -> None:
        await app(template.copy(), receive, send)

    async def check() -> tuple[int, bytes]:
        status: list[int] = []
        body: list[bytes] = []

        async def rec(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await app(template.copy(), receive, rec)
        return (status[0] if status else 0), b"".join(body)

    return call, check


def wsgi_environ(token: str | None, path: str = "/whoami") -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": PEER[0],
        "REMOTE_PORT": str(PEER[1]),
        "HTTP_HOST": "bench.local",
        "HTTP_USER_AGENT": "bench/1",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if token is not None:
        env["HTTP_AUTHORIZATION"] = "Bearer " + token
    return env


def _write(data: bytes) -> None:
    return None


def _start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
    return _write


def wsgi_call(app: Any, token: str | None) -> tuple[Callable[[], Any], Callable[[], Any]]:
    template = wsgi_environ(token)
    sr = _start_response

    def call() -> None:
        result = app(template.copy(), sr)
        for _ in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()

    def check() -> tuple[int, bytes]:
        seen: list[str] = []

        def rec(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
            seen.append(status)
            return _write

        result = app(template.copy(), rec)
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
        return (int(seen[0].split()[0]) if seen else 0), body

    return call, check


# -- the tiny apps ---------------------------------------------------------------------


def starlette_app(middleware: list[Any] | None = None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def whoami(request: Request) -> JSONResponse:
        user = request.scope.get("user")
        name = user.display_name if user is not None and user.is_authenticated else "anonymous"
        return JSONResponse({"key_id": name})

    return Starlette(routes=[Route("/whoami", whoami)], middleware=middleware or [])


def flask_app(decorate: Callable[[Any], Any] | None = None) -> Any:
    from flask import Flask, request

    app = Flask("bench")

    def whoami() -> dict[str, str]:
        ident = request.environ.get("bearerguard.identity")
        return {"key_id": ident.key_id if ident is not None else "anonymous"}

    view = decorate(whoami) if decorate is not None else whoami
    app.add_url_rule("/whoami", "whoami", view, methods=["GET"])
    return app


class NoopMiddleware:
    """The floor: a pure ASGI middleware that does nothing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


# The reference and the floor hash as bearerguard does (`tokens.sha256`, Python's own
# SHA-256 where OpenSSL's is not required): they measure the work around the hash, so a
# faster hash in bearerguard alone must not move their ratios. The peers keep hashlib's.
sha256 = tokens.sha256


class MinimalCheckMiddleware:
    """The unavoidable work, as a reference: find the header, hash, dict, clock."""

    def __init__(self, app: Any, *, table: dict[str, float]) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    digest = sha256(value[7:]).hexdigest()
                    exp = self.table.get(digest)
                    if exp is not None and time.time() < exp:
                        break
            else:
                raise RuntimeError("bench: token not accepted")
        await self.app(scope, receive, send)


class ContractFloorMiddleware:
    """The floor for the contract's cached-path work, written as one function.

    Everything bearerguard's cached path must do on every hit, with no structure
    around it: read every header (a second ``Authorization`` must not pass), check
    the scheme, hash, look up, compare the clock with the refresh time, take the peer
    address, ask `policy.admit` (expiry, IP binding, API), reuse the memoised
    `Identity` and write the three scope keys the contract names. It skips what a
    real adapter cannot: no proxies, no address normalisation, no metrics, no
    fall-back to a full flow (anything else is an error here).
    """

    def __init__(self, app: Any, *, table: dict[bytes, tuple[float, Any, Any]], api: str) -> None:
        from bearerguard.credentials import BEARER_PREFIXES
        from bearerguard.policy import admit

        self.app, self.table, self.api = app, table, api
        self.prefixes, self.admit = BEARER_PREFIXES, admit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = b""
            count = 0
            forwarded = False
            for name, value in scope["headers"]:
                if name == b"authorization":
                    auth = value
                    count += 1
                elif name == b"x-forwarded-for":
                    forwarded = True
            if count != 1 or forwarded or not auth.startswith(self.prefixes):
                raise RuntimeError("bench: not the cached path")
            entry = self.table.get(sha256(auth[7:]).digest())
            now = time.time()
            if entry is None or now >= entry[0]:
                raise RuntimeError("bench: token not fresh")
            client = scope.get("client")
            client_ip = client[0] if client else None
            ident = entry[2]
            if self.admit(entry[1], client_ip, self.api, now) or ident.client_ip != client_ip:
                raise RuntimeError("bench: token not admitted")
            scope["bearerguard"] = scope["user"] = scope["auth"] = ident
        await self.app(scope, receive, send)


class ContractFloorWSGI(ContractFloorMiddleware):
    """`ContractFloorMiddleware`'s WSGI twin: the same checks on a WSGI environ."""

    def __call__(self, environ: Any, start_response: Any) -> Any:  # type: ignore[override]
        auth = environ.get("HTTP_AUTHORIZATION")
        if auth is None or not auth.isascii() or "HTTP_X_FORWARDED_FOR" in environ:
            raise RuntimeError("bench: not the cached path")
        raw = auth.encode()
        if not raw.startswith(self.prefixes):
            raise RuntimeError("bench: not the cached path")
        entry = self.table.get(sha256(raw[7:]).digest())
        now = time.time()
        if entry is None or now >= entry[0]:
            raise RuntimeError("bench: token not fresh")
        client_ip = environ.get("REMOTE_ADDR")
        ident = entry[2]
        if self.admit(entry[1], client_ip, self.api, now) or ident.client_ip != client_ip:
            raise RuntimeError("bench: token not admitted")
        environ["bearerguard.identity"] = ident
        return self.app(environ, start_response)


class ContractMissMiddleware:
    """The floor for the contract's work on a cache miss, written as one function.

    What every miss must do, with nothing around it: read every header, check the
    RFC 6750 syntax and length (`extract_token`) and the token format (H2), hash,
    find neither a positive nor a negative entry, take a lookup slot under the
    fair-share rule (H2) and join or lead the single flight for the token and address,
    await the backend, hand the answer to the flight, drop it if the token was revoked
    meanwhile (P), cache it with its fresh-until time capped by the token's expiry and
    its refresh time (G1; at once when asked from another address, H4) in a bounded
    table, apply `policy.admit`, build the `Identity` and write the scope keys. It
    skips what bearerguard adds beyond the contract: no metrics, no logging, no shared
    copies in the cache (the memory target's), no stale-if-error.
    """

    def __init__(self, app: Any, *, backend: Any, api: str, table: dict[bytes, Any]) -> None:
        from bearerguard._edge import _Slots
        from bearerguard.credentials import extract_token
        from bearerguard.policy import admit
        from bearerguard.tokens import Identity, fingerprint, is_well_formed

        self.app, self.backend, self.api, self.table = app, backend, api, table
        self.negative: dict[bytes, float] = {}
        self.gone: dict[bytes | str, float] = {}  # revoked lately (P): none here
        self.gone_until = 0.0
        self.flights: dict[tuple[bytes, str | None], Any] = {}
        self.slots = _Slots(16)  # the fair-share rule (H2), bearerguard's own
        self.extract, self.well_formed, self.admit = extract_token, is_well_formed, admit
        self.identity, self.fingerprint = Identity, fingerprint

    def _start(self, auth: list[bytes], forwarded: bool) -> tuple[str, bytes]:
        if forwarded:
            raise RuntimeError("bench: not the miss path")
        token = self.extract([a.decode("latin-1") for a in auth])
        if token is None or not self.well_formed(token):
            raise RuntimeError("bench: not a token")
        key = sha256(token.encode()).digest()
        if key in self.table or key in self.negative:
            raise RuntimeError("bench: not a miss")
        return token, key

    def _finish(self, key: bytes, info: Any, client_ip: str | None, now: float) -> Any:
        if info is None:
            raise RuntimeError("bench: token unknown")
        if now < self.gone_until and (key in self.gone or info.key_id in self.gone):
            raise RuntimeError("bench: token revoked")
        fresh_until = min(now + 300.0, info.expires_at)
        counted = info.bound_ip in (None, client_ip)
        refresh_at = min(now + min(5.0, info.ttl / 3), fresh_until) if counted else now
        if len(self.table) >= 100_000:
            del self.table[next(iter(self.table))]
        self.table[key] = (fresh_until, refresh_at, info)
        if self.admit(info, client_ip, self.api, now):
            raise RuntimeError("bench: token not admitted")
        return self.identity(info.key_id, info.apis, client_ip, info, self.fingerprint(key))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import asyncio

        auth: list[bytes] = []
        forwarded = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth.append(value)
            elif name == b"x-forwarded-for":
                forwarded = True
        token, key = self._start(auth, forwarded)
        client = scope.get("client")
        client_ip = client[0] if client else None
        flight = (key, client_ip)
        waiter = self.flights.get(flight)
        if waiter is not None:
            info = await asyncio.shield(waiter)
        else:
            self.slots.take(client_ip)
            waiter = self.flights[flight] = asyncio.get_running_loop().create_future()
            try:
                info = await self.backend.alookup(token, client_ip)
                waiter.set_result(info)
            finally:
                del self.flights[flight]
                self.slots.give(client_ip)
        ident = self._finish(key, info, client_ip, time.time())
        scope["bearerguard"] = scope["user"] = scope["auth"] = ident
        await self.app(scope, receive, send)


class ContractMissWSGI(ContractMissMiddleware):
    """`ContractMissMiddleware`'s WSGI twin: the single flight under a lock, the backend
    called in the leader's thread (as bearerguard calls a self-timed backend)."""

    def __init__(self, app: Any, **options: Any) -> None:
        import threading

        super().__init__(app, **options)
        self.lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> Any:  # type: ignore[override]
        auth = environ.get("HTTP_AUTHORIZATION")
        raw = [] if auth is None else [auth.encode("latin-1")]
        token, key = self._start(raw, "HTTP_X_FORWARDED_FOR" in environ)
        client_ip = environ.get("REMOTE_ADDR")
        flight = (key, client_ip)
        with self.lock:
            if flight in self.flights:
                raise RuntimeError("bench: one request at a time")
            self.slots.take(client_ip)
            self.flights[flight] = None
        try:
            info = self.backend.lookup(token, client_ip)
        finally:
            with self.lock:
                del self.flights[flight]
                self.slots.give(client_ip)
        environ["bearerguard.identity"] = self._finish(key, info, client_ip, time.time())
        return self.app(environ, start_response)


class MinimalCheckWSGI:
    """`MinimalCheckMiddleware`'s WSGI twin: read the header, hash, dict, clock."""

    def __init__(self, app: Any, *, table: dict[str, float]) -> None:
        self.app = app
        self.table = table

    def __call__(self, environ: Any, start_response: Any) -> Any:
        auth = environ.get("HTTP_AUTHORIZATION")
        if auth is None:
            raise RuntimeError("bench: no token")
        exp = self.table.get(sha256(auth[7:].encode()).hexdigest())
        if exp is None or time.time() >= exp:
            raise RuntimeError("bench: token not accepted")
        return self.app(environ, start_response)


class TTLCacheMiddleware:
    """Reference from the issue: a pure ASGI middleware with a cachetools TTLCache hit."""

    def __init__(self, app: Any, *, cache: Any) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            token = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    token = value.decode("latin-1")
            if token is None or not token[:7].lower() == "bearer ":
                raise RuntimeError("bench: no token")
            info = self.cache.get(hashlib.sha256(token[7:].encode()).hexdigest())
            if info is None:
                raise RuntimeError("bench: token not accepted")
            scope["user"] = info
        await self.app(scope, receive, send)


# -- environment shared by the variants -------------------------------------------------


@dataclass
class Env:
    token: str
    intro_url: str | None = None
    intro_client: tuple[str, str] | None = None
    intro_prefix: str = ""
    intro_error: str | None = None
    redis_url: str | None = None
    redis_error: str | None = None
    tmpdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bg-bench-")))

    def intro_token(self) -> str:
        return self.intro_prefix + secrets.token_urlsafe(24)


def issue_token(store: Any, token: str, apis: tuple[str, ...] = APIS, ttl: float = 3600.0) -> str:
    """Create a key and store `token` for it, bound to 127.0.0.1; return the key id."""
    from bearerguard.stores.base import TokenRecord
    from bearerguard.tokens import token_digest

    key, _secret = store.create_key(apis)
    now = time.time()
    store.put_token(
        TokenRecord(
            digest=token_digest(token),
            key_id=key.key_id,
            apis=frozenset(apis),
            bound_ip=PEER[0],
            issued_at=now,
            ttl=ttl,
            expires_at=now + ttl,
        )
    )
    return str(key.key_id)


Builder = Callable[[Env, Variant], Awaitable[Variant]]
BUILDERS: list[tuple[str, str, str, str | None, bool, Builder]] = []


def variant(
    name: str, label: str, group: str, baseline: str | None, is_async: bool
) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        BUILDERS.append((name, label, group, baseline, is_async, fn))
        return fn

    return deco
