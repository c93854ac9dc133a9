"""POST /introspect, POST /revoke, metadata and health, in process (memory store)."""

from __future__ import annotations

import pytest
from server_helpers import Service, assert_error

from bearerguard.tokens import token_digest


def introspect(svc: Service, rs: tuple[str, str], token: str, **extra: str):  # type: ignore[no-untyped-def]
    return svc.http.post("/introspect", auth=rs, data={"token": token, **extra})


def test_active_token_answer(svc: Service) -> None:
    key_id, secret = svc.key(("vps", "dns"))
    rs = svc.key(("x",), introspect=True)
    token = svc.http.token(key_id, secret)
    svc.clock.advance(10)
    r = introspect(svc, rs, token, token_type_hint="access_token")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body == {
        "active": True,
        "client_id": key_id,
        "scope": "dns vps",
        "exp": int(svc.clock() + 300),
        "iat": int(svc.clock() - 10),
        "token_type": "bearer",
        "ip": "127.0.0.1",
        "ttl": 300,
    }


@pytest.mark.parametrize("token", ["unknown", "x" * 5000, "not a b64token!", "\u00e9"])
def test_anything_else_is_inactive(svc: Service, token: str) -> None:
    rs = svc.key(("x",), introspect=True)
    r = introspect(svc, rs, token)
    assert r.status_code == 200
    assert r.json() == {"active": False}


def test_sliding_expiry_through_introspection(svc: Service) -> None:
    key_id, secret = svc.key()
    rs = svc.key(("x",), introspect=True)
    token = svc.http.token(key_id, secret)
    # Used every 200 s, a 300 s token stays alive well past 300 s after issue.
    for _ in range(5):
        svc.clock.advance(200)
        assert introspect(svc, rs, token).json()["active"] is True
    # Unused for 300 s: gone.
    svc.clock.advance(300)
    assert introspect(svc, rs, token).json() == {"active": False}


def test_introspection_needs_the_right(svc: Service) -> None:
    key_id, secret = svc.key()
    token = svc.http.token(key_id, secret)
    r = introspect(svc, (key_id, secret), token)
    assert_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic ")
    rs_id, _ = svc.key(("x",), introspect=True)
    assert_error(introspect(svc, (rs_id, "wrong"), token), 401, "invalid_client")
    r = svc.http.post("/introspect", data={"token": token})
    assert_error(r, 401, "invalid_client")


def test_introspection_with_form_credentials_and_missing_token(svc: Service) -> None:
    rs_id, rs_secret = svc.key(("x",), introspect=True)
    r = svc.http.post(
        "/introspect", data={"client_id": rs_id, "client_secret": rs_secret, "token": "t"}
    )
    assert r.json() == {"active": False}
    assert_error(
        svc.http.post("/introspect", auth=(rs_id, rs_secret), data={}), 400, "invalid_request"
    )


def test_revoke_own_token(svc: Service) -> None:
    key_id, secret = svc.key()
    rs = svc.key(("x",), introspect=True)
    token = svc.http.token(key_id, secret)
    r = svc.http.post("/revoke", auth=(key_id, secret), data={"token": token})
    assert r.status_code == 200
    assert introspect(svc, rs, token).json() == {"active": False}
    # RFC 7009 §2.2: unknown and already-revoked tokens also get 200.
    assert svc.http.post("/revoke", auth=(key_id, secret), data={"token": token}).status_code == 200
    assert svc.http.post("/revoke", auth=(key_id, secret), data={"token": "zz"}).status_code == 200


@pytest.mark.parametrize(
    ("introspect", "revoked"),
    [(False, False), (True, True)],
    ids=["another key: does nothing", "an introspecting key: may revoke any token"],
)
def test_revoking_another_keys_token(svc: Service, introspect: bool, revoked: bool) -> None:
    a_id, a_secret = svc.key()
    other = svc.key(("x",), introspect=introspect)
    token = svc.http.token(a_id, a_secret)
    # RFC 7009 §2.2: 200 either way, so the caller learns nothing about the token.
    assert svc.http.post("/revoke", auth=other, data={"token": token}).status_code == 200
    assert (svc.store.get_token(token_digest(token), svc.clock()) is None) is revoked


def test_revoke_needs_authentication(svc: Service) -> None:
    a_id, a_secret = svc.key()
    token = svc.http.token(a_id, a_secret)
    assert_error(svc.http.post("/revoke", data={"token": token}), 401, "invalid_client")
    assert_error(svc.http.post("/revoke", auth=(a_id, a_secret), data={}), 400, "invalid_request")
    assert svc.store.get_token(token_digest(token), svc.clock()) is not None


def test_key_revocation_kills_its_tokens(svc: Service) -> None:
    key_id, secret = svc.key()
    rs = svc.key(("x",), introspect=True)
    tokens = [svc.http.token(key_id, secret) for _ in range(3)]
    svc.store.revoke_key(key_id)
    for t in tokens:
        assert introspect(svc, rs, t).json() == {"active": False}


def test_metadata(svc: Service) -> None:
    r = svc.http.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    meta = r.json()
    assert meta["issuer"] == "http://auth"
    assert meta["token_endpoint"] == "http://auth/login"
    assert meta["introspection_endpoint"] == "http://auth/introspect"
    assert meta["revocation_endpoint"] == "http://auth/revoke"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]


def test_metadata_with_configured_issuer() -> None:
    s = Service(issuer="https://auth.example.com/")
    try:
        meta = s.http.get("/.well-known/oauth-authorization-server").json()
        assert meta["issuer"] == "https://auth.example.com"
        assert meta["token_endpoint"] == "https://auth.example.com/login"
    finally:
        s.http.close()


def test_health(svc: Service) -> None:
    r = svc.http.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
