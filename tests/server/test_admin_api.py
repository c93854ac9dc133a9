"""The admin API against a real ``bearerguard serve``: 401, 403, 200, never a secret listed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from helpers import remember_secret, secrets_in
from integration_support import assert_challenge
from live_service import LiveService


@pytest.fixture(scope="module")
def svc() -> Iterator[LiveService]:
    with LiveService() as service:
        yield service


def token_for(svc: LiveService, key_id: str, secret: str) -> str:
    r = httpx.post(
        svc.base_url + "/login", data={"grant_type": "client_credentials"}, auth=(key_id, secret)
    )
    assert r.status_code == 200, r.text
    return remember_secret(r.json()["access_token"])


@pytest.fixture(scope="module")
def admin(svc: LiveService) -> Iterator[httpx.Client]:
    done = svc.cli("keys", "create", "--admin", "--json")
    assert done.returncode == 0, done.stderr
    key = json.loads(done.stdout)
    token = token_for(svc, key["key_id"], remember_secret(key["secret"]))
    with httpx.Client(base_url=svc.base_url, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def no_secret_in(text: str) -> None:
    assert not secrets_in(text), "a secret appeared in a listing"
    for word in ("secret", "digest", "password", "argon2"):
        assert word not in text


def test_no_token_is_401_with_the_bearer_challenge(svc: LiveService) -> None:
    for method, path in [
        ("GET", "/admin/keys"),
        ("GET", "/admin/accounts"),
        ("POST", "/admin/accounts"),
        ("DELETE", "/admin/keys/key_00"),
    ]:
        r = httpx.request(method, svc.base_url + path)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer realm=")
        assert "error=" not in r.headers["www-authenticate"]
    r = httpx.get(svc.base_url + "/admin/keys", headers={"Authorization": "Bearer nonsense"})
    assert_challenge(r, 401, "invalid_token", realm="bearerguard admin")


def test_a_key_without_the_admin_right_is_403(svc: LiveService) -> None:
    key_id, secret = svc.create_key(["dns"], introspect=True)
    token = token_for(svc, key_id, secret)
    r = httpx.get(svc.base_url + "/admin/keys", headers={"Authorization": f"Bearer {token}"})
    assert_challenge(
        r, 403, "insufficient_scope", scope="bearerguard:admin", realm="bearerguard admin"
    )
    assert 'scope="bearerguard:admin"' in r.headers["www-authenticate"]


def test_accounts_and_keys_round_trip(svc: LiveService, admin: httpx.Client) -> None:
    r = admin.post("/admin/accounts", json={"account": "acme", "apis": ["dns", "vps"]})
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["account"], created["apis"]) == ("acme", ["dns", "vps"])
    remember_secret(created["password"])
    assert (
        admin.post("/admin/accounts", json={"account": "acme", "apis": ["dns"]}).status_code == 409
    )
    assert admin.post("/admin/accounts", json={"account": "a b", "apis": ["x"]}).status_code == 400
    assert admin.post("/admin/accounts", content=b"{nope").status_code == 400

    r = admin.post("/admin/keys", json={"account": "acme", "name": "web", "apis": ["dns"]})
    assert r.status_code == 201, r.text
    key = r.json()
    secret = remember_secret(key["secret"])
    assert (key["account"], key["name"], key["apis"]) == ("acme", "web", ["dns"])
    # Outside the account's APIs: refused, nothing created.
    before = admin.get("/admin/keys").json()
    r = admin.post("/admin/keys", json={"account": "acme", "apis": ["mail"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    assert admin.get("/admin/keys").json() == before

    listed = admin.get("/admin/keys", params={"account": "acme"})
    assert listed.status_code == 200
    assert [k["key_id"] for k in listed.json()] == [key["key_id"]]
    no_secret_in(listed.text)
    accounts = admin.get("/admin/accounts")
    assert accounts.status_code == 200
    assert [a["account"] for a in accounts.json()] == ["acme"]
    no_secret_in(accounts.text)
    no_secret_in(admin.get("/admin/keys").text)

    r = admin.post(f"/admin/keys/{key['key_id']}/rotate", json={"grace": 0})
    assert r.status_code == 200 and set(r.json()) == {"key_id", "secret"}
    new = remember_secret(r.json()["secret"])
    bad = httpx.post(
        svc.base_url + "/login",
        data={"grant_type": "client_credentials"},
        auth=(key["key_id"], secret),
    )
    assert bad.status_code == 401
    token = token_for(svc, key["key_id"], new)
    assert admin.post("/admin/keys/key_nope/rotate").status_code == 404

    # Disabling the account kills the token at once; deleting a key revokes it.
    assert admin.post("/admin/accounts/acme/disable").json() == {
        "account": "acme",
        "disabled": True,
    }
    introspector = svc.create_key(["x"], introspect=True)
    r = httpx.post(svc.base_url + "/introspect", data={"token": token}, auth=introspector)
    assert r.json() == {"active": False}
    assert admin.delete(f"/admin/keys/{key['key_id']}").json() == {
        "key_id": key["key_id"],
        "revoked": True,
    }
    assert admin.delete(f"/admin/keys/{key['key_id']}").status_code == 404
    assert admin.post("/admin/accounts/nobody/disable").status_code == 404


def test_operator_keys_through_the_admin_api(admin: httpx.Client) -> None:
    r = admin.post("/admin/keys", json={"apis": ["dns"], "introspect": True, "expires_in": 60})
    assert r.status_code == 201
    remember_secret(r.json()["secret"])
    assert r.json()["introspect"] is True and r.json()["expires_at"] is not None
    for bad in (
        {"apis": []},
        {"apis": "dns"},
        {"apis": ["bearerguard:admin"]},
        {"apis": ["dns"], "name": "x" * 101},
        {"apis": ["dns"], "expires_in": -1},
        {"apis": ["dns"], "introspect": "yes"},
    ):
        assert admin.post("/admin/keys", json=bad).status_code == 400, bad


def test_the_key_listing_comes_in_pages(admin: httpx.Client) -> None:
    for i in range(5):
        r = admin.post("/admin/keys", json={"apis": ["dns"], "name": f"paged {i}"})
        remember_secret(r.json()["secret"])
    whole = admin.get("/admin/keys", params={"limit": 1000})
    assert "link" not in whole.headers
    seen: list[str] = []
    url: str | None = "/admin/keys?limit=2"
    while url is not None:
        r = admin.get(url)
        assert r.status_code == 200 and len(r.json()) <= 2
        seen += [k["key_id"] for k in r.json()]
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert seen == [k["key_id"] for k in whole.json()]
    for bad in ("limit=0", "limit=1001", "limit=x", "after=nonsense"):
        assert admin.get(f"/admin/keys?{bad}").status_code == 400
