"""The auth service as users run it: `bearerguard serve` subprocesses, real clients.

Stores: a SQLite file and a real redis-server (both shared across processes).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, StoreBackend, open_store
from bearerguard.errors import Challenge
from bearerguard.stores import AsyncTokenStore
from bearerguard.tokens import token_digest
from helpers import remember_secret, require_tools
from live_service import LiveService, free_port


def introspect(svc: LiveService, rs: tuple[str, str], token: str) -> dict[str, object]:
    r = httpx.post(svc.base_url + "/introspect", data={"token": token}, auth=rs, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


# -- the documented flow ---------------------------------------------------------------
def test_documented_curl_and_jq_flow(live: LiveService) -> None:
    require_tools("curl", "jq")
    key_id, secret = live.create_key(["dns"])
    rs = live.create_key(["dns"], introspect=True)
    script = (
        'TOKEN=$(curl -s -d grant_type=client_credentials -u "$KEY_ID:$SECRET" "$URL/login"'
        " | jq -r .access_token)\n"
        'printf "%s" "$TOKEN"\n'
    )
    env = {"KEY_ID": key_id, "SECRET": secret, "URL": live.base_url, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    token = remember_secret(done.stdout)
    assert len(token) >= 43 and token != "null"
    info = introspect(live, rs, token)
    assert info["active"] is True
    assert info["client_id"] == key_id
    assert info["scope"] == "dns"
    assert info["ip"] == "127.0.0.1"

    # The documented backtick form, and a bad key: 4xx JSON with error + description.
    script = (
        "TOKEN=`curl -s -d 'grant_type=client_credentials' -u \"$KEY_ID:$SECRET\" $URL/login"
        " | jq -r .access_token`\n"
        'printf "%s\\n" "$TOKEN"\n'
        'curl -s -o /dev/null -w "%{http_code}\\n" -u "$KEY_ID:wrong" '
        '-d grant_type=client_credentials "$URL/login"\n'
        'curl -s -u "$KEY_ID:wrong" -d grant_type=client_credentials "$URL/login"'
        " | jq -c '{error, error_description}'\n"
    )
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    token2, status, error = done.stdout.split("\n")[:3]
    remember_secret(token2)
    assert introspect(live, rs, token2)["active"] is True
    assert status == "401"
    assert error == '{"error":"invalid_client","error_description":"Invalid credentials"}'


def test_requests_oauthlib_backend_application_client(
    live: LiveService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session

    # oauthlib refuses plain http unless told this is a local test setup.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    # requests-oauthlib logs whole token responses at DEBUG: the client's own log, which
    # the suite-wide leak check would otherwise (rightly) flag. Keep it quiet here.
    client_log = logging.getLogger("requests_oauthlib")
    monkeypatch.setattr(client_log, "level", logging.INFO)
    key_id, secret = live.create_key(["dns", "vps"])
    rs = live.create_key(["x"], introspect=True)
    with OAuth2Session(client=BackendApplicationClient(client_id=key_id)) as session:
        token = session.fetch_token(
            token_url=live.base_url + "/login", client_id=key_id, client_secret=secret
        )
    access = remember_secret(token["access_token"])
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 300
    info = introspect(live, rs, access)
    assert info["active"] is True and info["scope"] == "dns vps"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_credentials(live: LiveService, method: str) -> None:
    from authlib.integrations.httpx_client import OAuth2Client

    key_id, secret = live.create_key(["dns", "vps"])
    rs = live.create_key(["x"], introspect=True)
    with OAuth2Client(key_id, secret, token_endpoint_auth_method=method, scope="vps") as client:
        token = client.fetch_token(live.base_url + "/login", grant_type="client_credentials")
    access = remember_secret(token["access_token"])
    assert token["token_type"] == "bearer"
    info = introspect(live, rs, access)
    assert info["active"] is True and info["scope"] == "vps"


def test_metadata_names_the_live_endpoints(live: LiveService) -> None:
    meta = httpx.get(live.base_url + "/.well-known/oauth-authorization-server", timeout=10).json()
    assert meta["token_endpoint"] == live.base_url + "/login"
    assert meta["introspection_endpoint"] == live.base_url + "/introspect"


# -- IP binding -------------------------------------------------------------------------
@contextmanager
def protected_api(store_url: str, **options: object) -> Iterator[str]:
    """A Starlette app behind BearerGuardMiddleware + StoreBackend, on uvicorn, 127.0.0.1."""
    store = open_store(store_url)

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"key_id": request.user.display_name})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # The async Redis client belongs to uvicorn's loop: close it there.
        if isinstance(store, AsyncTokenStore):
            await store.aclose()

    app = BearerGuardMiddleware(
        Starlette(routes=[Route("/whoami", whoami)], lifespan=lifespan),
        backend=StoreBackend(store),
        **options,
    )
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        proxy_headers=False,
        lifespan="on",
        ws="none",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        store.close()


def get_whoami(url: str, token: str, local_address: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=local_address)
    with httpx.Client(transport=transport, timeout=10) as c:
        return c.get(url + "/whoami", headers={"Authorization": f"Bearer {token}"})


def test_ip_binding_for_real(live: LiveService) -> None:
    key_id, secret = live.create_key(["dns"])
    rs = live.create_key(["x"], introspect=True)
    t1 = live.token(key_id, secret, local_address="127.0.0.1")
    t2 = live.token(key_id, secret, local_address="127.0.0.2")
    assert introspect(live, rs, t1)["ip"] == "127.0.0.1"
    assert introspect(live, rs, t2)["ip"] == "127.0.0.2"
    # A forged X-Forwarded-For changes nothing: no proxy is trusted (and uvicorn's own
    # proxy-header handling is off).
    with httpx.Client(timeout=10) as c:
        r = c.post(
            live.base_url + "/login",
            data={"grant_type": "client_credentials"},
            auth=(key_id, secret),
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
    t3 = remember_secret(r.json()["access_token"])
    assert introspect(live, rs, t3)["ip"] == "127.0.0.1"

    with protected_api(live.store_url) as api:
        r = get_whoami(api, t1, "127.0.0.1")
        assert r.status_code == 200, r.text
        assert r.json() == {"key_id": key_id}
        r = get_whoami(api, t1, "127.0.0.2")
        assert r.status_code == 401
        assert Challenge.from_header(r.headers["www-authenticate"])["error"] == "invalid_token"
        r = get_whoami(api, t2, "127.0.0.2")
        assert r.status_code == 200, r.text
        assert get_whoami(api, t2, "127.0.0.1").status_code == 401


# -- revocation ---------------------------------------------------------------------------
def test_cli_key_revocation_kills_every_token(live: LiveService) -> None:
    key_id, secret = live.create_key(["dns"])
    other_id, other_secret = live.create_key(["dns"])
    rs = live.create_key(["x"], introspect=True)
    tokens = [live.token(key_id, secret) for _ in range(3)]
    other = live.token(other_id, other_secret)
    done = live.cli("keys", "revoke", key_id)
    assert done.returncode == 0, done.stderr
    revoked = time.monotonic()
    for t in tokens:
        assert introspect(live, rs, t) == {"active": False}
    assert introspect(live, rs, other)["active"] is True
    # The service's key cache lets go of the key within its TTL (1 s; at once over
    # Redis pub/sub). A login in between gets a token the store never kept.
    while True:
        r = httpx.post(
            live.base_url + "/login",
            data={"grant_type": "client_credentials"},
            auth=(key_id, secret),
            timeout=10,
        )
        if r.status_code != 200:
            break
        assert introspect(live, rs, remember_secret(r.json()["access_token"])) == {"active": False}
        assert time.monotonic() - revoked < 1.0, "the revoked key still logs in after 1 s"
        time.sleep(0.05)
    assert r.status_code == 401
    store = open_store(live.store_url)
    try:
        assert all(store.get_token(token_digest(t), time.time()) is None for t in tokens)
    finally:
        store.close()


def test_revoke_endpoint(live: LiveService) -> None:
    key_id, secret = live.create_key(["dns"])
    rs = live.create_key(["x"], introspect=True)
    token = live.token(key_id, secret)
    r = httpx.post(live.base_url + "/revoke", data={"token": token}, auth=(key_id, secret))
    assert r.status_code == 200
    assert introspect(live, rs, token) == {"active": False}


# -- sliding expiry -----------------------------------------------------------------------
def test_sliding_expiry_short_ttl(persistent_url: str) -> None:
    ttl = 3.0
    with LiveService(persistent_url, token_ttl=ttl) as live:
        key_id, secret = live.create_key(["dns"])
        rs = live.create_key(["x"], introspect=True)
        token = live.token(key_id, secret)
        digest = token_digest(token)
        # Used every 0.5 s for more than twice the TTL: it never expires.
        start = time.monotonic()
        last_use = time.time()
        while time.monotonic() - start < 2.5 * ttl:
            last_use = time.time()
            assert introspect(live, rs, token)["active"] is True
            time.sleep(0.5)
        # Unused: it disappears, not before the TTL has passed since the last use.
        store = open_store(live.store_url)
        try:
            deadline = time.time() + ttl + 30
            while store.get_token(digest, time.time()) is not None:
                assert time.time() < deadline, "token did not expire"
                time.sleep(0.1)
            gone_at = time.time()
        finally:
            store.close()
        assert gone_at >= last_use + ttl
        assert introspect(live, rs, token) == {"active": False}


# -- restarts -----------------------------------------------------------------------------
def test_tokens_survive_a_restart(live: LiveService) -> None:
    key_id, secret = live.create_key(["dns"])
    rs = live.create_key(["x"], introspect=True)
    token = live.token(key_id, secret)
    port = live.port
    live.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(live.base_url + "/health", timeout=2)
    live.start()
    assert live.port == port
    assert introspect(live, rs, token)["active"] is True


def test_revoked_key_is_refused_by_a_running_cached_middleware(live: LiveService) -> None:
    """G3 end to end: `bearerguard keys revoke` in another process reaches a middleware.

    Over Redis the revocation is published and the middleware evicts at once, so the
    cache lifetime is set far longer than the wait allowed. Over SQLite nothing is
    published: the refusal comes when the (short) cache entry ends. G3 is defined in
    docs/design.md.
    """
    redis = live.store_url.startswith("redis")
    cache_ttl = 120.0 if redis else 2.0
    key_id, secret = live.create_key(["dns"])
    token = live.token(key_id, secret)
    with protected_api(live.store_url, cache_ttl=cache_ttl) as api:
        assert get_whoami(api, token, "127.0.0.1").status_code == 200
        assert get_whoami(api, token, "127.0.0.1").status_code == 200  # cached now
        done = live.cli("keys", "revoke", key_id)
        assert done.returncode == 0, done.stderr
        revoked_at = time.monotonic()
        deadline = revoked_at + (30.0 if redis else cache_ttl + 30.0)
        while get_whoami(api, token, "127.0.0.1").status_code == 200:
            assert time.monotonic() < deadline, "revoked key still accepted"
            time.sleep(0.05)
        r = get_whoami(api, token, "127.0.0.1")
        assert r.status_code == 401
        assert Challenge.from_header(r.headers["www-authenticate"])["error"] == "invalid_token"


def test_failed_logins_are_throttled_live(live: LiveService) -> None:
    key_id, secret = live.create_key(["dns"])
    other_id, other_secret = live.create_key(["dns"])
    form = {"grant_type": "client_credentials"}
    with httpx.Client(base_url=live.base_url, timeout=10) as c:
        for _ in range(5):
            assert c.post("/login", data=form, auth=(key_id, "wrong")).status_code == 401
        r = c.post("/login", data=form, auth=(key_id, "wrong"))
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["error"] == "invalid_client"
        # The owner is never locked out (H3).
        r = c.post("/login", data=form, auth=(key_id, secret))
        assert r.status_code == 200
        remember_secret(r.json()["access_token"])
        # Another key is unaffected.
        r = c.post("/login", data=form, auth=(other_id, other_secret))
        assert r.status_code == 200
        remember_secret(r.json()["access_token"])
