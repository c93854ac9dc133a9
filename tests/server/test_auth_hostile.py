"""Issue 12 at the auth service: limits that agree (H1), the login throttle (H3, F, J),
``client_ip`` on ``/introspect`` (H4), metadata (H7, M)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from server_helpers import Service, assert_error

import bearerguard.stores.sqlite as sqlite_module
from bearerguard.credentials import DEFAULT_MAX_TOKEN_LENGTH
from bearerguard.server.app import TOKEN_BODY_LIMIT, token_body_limit
from bearerguard.stores.base import new_secret
from bearerguard.stores.sqlite import SQLiteStore
from bearerguard.tokens import token_digest
from helpers import remember_secret

HOLDER = "127.0.0.2"
ATTACKER = "127.0.0.3"
FORM = {"content-type": "application/x-www-form-urlencoded"}


# -- H1: limits agree end to end ---------------------------------------------------------
def test_any_token_the_middleware_accepts_fits_the_introspection_body() -> None:
    # The worst case: every character percent-encoded, plus every other member.
    worst = urlencode(
        {
            "token": "/" * DEFAULT_MAX_TOKEN_LENGTH,
            "token_type_hint": "access_token",
            "client_ip": "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "client_id": "key_" + "f" * 124,
            "client_secret": "+" * 256,
        }
    )
    assert len(worst) <= TOKEN_BODY_LIMIT == token_body_limit(DEFAULT_MAX_TOKEN_LENGTH)
    assert token_body_limit(10_000) >= len(urlencode({"token": "/" * 10_000})) + 512


def test_a_max_length_junk_token_is_inactive_not_413(svc: Service) -> None:
    rs_id, rs_secret = svc.key(introspect=True)
    junk = "/" * DEFAULT_MAX_TOKEN_LENGTH
    r = svc.http.post("/introspect", data={"token": junk}, auth=(rs_id, rs_secret))
    assert r.status_code == 200 and r.json() == {"active": False}
    r = svc.http.post("/revoke", data={"token": junk}, auth=(rs_id, rs_secret))
    assert r.status_code == 200
    # /login keeps its small limit.
    r = svc.http.post("/login", content=b"grant_type=" + b"a" * 9000, headers=FORM)
    assert r.status_code == 413


# -- H4: client_ip on /introspect ---------------------------------------------------------
def test_introspection_counts_as_a_use_only_from_the_tokens_address(svc: Service) -> None:
    rs_id, rs_secret = svc.key(introspect=True)
    key_id, secret = svc.key()
    token = svc.http.token(key_id, secret, peer=HOLDER)
    digest = token_digest(token)
    issued = svc.store.get_token(digest, svc.clock())
    assert issued is not None

    def introspect(**extra: str) -> dict[str, Any]:
        r = svc.http.post("/introspect", data={"token": token, **extra}, auth=(rs_id, rs_secret))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    svc.clock.advance(100)
    answer = introspect(client_ip=ATTACKER)
    assert answer["active"] is True and answer["ip"] == HOLDER  # the RS refuses it
    record = svc.store.get_token(digest, svc.clock())
    assert record is not None and record.expires_at == issued.expires_at  # not extended
    introspect(client_ip="::ffff:" + HOLDER)  # normalised: the holder's address
    record = svc.store.get_token(digest, svc.clock())
    assert record is not None and record.expires_at == svc.clock() + 300
    svc.clock.advance(100)
    introspect()  # no client_ip: today's behaviour, a use
    record = svc.store.get_token(digest, svc.clock())
    assert record is not None and record.expires_at == svc.clock() + 300
    r = svc.http.post(
        "/introspect", data={"token": token, "client_ip": "nope"}, auth=(rs_id, rs_secret)
    )
    assert_error(r, 400, "invalid_request")


# -- H3: the owner is never locked out --------------------------------------------------
def test_the_right_secret_passes_while_the_key_id_is_throttled(svc: Service) -> None:
    """B: wrong guesses at a resource server's key id do not stop its introspections."""
    rs_id, rs_secret = svc.key(introspect=True)
    key_id, secret = svc.key()
    token = svc.http.token(key_id, secret)
    wrong = []
    for _ in range(20):
        r = svc.http.post("/introspect", data={"token": token}, auth=(rs_id, "x" * 40),
                          peer=ATTACKER)  # fmt: skip
        wrong.append(r.status_code)
    assert wrong == [401] * 5 + [429] * 15
    before = svc.app.state.metrics.snapshot()["secret_checks"]
    r = svc.http.post("/introspect", data={"token": token}, auth=(rs_id, rs_secret))
    assert r.status_code == 200 and r.json()["active"] is True
    # Still throttled for wrong guesses, from anywhere...
    assert svc.http.post("/introspect", data={"token": token}, auth=(rs_id, "y" * 40)
                         ).status_code == 429  # fmt: skip
    # ...and every attempt had its secret checked.
    assert svc.app.state.metrics.snapshot()["secret_checks"] == before + 2


def test_made_up_key_ids_cannot_flush_a_real_keys_count(svc: Service) -> None:
    """F: a spray of made-up key ids (from many addresses) leaves the victim's count."""
    key_id, secret = svc.key()
    for _ in range(5):
        assert svc.http.login(key_id, "bad", peer=ATTACKER).status_code == 401
    for i in range(300):
        svc.http.login(f"key_{i:024x}", "bad", peer=f"10.0.{i // 200}.{i % 200}")
    assert len(svc.throttle._keys.failures) == 1
    assert svc.http.login(key_id, "bad", peer="10.9.9.9").status_code == 429
    svc.http.token(key_id, secret, peer="10.9.9.9")


def test_guesses_from_one_address_are_slowed_across_key_ids(svc: Service) -> None:
    ids = [svc.key()[0] for _ in range(6)]
    statuses = [svc.http.login(k, "bad", peer=ATTACKER).status_code for k in ids]
    assert statuses == [401] * 5 + [429]
    # Another address is not affected, and no owner is.
    assert svc.http.login(ids[5], "bad", peer=HOLDER).status_code == 401


def test_wrong_secret_costs_the_same_decode_for_real_and_made_up_key_ids(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """J: the key record is decoded whether or not the key id exists."""
    decoded: list[str] = []
    real = sqlite_module._key_from_row

    def spy(row: Any) -> Any:
        decoded.append(str(row[0]))
        return real(row)

    monkeypatch.setattr(sqlite_module, "_key_from_row", spy)
    store = SQLiteStore(f"sqlite:///{tmp_path}/j.db")
    try:
        key, secret = store.create_key(["dns"])
        remember_secret(secret)
        decoded.clear()
        assert store.get_key(key.key_id) is not None
        assert store.get_key("key_" + "0" * 24) is None
        assert len(decoded) == 2
    finally:
        store.close()


def test_old_format_secrets_keep_working(svc: Service) -> None:
    import secrets as stdlib_secrets

    from bearerguard.stores.base import KeyRecord, digest_secret

    old = remember_secret(stdlib_secrets.token_urlsafe(32))
    svc.store._keys["key_" + "ab" * 12] = KeyRecord(
        "key_" + "ab" * 12, frozenset({"dns"}), secret_digest=digest_secret(old)
    )
    token = svc.http.token("key_" + "ab" * 12, old)
    assert token.startswith("bgt_")
    assert new_secret().startswith("bgs_")


# -- H7, M: metadata ------------------------------------------------------------------
def test_metadata_from_issuer_and_never_cached() -> None:
    s = Service(issuer="https://auth.example/")
    try:
        r = s.http.get("/.well-known/oauth-authorization-server", headers={"host": "evil"})
        assert r.json()["token_endpoint"] == "https://auth.example/login"
        assert r.headers["cache-control"] == "no-store"
    finally:
        s.http.close()
    s = Service()
    try:
        r = s.http.get("/.well-known/oauth-authorization-server")
        assert r.headers["cache-control"] == "no-store"
    finally:
        s.http.close()
