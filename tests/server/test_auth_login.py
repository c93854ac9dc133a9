"""POST /login in process (memory store): success, every error, bad input, throttling."""

from __future__ import annotations

import base64
import logging

import pytest
from server_helpers import Service, assert_error, basic

from bearerguard.tokens import fingerprint, token_digest
from helpers import remember_secret

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_login_issues_a_bound_sliding_token(svc: Service) -> None:
    key_id, secret = svc.key(("dns", "vps"))
    r = svc.http.login(key_id, secret)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"
    body = r.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["expires_in"] == 300
    assert body["token_type"] == "bearer"
    token = remember_secret(body["access_token"])
    assert len(token) >= 43  # 256 bits, base64url
    record = svc.store.get_token(token_digest(token), svc.clock())
    assert record is not None
    assert record.key_id == key_id
    assert record.apis == frozenset({"dns", "vps"})
    assert record.bound_ip == "127.0.0.1"
    assert record.expires_at == svc.clock() + 300
    # The raw token is never stored, only its digest.
    assert token not in repr(svc.store._tokens)


def test_each_login_gives_a_new_token(svc: Service) -> None:
    key_id, secret = svc.key()
    assert svc.http.token(key_id, secret) != svc.http.token(key_id, secret)


def test_client_secret_in_form(svc: Service) -> None:
    key_id, secret = svc.key()
    r = svc.http.post(
        "/login",
        data={"grant_type": "client_credentials", "client_id": key_id, "client_secret": secret},
    )
    assert r.status_code == 200, r.text
    remember_secret(r.json()["access_token"])


def test_scope_narrows_the_apis(svc: Service) -> None:
    key_id, secret = svc.key(("dns", "vps", "mail"))
    r = svc.http.login(key_id, secret, data={"grant_type": "client_credentials", "scope": "dns"})
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "dns"
    token = remember_secret(r.json()["access_token"])
    record = svc.store.get_token(token_digest(token), svc.clock())
    assert record is not None and record.apis == frozenset({"dns"})


@pytest.mark.parametrize("scope", ["dns billing", "billing", "dns\\x", 'dn"s', "dns  vps", " "])
def test_scope_beyond_the_key_is_invalid_scope(svc: Service, scope: str) -> None:
    key_id, secret = svc.key(("dns", "vps"))
    r = svc.http.login(key_id, secret, data={"grant_type": "client_credentials", "scope": scope})
    assert_error(r, 400, "invalid_scope")


def test_bad_secret_is_invalid_client_with_basic_challenge(svc: Service) -> None:
    key_id, _ = svc.key()
    r = svc.http.login(key_id, "wrong-secret")
    body = assert_error(r, 401, "invalid_client")
    assert body["error_description"] == "Invalid credentials"
    assert r.headers["www-authenticate"] == 'Basic realm="bearerguard"'


def test_unknown_key_reads_like_a_bad_secret(svc: Service) -> None:
    r = svc.http.login("key_doesnotexist", "whatever")
    body = assert_error(r, 401, "invalid_client")
    assert body["error_description"] == "Invalid credentials"


def test_revoked_key_cannot_log_in(svc: Service) -> None:
    key_id, secret = svc.key()
    svc.store.revoke_key(key_id)
    assert_error(svc.http.login(key_id, secret), 401, "invalid_client")


def test_no_credentials_is_invalid_client(svc: Service) -> None:
    r = svc.http.post("/login", data={"grant_type": "client_credentials"})
    assert_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic ")


def test_other_scheme_counts_as_no_credentials(svc: Service) -> None:
    r = svc.http.post(
        "/login",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Bearer abc"},
    )
    assert_error(r, 401, "invalid_client")


def test_unsupported_grant_type(svc: Service) -> None:
    key_id, secret = svc.key()
    r = svc.http.login(key_id, secret, data={"grant_type": "password"})
    assert_error(r, 400, "unsupported_grant_type")


def test_missing_grant_type(svc: Service) -> None:
    key_id, secret = svc.key()
    assert_error(svc.http.login(key_id, secret, data={}), 400, "invalid_request")
    # RFC 6749 §3.1: a parameter without a value counts as omitted.
    r = svc.http.login(key_id, secret, content="grant_type=", headers=FORM)
    assert_error(r, 400, "invalid_request")


def test_both_authentication_methods_is_invalid_request(svc: Service) -> None:
    key_id, secret = svc.key()
    r = svc.http.login(
        key_id,
        secret,
        data={"grant_type": "client_credentials", "client_id": key_id, "client_secret": secret},
    )
    assert_error(r, 400, "invalid_request")


def test_percent_encoded_basic_credentials_are_decoded(svc: Service) -> None:
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    key_id, secret = svc.key()
    encoded = "".join(f"%{b:02X}" for b in key_id.encode())
    r = svc.http.post(
        "/login",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(encoded, secret)},
    )
    assert r.status_code == 200, r.text
    remember_secret(r.json()["access_token"])


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        # wrong or missing content type
        ({"Content-Type": "application/json"}, b'{"grant_type": "client_credentials"}'),
        ({"Content-Type": "text/plain"}, b"grant_type=client_credentials"),
        ({}, b"grant_type=client_credentials"),
        ({"Content-Type": "application/x-www-form-urlencoded; charset=latin-1"}, b"a=b"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
        # duplicate parameters (RFC 6749 §3.2)
        (FORM, b"grant_type=client_credentials&grant_type=client_credentials"),
        (FORM, b"grant_type=client_credentials&scope=dns&scope=dns"),
        # non-UTF-8, raw or percent-encoded, and raw non-ASCII
        (FORM, b"grant_type=client_credentials&scope=%FF%FE"),
        (FORM, b"grant_type=client_credentials&scope=\xff"),
        (FORM, "grant_type=client_credentials&scope=d\u00e9".encode()),
        # control characters
        (FORM, b"grant_type=client_credentials%00"),
        # too many fields
        (FORM, b"&".join(b"f%d=1" % i for i in range(40))),
    ],
)
def test_bad_input_is_invalid_request(
    svc: Service, headers: dict[str, str], content: bytes
) -> None:
    key_id, secret = svc.key()
    r = svc.http.post(
        "/login",
        content=content,
        headers={**headers, "Authorization": basic(key_id, secret)},
    )
    assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":secret").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic " + base64.b64encode(b"key_x:%ZZ%FF").decode(),
        "Basic " + "A" * 5000,
        "Basic YQ==:YQ==",
    ],
)
def test_malformed_basic_is_invalid_request(svc: Service, authorization: str) -> None:
    r = svc.http.post(
        "/login",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": authorization},
    )
    assert_error(r, 400, "invalid_request")


def test_two_authorization_headers(svc: Service) -> None:
    key_id, secret = svc.key()
    r = svc.http.post(
        "/login",
        content=b"grant_type=client_credentials",
        headers=[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", basic(key_id, secret)),
            ("Authorization", basic(key_id, secret)),
        ],
    )
    assert_error(r, 400, "invalid_request")


def test_oversized_body_is_refused(svc: Service) -> None:
    key_id, secret = svc.key()
    big = b"grant_type=client_credentials&pad=" + b"x" * 20_000
    r = svc.http.post(
        "/login", content=big, headers={**FORM, "Authorization": basic(key_id, secret)}
    )
    assert_error(r, 413, "invalid_request")

    # Without Content-Length (chunked), the limit holds while reading.
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 1000

    async def achunks():  # type: ignore[no-untyped-def]
        for c in chunks():
            yield c

    r = svc.http.post(
        "/login", content=achunks(), headers={**FORM, "Authorization": basic(key_id, secret)}
    )
    assert_error(r, 413, "invalid_request")


def test_huge_secret_is_just_invalid_client(svc: Service) -> None:
    key_id, _ = svc.key()
    r = svc.http.post(
        "/login",
        data={"grant_type": "client_credentials", "client_id": key_id, "client_secret": "s" * 5000},
    )
    assert_error(r, 401, "invalid_client")


def test_wrong_method_and_path_are_json_errors(svc: Service) -> None:
    r = svc.http.get("/login")
    assert r.status_code == 405
    assert r.json()["error"] == "invalid_request"
    r = svc.http.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"] == "invalid_request"


def test_client_address_from_trusted_proxy_only() -> None:
    s = Service(trusted_proxies=["10.0.0.0/8"])
    try:
        key_id, secret = s.key()
        xff = {"X-Forwarded-For": "203.0.113.9, 10.0.0.7"}
        t1 = s.http.token(key_id, secret, headers=xff, peer="10.0.0.1")
        t2 = s.http.token(key_id, secret, headers=xff, peer="192.0.2.1")
        ip1 = s.store.get_token(token_digest(t1), s.clock())
        ip2 = s.store.get_token(token_digest(t2), s.clock())
        assert ip1 is not None and ip1.bound_ip == "203.0.113.9"
        # An untrusted peer's X-Forwarded-For is ignored.
        assert ip2 is not None and ip2.bound_ip == "192.0.2.1"
    finally:
        s.http.close()


# -- throttling ----------------------------------------------------------------------
def test_failed_logins_are_throttled_then_the_window_expires(svc: Service) -> None:
    key_id, secret = svc.key()
    for _ in range(5):
        assert_error(svc.http.login(key_id, "bad"), 401, "invalid_client")
    # The sixth wrong guess is slowed down...
    r = svc.http.login(key_id, "bad")
    assert_error(r, 429, "invalid_client")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # ...but the right secret is checked all the same and gets in (H3).
    svc.http.token(key_id, secret)
    assert svc.http.login(key_id, "bad").status_code == 429
    # Other keys are not affected.
    other_id, other_secret = svc.key()
    svc.http.token(other_id, other_secret)
    # The window passes: wrong guesses are heard again.
    svc.throttle_clock.advance(61)
    assert svc.http.login(key_id, "bad").status_code == 401


def test_success_does_not_reset_the_failure_count(svc: Service) -> None:
    # Clearing the count at each of the owner's logins would give an attacker five
    # fresh guesses every time; the owner is never slowed, so nothing is lost.
    key_id, secret = svc.key()
    for _ in range(4):
        svc.http.login(key_id, "bad")
    svc.http.token(key_id, secret)
    assert svc.http.login(key_id, "bad").status_code == 401  # the fifth
    assert svc.http.login(key_id, "bad").status_code == 429
    svc.http.token(key_id, secret)


def test_throttle_is_a_sliding_window(svc: Service) -> None:
    key_id, secret = svc.key()
    for _ in range(4):
        svc.http.login(key_id, "bad")
    svc.throttle_clock.advance(59)
    svc.http.login(key_id, "bad")  # 5 failures within 60 s
    assert svc.http.login(key_id, "bad").status_code == 429
    svc.throttle_clock.advance(2)  # the first four are now older than 60 s
    assert svc.http.login(key_id, "bad").status_code == 401
    svc.http.token(key_id, secret)


def test_log_shows_fingerprints_never_tokens_or_secrets(
    svc: Service, caplog: pytest.LogCaptureFixture
) -> None:
    key_id, secret = svc.key()
    with caplog.at_level(logging.INFO, logger="bearerguard"):
        token = svc.http.token(key_id, secret)
        # A client that swaps id and secret must not get its secret logged.
        assert svc.http.login(secret, key_id).status_code == 401
        assert svc.http.login(token, "x").status_code == 401
    text = caplog.text
    assert fingerprint(token_digest(token)) in text
    assert key_id in text
    assert token not in text and secret not in text
