"""The tiny app ("GET /whoami" → small JSON) and every variant the bench measures.

Each variant is one callable that serves one request in-process: ASGI apps get a
synthetic HTTP scope with prebuilt receive/send coroutines, WSGI apps a prepared
environ and a no-op start_response. Nothing here runs a client library in the timed
call except the "raw httpx POST" reference variants, which are the client call.
"""

from __future__ import annotations

import asyncio
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

import httpx

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


class MinimalCheckMiddleware:
    """The unavoidable work, as a reference: find the header, hash, dict, clock."""

    def __init__(self, app: Any, *, table: dict[str, float]) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    digest = hashlib.sha256(value[7:]).hexdigest()
                    exp = self.table.get(digest)
                    if exp is not None and time.time() < exp:
                        break
            else:
                raise RuntimeError("bench: token not accepted")
        await self.app(scope, receive, send)


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


# -- baselines and floors ----------------------------------------------------------------


@variant("starlette", "bare Starlette", "baseline", None, True)
async def _starlette(env: Env, v: Variant) -> Variant:
    v.call, v.check = asgi_call(starlette_app(), env.token)
    return v


@variant("flask", "bare Flask", "baseline", None, False)
async def _flask(env: Env, v: Variant) -> Variant:
    v.call, v.check = wsgi_call(flask_app(), env.token)
    return v


@variant("fastapi", "bare FastAPI", "baseline", None, True)
async def _fastapi(env: Env, v: Variant) -> Variant:
    from fastapi import FastAPI

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/whoami")
    async def whoami() -> dict[str, str]:
        return {"key_id": "anonymous"}

    v.call, v.check = asgi_call(app, env.token)
    return v


@variant("noop_asgi", "no-op pure ASGI middleware (floor)", "floor", "starlette", True)
async def _noop(env: Env, v: Variant) -> Variant:
    from starlette.middleware import Middleware

    v.call, v.check = asgi_call(starlette_app([Middleware(NoopMiddleware)]), env.token)
    return v


@variant("minimal_asgi", "header+sha256+dict+clock (reference)", "floor", "starlette", True)
async def _minimal(env: Env, v: Variant) -> Variant:
    from starlette.middleware import Middleware

    digest = hashlib.sha256(env.token.encode()).hexdigest()
    mw = Middleware(MinimalCheckMiddleware, table={digest: time.time() + 3600})
    v.call, v.check = asgi_call(starlette_app([mw]), env.token)
    v.note = "the unavoidable work, no policy"
    return v


@variant("ttlcache_asgi", "pure ASGI + cachetools TTLCache hit", "floor", "starlette", True)
async def _ttlcache(env: Env, v: Variant) -> Variant:
    from cachetools import TTLCache
    from starlette.authentication import SimpleUser
    from starlette.middleware import Middleware

    cache: TTLCache[str, Any] = TTLCache(100_000, 3600)
    cache[hashlib.sha256(env.token.encode()).hexdigest()] = SimpleUser(KEY_ID)
    app = starlette_app([Middleware(TTLCacheMiddleware, cache=cache)])
    v.call, v.check = asgi_call(app, env.token)
    v.note = "the issue's reference point, no policy"
    return v


# -- peers -----------------------------------------------------------------------------------


@variant("starlette_auth", "Starlette AuthenticationMiddleware + dict", "peer", "starlette", True)
async def _starlette_auth(env: Env, v: Variant) -> Variant:
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        AuthenticationError,
        SimpleUser,
    )
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware

    tokens = {env.token: KEY_ID}

    class DictBackend(AuthenticationBackend):
        async def authenticate(self, conn: Any) -> tuple[AuthCredentials, SimpleUser] | None:
            header = conn.headers.get("authorization")
            if not header:
                return None
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            key = tokens.get(token)
            if key is None:
                raise AuthenticationError("invalid token")
            return AuthCredentials(list(APIS)), SimpleUser(key)

    app = starlette_app([Middleware(AuthenticationMiddleware, backend=DictBackend())])
    v.call, v.check = asgi_call(app, env.token)
    return v


@variant("fastapi_bearer", "FastAPI HTTPBearer + dict", "peer", "fastapi", True)
async def _fastapi_bearer(env: Env, v: Variant) -> Variant:
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    tokens = {env.token: KEY_ID}
    bearer = HTTPBearer()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    async def current_key(creds: HTTPAuthorizationCredentials = Depends(bearer)) -> str:  # noqa: B008
        key = tokens.get(creds.credentials)
        if key is None:
            raise HTTPException(status_code=401, detail="invalid token")
        return key

    @app.get("/whoami")
    async def whoami(key: str = Depends(current_key)) -> dict[str, str]:
        return {"key_id": key}

    v.call, v.check = asgi_call(app, env.token)
    v.note = "overhead is over bare FastAPI"
    return v


@variant("flask_httpauth", "flask-httpauth HTTPTokenAuth + dict", "peer", "flask", False)
async def _flask_httpauth(env: Env, v: Variant) -> Variant:
    from flask_httpauth import HTTPTokenAuth

    tokens = {env.token: KEY_ID}
    auth = HTTPTokenAuth(scheme="Bearer")

    @auth.verify_token
    def verify(token: str) -> str | None:
        return tokens.get(token)

    v.call, v.check = wsgi_call(flask_app(auth.login_required), env.token)
    return v


class _AuthlibToken(dict):  # type: ignore[type-arg]
    """Authlib's TokenMixin, for the dict-backed validator."""

    def get_scope(self) -> str:
        return str(self["scope"])

    def is_expired(self) -> bool:
        return bool(self["exp"] <= time.time())

    def is_revoked(self) -> bool:
        return False


@variant("authlib_rp", "Authlib Flask ResourceProtector + dict", "peer", "flask", False)
async def _authlib_rp(env: Env, v: Variant) -> Variant:
    from authlib.integrations.flask_oauth2 import ResourceProtector
    from authlib.oauth2.rfc6750 import BearerTokenValidator

    tokens = {env.token: _AuthlibToken(scope="dns vps", exp=time.time() + 3600)}

    class DictValidator(BearerTokenValidator):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Any:
            return tokens.get(token_string)

    protect = ResourceProtector()
    protect.register_token_validator(DictValidator())
    v.call, v.check = wsgi_call(flask_app(protect("dns")), env.token)
    v.note = "checks scope dns"
    return v


# -- bearerguard, cached -----------------------------------------------------------------------


def _memory_backend(token: str) -> Any:
    from bearerguard import StoreBackend
    from bearerguard.stores import MemoryStore

    store = MemoryStore()
    issue_token(store, token)
    return StoreBackend(store)


@variant("bg_asgi", "bearerguard ASGI, cached", "bearerguard", "starlette", True)
async def _bg_asgi(env: Env, v: Variant) -> Variant:
    from starlette.middleware import Middleware

    from bearerguard import BearerGuardMiddleware

    mw = Middleware(BearerGuardMiddleware, backend=_memory_backend(env.token), api="dns")
    v.call, v.check = asgi_call(starlette_app([mw]), env.token)
    v.note = "StoreBackend(MemoryStore()), api=dns, cache hit"
    return v


@variant("bg_wsgi", "bearerguard WSGI, cached", "bearerguard", "flask", False)
async def _bg_wsgi(env: Env, v: Variant) -> Variant:
    from bearerguard import WSGIBearerGuard

    app = flask_app()
    guard = WSGIBearerGuard(app.wsgi_app, backend=_memory_backend(env.token), api="dns")
    app.wsgi_app = guard
    v.closers.append(guard.close)
    v.call, v.check = wsgi_call(app, env.token)
    v.note = "StoreBackend(MemoryStore()), api=dns, cache hit"
    return v


@variant("bg_asgi_metrics", "bearerguard ASGI, cached, metrics", "bearerguard", "starlette", True)
async def _bg_metrics(env: Env, v: Variant) -> Variant:
    import importlib

    from starlette.middleware import Middleware

    from bearerguard import BearerGuardMiddleware

    try:
        metrics_mod = importlib.import_module("bearerguard.metrics")
        metrics = metrics_mod.Metrics()
    except (ImportError, AttributeError):
        v.unavailable = "bearerguard has no metrics.Metrics yet"
        return v
    backend = _memory_backend(env.token)
    mw = Middleware(BearerGuardMiddleware, backend=backend, api="dns", metrics=metrics)
    v.note = "StoreBackend(MemoryStore()), api=dns, metrics=Metrics(), cache hit"
    v.call, v.check = asgi_call(starlette_app([mw]), env.token)
    return v


# -- bearerguard with OpenTelemetry (issue 17): each row a difference to its plain twin --------


class ServerSpanMiddleware:
    """What an instrumented server does: each request inside a recording SERVER span."""

    def __init__(self, app: Any, *, tracer: Any) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from opentelemetry.trace import SpanKind

        with self.tracer.start_as_current_span("GET /whoami", kind=SpanKind.SERVER):
            await self.app(scope, receive, send)


def _otel(env: Env, v: Variant) -> tuple[Any, Any] | None:
    """(SDK TracerProvider, {backend, guard} options) for a traced bearerguard, or None."""
    try:
        from opentelemetry.sdk.trace import TracerProvider

        from bearerguard.otel import TracedBackend, TracedGuard
    except ImportError as exc:
        v.unavailable = f"otel extra not installed: {exc}"
        return None
    provider = TracerProvider()  # records spans, exports nowhere
    traced = TracedBackend(_memory_backend(env.token), tracer_provider=provider)
    return provider, {
        "backend": traced,
        "guard": TracedGuard(api="dns", tracer_provider=provider),
    }


def _asgi_traced(env: Env, v: Variant, *, otel: bool, server_span: bool) -> Variant:
    from starlette.middleware import Middleware

    from bearerguard import BearerGuardMiddleware

    made = _otel(env, v)
    if made is None:
        return v
    provider, traced = made
    options = traced if otel else {"backend": _memory_backend(env.token), "api": "dns"}
    stack = [Middleware(BearerGuardMiddleware, **options)]
    if server_span:
        tracer = provider.get_tracer("bench-server")
        stack.insert(0, Middleware(ServerSpanMiddleware, tracer=tracer))
    v.call, v.check = asgi_call(starlette_app(stack), env.token)
    return v


@variant(
    "bg_asgi_otel",
    "bearerguard ASGI, cached, otel on (Δ vs bearerguard ASGI)",
    "bearerguard",
    "bg_asgi",
    True,
)
async def _bg_asgi_otel(env: Env, v: Variant) -> Variant:
    v.note = "TracedGuard + TracedBackend, SDK TracerProvider; no recording span around"
    return _asgi_traced(env, v, otel=True, server_span=False)


@variant(
    "bg_wsgi_otel",
    "bearerguard WSGI, cached, otel on (Δ vs bearerguard WSGI)",
    "bearerguard",
    "bg_wsgi",
    False,
)
async def _bg_wsgi_otel(env: Env, v: Variant) -> Variant:
    from bearerguard import WSGIBearerGuard

    made = _otel(env, v)
    if made is None:
        return v
    app = flask_app()
    guard = WSGIBearerGuard(app.wsgi_app, **made[1])
    app.wsgi_app = guard
    v.closers.append(guard.close)
    v.call, v.check = wsgi_call(app, env.token)
    v.note = "TracedGuard + TracedBackend, SDK TracerProvider; no recording span around"
    return v


@variant(
    "bg_asgi_span",
    "bearerguard ASGI, cached, in a recording server span",
    "bearerguard",
    "bg_asgi",
    True,
)
async def _bg_asgi_span(env: Env, v: Variant) -> Variant:
    v.note = "Δ = the SDK server span itself (not bearerguard's)"
    return _asgi_traced(env, v, otel=False, server_span=True)


@variant(
    "bg_asgi_otel_span",
    "bearerguard ASGI, cached, otel on, in a recording server span (Δ vs previous)",
    "bearerguard",
    "bg_asgi_span",
    True,
)
async def _bg_asgi_otel_span(env: Env, v: Variant) -> Variant:
    v.note = "Δ = the decision's attributes set on the recording server span"
    return _asgi_traced(env, v, otel=True, server_span=True)


# -- bearerguard, cold path (every call a cache miss) ------------------------------------------


def _cold_asgi(v: Variant, backend: Any, token: str) -> Variant:
    from starlette.middleware import Middleware

    from bearerguard import BearerGuardMiddleware, Guard

    guard = Guard(api="dns")
    clear = guard.cache.clear
    app = starlette_app([Middleware(BearerGuardMiddleware, backend=backend, guard=guard)])
    call, v.check = asgi_call(app, token)

    async def cold() -> None:
        clear()
        await call()

    v.call = cold
    return v


def _cold_wsgi(v: Variant, backend: Any, token: str) -> Variant:
    from bearerguard import WSGIBearerGuard

    app = flask_app()
    mw = WSGIBearerGuard(app.wsgi_app, backend=backend, api="dns")
    app.wsgi_app = mw
    v.closers.append(mw.close)
    clear = mw.guard.cache.clear
    call, v.check = wsgi_call(app, token)

    def cold() -> None:
        clear()
        call()

    v.call = cold
    return v


def _sqlite_backend(env: Env) -> Any:
    from bearerguard import StoreBackend, open_store

    store = open_store(f"sqlite:///{env.tmpdir / 'bench.db'}")
    issue_token(store, env.token)
    return StoreBackend(store)


def _redis_backend(env: Env) -> Any:
    from bearerguard import StoreBackend, open_store

    if env.redis_url is None:
        raise RuntimeError(env.redis_error or "no redis-server")
    store = open_store(env.redis_url)
    store.ping()
    issue_token(store, env.token)
    return StoreBackend(store)


def _intro_backend(env: Env) -> Any:
    from bearerguard.backends.introspection import IntrospectionBackend

    if env.intro_url is None or env.intro_client is None:
        raise RuntimeError(env.intro_error or "no introspection server")
    return IntrospectionBackend(env.intro_url, *env.intro_client, trust_env=False)


_COLD = [
    ("memory", "memory store", _memory_backend),
    ("sqlite", "SQLite store", _sqlite_backend),
    ("redis", "Redis store", _redis_backend),
    ("introspection", "introspection", _intro_backend),
]


def _make_cold(kind: str, what: str, make: Callable[[Any], Any], face: str) -> None:
    name = f"bg_cold_{kind}_{face}"
    label = f"bearerguard {face.upper()}, miss, {what}"
    base = "starlette" if face == "asgi" else "flask"
    is_async = face == "asgi"

    async def build(env: Env, v: Variant) -> Variant:
        if kind == "introspection":
            token = env.intro_token()
            backend = make(env)
            v.compare_to = "raw_httpx_async" if is_async else "raw_httpx_sync"
        else:
            token = env.token
            backend = make(env.token if kind == "memory" else env)
        closer = getattr(backend, "aclose", None) if is_async else None
        v.closers.append(closer or backend.close)
        v.note = "cache cleared before each call"
        return (_cold_asgi if is_async else _cold_wsgi)(v, backend, token)

    variant(name, label, "cold", base, is_async)(build)


for _kind, _what, _make in _COLD:
    for _face in ("asgi", "wsgi"):
        _make_cold(_kind, _what, _make, _face)


# -- introspection peers and the raw POST reference ------------------------------------------


@variant("authlib_introspect", "Authlib IntrospectTokenValidator, no cache", "cold", "flask", False)
async def _authlib_introspect(env: Env, v: Variant) -> Variant:
    from authlib.integrations.flask_oauth2 import ResourceProtector
    from authlib.oauth2.rfc7662 import IntrospectTokenValidator

    if env.intro_url is None or env.intro_client is None:
        v.unavailable = env.intro_error or "no introspection server"
        return v
    client = httpx.Client(auth=env.intro_client, trust_env=False, timeout=5.0)
    url = env.intro_url

    class Validator(IntrospectTokenValidator):  # type: ignore[misc]
        def introspect_token(self, token_string: str) -> Any:
            resp = client.post(url, data={"token": token_string, "token_type_hint": "access_token"})
            resp.raise_for_status()
            return resp.json()

    protect = ResourceProtector()
    protect.register_token_validator(Validator())
    v.call, v.check = wsgi_call(flask_app(protect("dns")), env.intro_token())
    v.compare_to = "raw_httpx_sync"
    v.closers.append(client.close)
    v.note = "one POST per request (sync httpx.Client)"
    return v


def _raw(name: str, label: str, is_async: bool) -> None:
    async def build(env: Env, v: Variant) -> Variant:
        if env.intro_url is None or env.intro_client is None:
            v.unavailable = env.intro_error or "no introspection server"
            return v
        url = env.intro_url
        form = {"token": env.intro_token(), "token_type_hint": "access_token"}
        opts: dict[str, Any] = {
            "auth": httpx.BasicAuth(*env.intro_client),
            "trust_env": False,
            "timeout": 5.0,
            "headers": {"Accept": "application/json"},
            "limits": httpx.Limits(keepalive_expiry=4.0),
        }
        if is_async:
            aclient = httpx.AsyncClient(**opts)

            async def apost() -> tuple[int, bytes]:
                try:
                    r = await aclient.post(url, data=form)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    r = await aclient.post(url, data=form)  # stale keep-alive: retry once
                return r.status_code, r.content

            async def acall() -> None:
                await apost()

            v.call, v.check = acall, apost
            v.closers.append(aclient.aclose)
        else:
            client = httpx.Client(**opts)

            def post() -> tuple[int, bytes]:
                try:
                    r = client.post(url, data=form)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    r = client.post(url, data=form)
                return r.status_code, r.content

            def scall() -> None:
                post()

            v.call, v.check = scall, post
            v.closers.append(client.close)
        v.note = "one POST to the introspection endpoint, no app"
        return v

    variant(name, label, "raw", None, is_async)(build)


_raw("raw_httpx_async", "raw httpx.AsyncClient POST", True)
_raw("raw_httpx_sync", "raw httpx.Client POST", False)


async def build_all(env: Env) -> list[Variant]:
    """Build every variant; one that cannot be built is returned as unavailable."""
    out: list[Variant] = []
    for name, label, group, baseline, is_async, build in BUILDERS:
        v = Variant(name, label, group, baseline, is_async)
        try:
            v = await build(env, v)
        except Exception as exc:  # a missing dependency must not fail the run
            v.unavailable = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        out.append(v)
    return out


async def close_all(variants: list[Variant]) -> None:
    for v in variants:
        for closer in v.closers:
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                print(f"bench: closing {v.name}: {type(exc).__name__}", file=sys.stderr)
