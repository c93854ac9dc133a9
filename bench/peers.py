"""The variants bearerguard is compared with: bare frameworks, floors and references, other
auth libraries, the raw httpx POST the cold introspection path is measured against, and
the raw redis-py EVALSHA the cold Redis store path is measured against."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx

from bench.plumbing import (
    APIS,
    KEY_ID,
    PEER,
    ContractFloorMiddleware,
    Env,
    MinimalCheckMiddleware,
    MinimalCheckWSGI,
    NoopMiddleware,
    TTLCacheMiddleware,
    Variant,
    asgi_call,
    flask_app,
    starlette_app,
    variant,
    wsgi_call,
)

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


@variant(
    "contract_asgi", "the contract's cached-path work, inline (floor)", "floor", "starlette", True
)
async def _contract(env: Env, v: Variant) -> Variant:
    from starlette.middleware import Middleware

    from bearerguard.tokens import Identity, TokenInfo

    expires = time.time() + 3600
    info = TokenInfo(KEY_ID, frozenset(APIS), PEER[0], expires, 3600.0)
    ident = Identity(KEY_ID, info.apis, PEER[0], info)
    table = {hashlib.sha256(env.token.encode()).digest(): (expires, info, ident)}
    mw = Middleware(ContractFloorMiddleware, table=table, api="dns")
    v.call, v.check = asgi_call(starlette_app([mw]), env.token)
    v.note = "every check bearerguard's cached path makes, as one function: the floor for it"
    return v


@variant("minimal_wsgi", "header+sha256+dict+clock, WSGI (reference)", "floor", "flask", False)
async def _minimal_wsgi(env: Env, v: Variant) -> Variant:
    digest = hashlib.sha256(env.token.encode()).hexdigest()
    app = flask_app()
    app.wsgi_app = MinimalCheckWSGI(app.wsgi_app, table={digest: time.time() + 3600})
    v.call, v.check = wsgi_call(app, env.token)
    v.note = "the unavoidable work, no policy; wraps Flask's wsgi_app as bearerguard does"
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


def _in_app(v: Variant, token: str) -> None:
    """Make `v` a floor: each request makes `v`'s raw call first, then the bare app
    (Starlette or Flask) answers, as the middleware's miss does. It shows what one round
    trip costs a request of the app, cache and scheduler effects of the wait on the reply
    included, which the raw call alone (no app work after it) does not pay."""
    raw = v.call
    assert raw is not None
    if v.is_async:
        bare = starlette_app()

        async def floor_app(scope: Any, receive: Any, send: Any) -> None:
            await raw()
            await bare(scope, receive, send)

        v.call, v.check = asgi_call(floor_app, token)
        return
    app = flask_app()
    inner = app.wsgi_app

    def floor_wsgi(environ: Any, start_response: Any) -> Any:
        raw()
        return inner(environ, start_response)

    app.wsgi_app = floor_wsgi
    v.call, v.check = wsgi_call(app, token)


def _raw(name: str, label: str, is_async: bool, *, in_app: bool = False) -> None:
    """The raw httpx POST reference; `in_app`: the floor, that POST inside the bare app
    (`_in_app`)."""

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
        if in_app:
            _in_app(v, env.token)
            v.compare_to = "raw_httpx_async" if is_async else "raw_httpx_sync"
            v.note = "that POST, then the bare app: the floor of a cold request over introspection"
        return v

    if in_app:
        variant(name, label, "cold", "starlette" if is_async else "flask", is_async)(build)
        return
    variant(name, label, "raw", None, is_async)(build)


_raw("raw_httpx_async", "raw httpx.AsyncClient POST", True)
_raw("raw_httpx_sync", "raw httpx.Client POST", False)
_raw("floor_httpx_asgi", "floor: bare Starlette + one raw httpx POST", True, in_app=True)
_raw("floor_httpx_wsgi", "floor: bare Flask + one raw httpx POST", False, in_app=True)


# -- the raw redis-py EVALSHA reference (the cold path over the Redis store) -----------------


def _raw_evalsha(name: str, label: str, is_async: bool, *, in_app: bool = False) -> None:
    """The raw EVALSHA reference; `in_app`: the floor, that EVALSHA inside the bare app
    (`_in_app`)."""

    async def build(env: Env, v: Variant) -> Variant:
        import redis
        import redis.asyncio as aredis

        from bearerguard import open_store
        from bearerguard.stores.redis.keys import token_record_key
        from bearerguard.stores.redis.scripts import Scripts
        from bearerguard.tokens import token_digest
        from bench.plumbing import issue_token

        if env.redis_url is None:
            v.unavailable = env.redis_error or "no redis-server"
            return v
        setup = redis.Redis.from_url(env.redis_url)
        # The store's own touch script and key, so both sides run the same Lua.
        script = Scripts(setup).touch
        sha = setup.script_load(script.script)
        store = open_store(env.redis_url)
        issue_token(store, env.token)
        store.close()
        setup.close()
        key = token_record_key(token_digest(env.token))
        if is_async:
            aclient = aredis.Redis.from_url(env.redis_url)

            async def aeval() -> tuple[int, bytes]:
                reply = await aclient.evalsha(sha, 1, key, "127.0.0.1")
                return (200 if reply else 404), bytes(reply[0]) if reply else b""

            async def acall() -> None:
                await aclient.evalsha(sha, 1, key, "127.0.0.1")

            v.call, v.check = acall, aeval
            v.closers.append(aclient.aclose)
        else:
            client = redis.Redis.from_url(env.redis_url)

            def seval() -> tuple[int, bytes]:
                reply = client.evalsha(sha, 1, key, "127.0.0.1")
                return (200 if reply else 404), bytes(reply[0]) if reply else b""

            def scall() -> None:
                client.evalsha(sha, 1, key, "127.0.0.1")

            v.call, v.check = scall, seval
            v.closers.append(client.close)
        v.note = "one EVALSHA of the store's touch script, same key, no app"
        if in_app:
            _in_app(v, env.token)
            v.compare_to = "raw_evalsha_async" if is_async else "raw_evalsha_sync"
            v.note = "that EVALSHA, then the bare app: the floor of a cold request over Redis"
        return v

    if in_app:
        variant(name, label, "cold", "starlette" if is_async else "flask", is_async)(build)
        return
    variant(name, label, "raw", None, is_async)(build)


_raw_evalsha("raw_evalsha_async", "raw redis.asyncio EVALSHA", True)
_raw_evalsha("raw_evalsha_sync", "raw redis-py EVALSHA", False)
_raw_evalsha("floor_evalsha_asgi", "floor: bare Starlette + one raw EVALSHA", True, in_app=True)
_raw_evalsha("floor_evalsha_wsgi", "floor: bare Flask + one raw EVALSHA", False, in_app=True)
