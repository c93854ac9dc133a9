"""Interoperability: a third-party RFC 7662 server (Authlib's IntrospectionEndpoint).

Authlib's endpoint runs in a Flask app on werkzeug's threaded server on 127.0.0.1; the
tokens are checked through a real Starlette app (BearerGuardMiddleware) and a real Flask
app (WSGIBearerGuard). Authlib knows nothing of our ``ip`` and ``ttl`` extensions unless
the server adds them, so both cases are covered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from introspection_support import AuthlibServer, Harness, new_token

from bearerguard.backends import IntrospectionBackend


@pytest.fixture
def authlib_server(rs_secret: str) -> Iterator[AuthlibServer]:
    server = AuthlibServer(rs_secret)
    yield server
    server.stop()


def test_valid_unknown_and_scope_through_both_adapters(
    authlib_server: AuthlibServer,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    valid = new_token()
    other_api = new_token()
    authlib_server.add(valid, client_id="key_a", scope="dns vps", ip="127.0.0.1")
    authlib_server.add(other_api, client_id="key_b", scope="vps", ip="127.0.0.1")
    h = make_harness(make_backend(authlib_server.url), api="dns")

    r = h.get("/whoami", valid)
    assert r.status_code == 200
    assert r.json() == {"key_id": "key_a", "apis": ["dns", "vps"]}

    r = h.get("/whoami", new_token())
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]

    r = h.get("/dns/zones", other_api)
    assert r.status_code == 403
    assert 'scope="dns"' in r.headers["www-authenticate"]

    r = h.get("/whoami", valid, ip="127.0.0.9")  # Authlib server passed our ip extension
    assert r.status_code == 401
    assert authlib_server.calls == 3  # cached: the wrong-IP request made no call


def test_revoked_and_expired_are_inactive(
    authlib_server: AuthlibServer,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    revoked, expired = new_token(), new_token()
    authlib_server.add(revoked, client_id="key_a", scope="dns", revoked=True)
    authlib_server.add(expired, client_id="key_a", scope="dns", expires_in=-1)
    h = make_harness(make_backend(authlib_server.url))
    assert h.get("/whoami", revoked).status_code == 401
    assert h.get("/whoami", expired).status_code == 401


def test_server_without_ip_member_warns_once_or_refuses(
    authlib_server: AuthlibServer,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
    caplog: pytest.LogCaptureFixture,
) -> None:
    t1, t2 = new_token(), new_token()
    authlib_server.add(t1, client_id="key_a", scope="dns")
    authlib_server.add(t2, client_id="key_a", scope="dns")
    lax = make_harness(make_backend(authlib_server.url))
    with caplog.at_level(logging.WARNING, logger="bearerguard.introspection"):
        # binding not enforced: any address will do
        assert lax.get("/whoami", t1, ip="127.0.0.5").status_code == 200
        assert lax.get("/whoami", t2, ip="127.0.0.6").status_code == 200
    warnings = [r for r in caplog.records if "no 'ip' member" in r.getMessage()]
    assert len(warnings) == 1

    strict = make_harness(make_backend(authlib_server.url, require_ip=True))
    assert strict.get("/whoami", t1).status_code == 401


def test_map_response_hook_for_other_names(
    authlib_server: AuthlibServer,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    # A server that puts the API names in "aud" and the key in "username", say.
    tok = new_token()
    authlib_server.add(tok, client_id="ignored", scope="openid", ip="127.0.0.1")

    def rename(claims: object) -> dict[str, object]:
        assert isinstance(claims, dict)
        return {**claims, "scope": "dns", "client_id": "key_mapped"}

    h = make_harness(make_backend(authlib_server.url, map_response=rename), api="dns")
    r = h.get("/whoami", tok)
    assert r.status_code == 200
    assert r.json() == {"key_id": "key_mapped", "apis": ["dns"]}


def test_wrong_client_secret_is_503_not_allow(
    authlib_server: AuthlibServer, make_harness: Callable[..., Harness]
) -> None:
    tok = new_token()
    authlib_server.add(tok, client_id="key_a", scope="dns", ip="127.0.0.1")
    backend = IntrospectionBackend(authlib_server.url, "resource-server", "wrong-secret")
    h = make_harness(backend)
    r = h.get("/whoami", tok)
    assert r.status_code == 503
    assert "retry-after" in r.headers
