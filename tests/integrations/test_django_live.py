"""examples/django_app under real gunicorn (sync Django) and uvicorn (async Django).

Against a live ``bearerguard serve`` over RFC 7662 introspection, the rows of the request
contract that HTTP can express, with the values of test_contract.py's own tables (read
from its parametrize marks, not copied). The rows that need an injected backend or clock
(hangs, garbage, stale-if-error) run through Django in test_django_contract.py.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import test_contract  # tests/adapters: the table's module, as pytest names it

from integration_support import (
    ExampleServer,
    assert_challenge,
    bearer,
    django_gunicorn_example,
    django_uvicorn_example,
)
from live_service import LiveService


def table(test: Callable[..., Any]) -> list[Any]:
    """The parametrize rows of a test_contract.py test, as pytest params with its ids."""
    (mark,) = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
    values, ids = mark.args[1], mark.kwargs["ids"]
    return [pytest.param(v, id=i) for v, i in zip(values, ids, strict=True)]


NO_CREDENTIALS = table(test_contract.test_no_bearer_credentials_is_401_without_error_code)
MALFORMED = table(test_contract.test_malformed_bearer_is_400_invalid_request)


class Live:
    def __init__(self, svc: LiveService) -> None:
        self.svc = svc
        self.dns_vps = svc.create_key(["dns", "vps"])
        self.dns = svc.create_key(["dns"])
        self.vps = svc.create_key(["vps"])
        self.resource_server = svc.create_key(["introspection"], introspect=True)

    def env(self) -> dict[str, str]:
        key_id, secret = self.resource_server
        return {
            "BEARERGUARD_INTROSPECTION_URL": self.svc.base_url + "/introspect",
            "BEARERGUARD_CLIENT_ID": key_id,
            "BEARERGUARD_CLIENT_SECRET": secret,
        }

    def login(self, key: tuple[str, str], local: str = "127.0.0.1") -> str:
        return self.svc.token(*key, local)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with LiveService() as svc:
        yield Live(svc)


SERVERS = {"gunicorn-wsgi": django_gunicorn_example, "uvicorn-asgi": django_uvicorn_example}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, live: Live) -> Iterator[ExampleServer]:
    srv = SERVERS[request.param](live.env())
    try:
        yield srv
    finally:
        srv.stop()


def get(server: ExampleServer, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=15) as c:
        return c.get(path, headers=headers)


def test_public_path_on_both_host_names(server: ExampleServer) -> None:
    for host in ("127.0.0.1", "localhost"):
        r = httpx.get(f"http://{host}:{server.port}/health", timeout=15)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", NO_CREDENTIALS)
def test_no_bearer_credentials_is_401_without_error_code(
    server: ExampleServer, headers: dict[str, str] | None
) -> None:
    r = get(server, "/whoami", headers)
    assert_challenge(r, 401, None)
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'


def raw_get(server: ExampleServer, path: str, headers: list[tuple[str, str]]) -> httpx.Response:
    """GET with headers exactly as given (repeated, trailing blanks): http.client sends them."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    try:
        conn.putrequest("GET", path)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return httpx.Response(resp.status, headers=resp.getheaders(), content=resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_bearer_is_400_invalid_request(server: ExampleServer, value: str) -> None:
    r = raw_get(server, "/whoami", [("Authorization", value)])
    assert_challenge(r, 400, "invalid_request")


def test_two_authorization_headers_is_400(server: ExampleServer, live: Live) -> None:
    token = live.login(live.dns_vps)
    two = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")]
    assert_challenge(raw_get(server, "/whoami", two), 400, "invalid_request")


def test_valid_token_any_scheme_case(server: ExampleServer, live: Live) -> None:
    token = live.login(live.dns_vps)
    for scheme in ("Bearer", "bearer", "BEARER", "BeArEr"):
        r = get(server, "/whoami", {"Authorization": f"{scheme} {token}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"key_id": live.dns_vps[0], "apis": ["dns", "vps"]}


def test_unknown_token_is_401_invalid_token(server: ExampleServer) -> None:
    assert_challenge(get(server, "/whoami", bearer("unknown-token")), 401, "invalid_token")


def test_revoked_key_is_401(server: ExampleServer, live: Live) -> None:
    key = live.svc.create_key(["dns"])
    token = live.login(key)
    assert live.svc.revoke_key(key[0])
    assert_challenge(get(server, "/whoami", bearer(token)), 401, "invalid_token")


def test_forwarded_for_from_an_untrusted_peer_is_ignored(server: ExampleServer, live: Live) -> None:
    # Obtained from 127.0.0.2, sent from 127.0.0.1 claiming 127.0.0.2: neither the server
    # (uvicorn --no-proxy-headers, gunicorn --forwarded-allow-ips '') nor bearerguard
    # believes the header, so the token is used from the wrong address.
    token = live.login(live.vps, local="127.0.0.2")
    r = get(server, "/whoami", {**bearer(token), "X-Forwarded-For": "127.0.0.2"})
    assert_challenge(r, 401, "invalid_token")
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.base_url, timeout=15, transport=transport) as c:
        assert c.get("/whoami", headers=bearer(token)).json()["key_id"] == live.vps[0]


def test_each_api_route_needs_its_api(server: ExampleServer, live: Live) -> None:
    dns, vps, both = live.login(live.dns), live.login(live.vps), live.login(live.dns_vps)
    for path, api, allowed, refused in (
        ("/dns/zones", "dns", dns, vps),  # a sync view
        ("/vps/servers", "vps", vps, dns),  # an async view
    ):
        for token in (allowed, both):
            r = get(server, path, bearer(token))
            assert r.status_code == 200, r.text
        r = get(server, path, bearer(refused))
        assert_challenge(r, 403, "insufficient_scope", scope=api)
        assert_challenge(get(server, path), 401, None)


def test_auth_service_down_is_503(server: ExampleServer, live: Live) -> None:
    token = live.login(live.dns_vps)  # not yet seen by the server: nothing cached
    live.svc.stop()
    try:
        r = get(server, "/whoami", bearer(token))
        assert_challenge(r, 503, "temporarily_unavailable")
        assert r.headers["retry-after"] == "5"
    finally:
        live.svc.start()
    assert get(server, "/whoami", bearer(token)).status_code == 200
