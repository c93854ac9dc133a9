"""Panel security over plain HTTP against a real ``bearerguard serve`` (SQLite store):
Secure cookies under https, session renewal, sign-in CSRF and throttling, ownership."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from bearerguard.stores.accounts import new_account
from bearerguard.stores.sqlite import SQLiteStore
from helpers import remember_secret
from live_service import LiveService


@pytest.fixture(scope="module")
def svc() -> Iterator[LiveService]:
    with LiveService() as service:
        yield service


def make_account(svc: LiveService, name: str, apis: tuple[str, ...] = ("dns",)) -> str:
    record, password = new_account(name, apis)
    store = SQLiteStore(svc.store_url)
    try:
        assert store.create_account(record)
    finally:
        store.close()
    return remember_secret(password)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def sign_in(client: httpx.Client, account: str, password: str) -> httpx.Response:
    page = client.get("/panel/signin")
    return client.post(
        "/panel/signin",
        data={"csrf": csrf_of(page.text), "account": account, "password": password},
    )


def client_for(svc: LiveService) -> httpx.Client:
    return httpx.Client(base_url=svc.base_url, follow_redirects=False)


def test_cookies_are_secure_when_the_issuer_is_https() -> None:
    with LiveService(extra_args=["--issuer", "https://auth.example.test"]) as secure:
        password = make_account(secure, "acme")
        with client_for(secure) as client:
            page = client.get("/panel/signin")
            assert "Secure" in page.headers["set-cookie"]
            # httpx keeps Secure cookies for https only: send it by hand.
            r = client.post(
                "/panel/signin",
                data={"csrf": csrf_of(page.text), "account": "acme", "password": password},
                headers={"Cookie": f"bg_signin={csrf_of(page.text)}"},
            )
            assert r.status_code == 303
            cookie = next(
                c for c in r.headers.get_list("set-cookie") if c.startswith("bg_session=")
            )
            for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/panel"):
                assert flag in cookie


def test_sign_in_renews_the_session_and_needs_its_csrf_cookie(svc: LiveService) -> None:
    password = make_account(svc, "renewal")
    with client_for(svc) as client:
        assert sign_in(client, "renewal", password).status_code == 303
        first = client.cookies["bg_session"]
        assert client.get("/panel/keys").status_code == 200
        assert sign_in(client, "renewal", password).status_code == 303
        second = client.cookies["bg_session"]
        assert second != first
    with client_for(svc) as stale:
        stale.cookies.set("bg_session", first, path="/panel")
        r = stale.get("/panel/keys")
        assert r.status_code == 303 and r.headers["location"].endswith("/panel/signin")
    # A sign-in form without the matching cookie (a cross-site post): 403, no session.
    with client_for(svc) as client:
        page = client.get("/panel/signin")
        client.cookies.clear()
        r = client.post(
            "/panel/signin",
            data={"csrf": csrf_of(page.text), "account": "renewal", "password": password},
        )
        assert r.status_code == 403 and "bg_session" not in r.headers.get("set-cookie", "")


def test_sign_in_is_throttled_but_the_right_password_always_works(svc: LiveService) -> None:
    password = make_account(svc, "throttled")
    with client_for(svc) as client:
        statuses = [sign_in(client, "throttled", "wrong password").status_code for _ in range(7)]
        assert statuses[:5] == [401] * 5
        assert statuses[5:] == [429, 429]
        r = sign_in(client, "throttled", "still wrong")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert sign_in(client, "throttled", password).status_code == 303


def test_no_secret_in_a_cookie_or_a_session_and_no_one_elses_key(svc: LiveService) -> None:
    password = make_account(svc, "owner")
    other_password = make_account(svc, "other")
    with client_for(svc) as client:
        sign_in(client, "owner", password)
        keys = client.get("/panel/keys")
        r = client.post("/panel/keys", data={"csrf": csrf_of(keys.text), "name": "k", "api": "dns"})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        secret = remember_secret(re.search(r'id="secret">([^<]+)<', r.text).group(1))  # type: ignore[union-attr]
        key_id = re.search(r'id="key-id">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
        assert secret not in " ".join(r.headers.get_list("set-cookie"))
        assert all(secret not in v for v in client.cookies.values())
    db = svc.store_url.removeprefix("sqlite:///")
    rows = sqlite3.connect(db).execute("SELECT * FROM bg_sessions").fetchall()
    assert rows and secret not in repr(rows)

    # Another account can neither rotate nor revoke it: 404, nothing changes.
    with client_for(svc) as intruder:
        sign_in(intruder, "other", other_password)
        token = csrf_of(intruder.get("/panel/keys").text)
        assert (
            intruder.post(f"/panel/keys/{key_id}/rotate", data={"csrf": token}).status_code == 404
        )
        assert (
            intruder.post(f"/panel/keys/{key_id}/revoke", data={"csrf": token}).status_code == 404
        )
        assert intruder.get(f"/panel/keys/{key_id}/revoke").status_code == 404
    login = httpx.post(
        svc.base_url + "/login", data={"grant_type": "client_credentials"}, auth=(key_id, secret)
    )
    assert login.status_code == 200
    remember_secret(login.json()["access_token"])


def test_every_page_has_the_security_headers(svc: LiveService) -> None:
    with client_for(svc) as client:
        for path in ("/panel/", "/panel/signin", "/panel/keys", "/panel/static/panel.css"):
            r = client.get(path)
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
            assert r.headers["x-content-type-options"] == "nosniff"
        assert client.get("/panel/static/panel.css").status_code == 200
