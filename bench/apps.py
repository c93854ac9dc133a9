"""bearerguard's own variants: cached, traced and cold, each over the plumbing in
bench/plumbing.py and measured against the peers in bench/peers.py (imported first, so the
report lists the references before us)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import bench.peers  # noqa: F401  (registers the references first)
from bench.plumbing import (
    BUILDERS,
    Env,
    Variant,
    asgi_call,
    flask_app,
    issue_token,
    starlette_app,
    variant,
    wsgi_call,
)

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


def _misses(v: Variant, call: Callable[[], Any], check: Callable[[], Any], clear: Any) -> Variant:
    """`v` making each call, and each check, after `clear`: every one a cache miss."""
    if v.is_async:

        async def acold() -> None:
            clear()
            await call()

        async def acheck() -> Any:
            clear()
            return await check()

        v.call, v.check = acold, acheck
    else:

        def scold() -> None:
            clear()
            call()

        def scheck() -> Any:
            clear()
            return check()

        v.call, v.check = scold, scheck
    return v


def _cold_asgi(v: Variant, backend: Any, token: str) -> Variant:
    from starlette.middleware import Middleware

    from bearerguard import BearerGuardMiddleware, Guard

    guard = Guard(api="dns")
    app = starlette_app([Middleware(BearerGuardMiddleware, backend=backend, guard=guard)])
    return _misses(v, *asgi_call(app, token), guard.cache.clear)


def _cold_wsgi(v: Variant, backend: Any, token: str) -> Variant:
    from bearerguard import WSGIBearerGuard

    app = flask_app()
    mw = WSGIBearerGuard(app.wsgi_app, backend=backend, api="dns")
    app.wsgi_app = mw
    v.closers.append(mw.close)
    return _misses(v, *wsgi_call(app, token), mw.guard.cache.clear)


_CONTRACT_NOTE = "every step of a miss, as one function, over the memory store: the floor for it"


@variant(
    "contract_miss_asgi", "the contract's miss work, inline (floor)", "cold", "starlette", True
)
async def _contract_miss_asgi(env: Env, v: Variant) -> Variant:
    from starlette.middleware import Middleware

    from bench.plumbing import ContractMissMiddleware

    table: dict[bytes, Any] = {}
    backend = _memory_backend(env.token)
    mw = Middleware(ContractMissMiddleware, backend=backend, api="dns", table=table)
    v.note = _CONTRACT_NOTE
    return _misses(v, *asgi_call(starlette_app([mw]), env.token), table.clear)


@variant(
    "contract_miss_wsgi", "the contract's miss work, inline, WSGI (floor)", "cold", "flask", False
)
async def _contract_miss_wsgi(env: Env, v: Variant) -> Variant:
    from bench.plumbing import ContractMissWSGI

    table: dict[bytes, Any] = {}
    app = flask_app()
    backend = _memory_backend(env.token)
    app.wsgi_app = ContractMissWSGI(app.wsgi_app, backend=backend, api="dns", table=table)
    v.note = _CONTRACT_NOTE
    return _misses(v, *wsgi_call(app, env.token), table.clear)


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


def _rawredis_backend(env: Env) -> Any:
    """A backend that makes the raw EVALSHA of `raw_evalsha_*` and answers from memory:
    a miss that costs the middleware's own work plus exactly that round trip."""
    import redis
    import redis.asyncio as aredis

    from bearerguard.stores.redis.keys import token_record_key
    from bearerguard.stores.redis.scripts import Scripts
    from bearerguard.tokens import token_digest

    if env.redis_url is None:
        raise RuntimeError(env.redis_error or "no redis-server")
    _redis_backend(env).close()  # the token's record, for the raw call to find
    memory = _memory_backend(env.token)
    client = redis.Redis.from_url(env.redis_url)
    sha = client.script_load(Scripts(client).touch.script)
    key = token_record_key(token_digest(env.token))

    class RawRedis:
        self_timed = True  # bounded as the store bounds itself (a socket timeout)
        token_format = "bearerguard"

        def __init__(self) -> None:
            self._aclient: Any = None

        def lookup(self, token: str, client_ip: str | None = None) -> Any:
            client.evalsha(sha, 1, key, "127.0.0.1")
            return memory.lookup(token, client_ip)

        async def alookup(self, token: str, client_ip: str | None = None) -> Any:
            if self._aclient is None:
                self._aclient = aredis.Redis.from_url(env.redis_url)
            await self._aclient.evalsha(sha, 1, key, "127.0.0.1")
            return memory.lookup(token, client_ip)

        def close(self) -> None:
            client.close()

        async def aclose(self) -> None:
            if self._aclient is not None:
                await self._aclient.aclose()
            client.close()

    return RawRedis()


def _intro_backend(env: Env) -> Any:
    from bearerguard.backends.introspection import IntrospectionBackend

    if env.intro_url is None or env.intro_client is None:
        raise RuntimeError(env.intro_error or "no introspection server")
    return IntrospectionBackend(env.intro_url, *env.intro_client, trust_env=False)


_COLD = [
    ("memory", "memory store", _memory_backend),
    ("sqlite", "SQLite store", _sqlite_backend),
    ("redis", "Redis store", _redis_backend),
    # The floor of the Redis rows: the same miss, its backend exactly one raw EVALSHA.
    ("rawredis", "raw EVALSHA + memory store (floor)", _rawredis_backend),
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
            if kind in ("redis", "rawredis"):
                v.compare_to = "raw_evalsha_async" if is_async else "raw_evalsha_sync"
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
