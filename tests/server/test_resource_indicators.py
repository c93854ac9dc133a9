"""RFC 8707 end to end: /login takes resource, /introspect says aud, audience= refuses.

Against a live ``bearerguard serve`` (tests/live_service.py), and the middleware's
audience check through both adapters (cache hits included).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest

from adapter_harness import Harness
from bearerguard import Challenge, ConfigurationError, Guard, StoreBackend
from bearerguard.backends import IntrospectionBackend
from bearerguard.stores import MemoryStore
from bearerguard.stores.base import TokenRecord
from bearerguard.tokens import token_digest
from helpers import issue, remember_secret
from live_service import LiveService

API = "https://dns.example.test"
OTHER = "https://vps.example.test"


@pytest.fixture(scope="module")
def svc() -> Iterator[LiveService]:
    with LiveService() as service:
        yield service


def _login(svc: LiveService, key: tuple[str, str], resources: list[str]) -> httpx.Response:
    form = [("grant_type", "client_credentials"), *(("resource", r) for r in resources)]
    return httpx.post(
        svc.base_url + "/login",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=key,
        timeout=10,
    )


def _introspect(svc: LiveService, rs: tuple[str, str], token: str) -> dict[str, object]:
    r = httpx.post(svc.base_url + "/introspect", data={"token": token}, auth=rs, timeout=10)
    assert r.status_code == 200
    body: dict[str, object] = r.json()
    return body


def test_login_resource_becomes_introspection_aud(svc: LiveService) -> None:
    key = svc.create_key(["dns"])
    rs = svc.create_key(["rs"], introspect=True)
    one = remember_secret(_login(svc, key, [API]).json()["access_token"])
    assert _introspect(svc, rs, one)["aud"] == API
    two = remember_secret(_login(svc, key, [OTHER, API]).json()["access_token"])
    assert _introspect(svc, rs, two)["aud"] == [API, OTHER]
    none = remember_secret(_login(svc, key, []).json()["access_token"])
    assert "aud" not in _introspect(svc, rs, none)


@pytest.mark.parametrize(
    "resource", ["relative/path", "https://x.example/#frag", "", "a b", "https://x/" + "a" * 600]
)
def test_bad_resource_is_invalid_target(svc: LiveService, resource: str) -> None:
    key = svc.create_key(["dns"])
    r = _login(svc, key, [resource, API] if resource == "" else [resource])
    if resource == "":
        # An empty parameter counts as omitted (RFC 6749 §3.1); the other one stands.
        assert r.status_code == 200
        return
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_target"


def test_metadata_says_resource_indicators_are_supported(svc: LiveService) -> None:
    doc = httpx.get(svc.base_url + "/.well-known/oauth-authorization-server").json()
    assert doc["resource_indicators_supported"] is True


def test_introspection_backend_and_audience_option_live(svc: LiveService) -> None:
    key = svc.create_key(["dns"])
    rs = svc.create_key(["rs"], introspect=True)
    mine = remember_secret(_login(svc, key, [API]).json()["access_token"])
    theirs = remember_secret(_login(svc, key, [OTHER]).json()["access_token"])
    plain = remember_secret(_login(svc, key, []).json()["access_token"])
    for kind in ("asgi", "wsgi"):
        backend = IntrospectionBackend(svc.base_url + "/introspect", *rs)
        strict = IntrospectionBackend(svc.base_url + "/introspect", *rs)
        h = Harness(kind, backend, audience=API)
        hs = Harness(kind, strict, audience=API, require_audience=True)
        try:
            for _ in range(2):  # a miss, then a cache hit
                assert h.get("/whoami", {"Authorization": f"Bearer {mine}"}).status_code == 200
                r = h.get("/whoami", {"Authorization": f"Bearer {theirs}"})
                assert r.status_code == 401
                assert Challenge.from_header(r.headers["www-authenticate"])[
                    "error_description"
                ] == ("The access token is meant for another resource")
                assert h.get("/whoami", {"Authorization": f"Bearer {plain}"}).status_code == 200
                assert hs.get("/whoami", {"Authorization": f"Bearer {plain}"}).status_code == 401
                assert hs.get("/whoami", {"Authorization": f"Bearer {mine}"}).status_code == 200
        finally:
            if kind == "asgi":
                h.run(backend.aclose())
                hs.run(strict.aclose())
            h.close()
            hs.close()
            backend.close()
            strict.close()


def _with_audience(store: MemoryStore, audience: tuple[str, ...]) -> str:
    issued = issue(store, ("dns",))
    record = store.get_token(token_digest(issued.token), 0)
    assert record is not None
    store.put_token(
        TokenRecord(
            record.digest,
            record.key_id,
            record.apis,
            record.bound_ip,
            record.issued_at,
            record.ttl,
            record.expires_at,
            audience,
        )
    )
    return issued.token


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_audience_check_on_every_request_store_backend(kind: str) -> None:
    store = MemoryStore()
    ok = _with_audience(store, (API, OTHER))
    wrong = _with_audience(store, (OTHER,))
    h = Harness(kind, StoreBackend(store), audience=[API, "https://alias.example"])
    try:
        for _ in range(3):
            assert h.get("/whoami", {"Authorization": f"Bearer {ok}"}).status_code == 200
            assert h.get("/whoami", {"Authorization": f"Bearer {wrong}"}).status_code == 401
    finally:
        h.close()


def test_require_audience_needs_audience() -> None:
    with pytest.raises(ConfigurationError):
        Guard(require_audience=True)
