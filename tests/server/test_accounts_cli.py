"""The `bearerguard accounts …` and `keys create --account/--admin`, `keys rotate` commands,
run as subprocesses against a real store and a real ``bearerguard serve``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bearerguard.stores import open_store
from bearerguard.stores.accounts import ADMIN_API, verify_password
from helpers import remember_secret
from live_service import LiveService, _env, run_cli


def cli_json(*args: str) -> object:
    done = run_cli([*args, "--json"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def login(svc: LiveService, key_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        svc.base_url + "/login", data={"grant_type": "client_credentials"}, auth=(key_id, secret)
    )


def test_accounts_create_list_set_apis_disable(sqlite_url: str) -> None:
    created = cli_json(
        "accounts", "create", "acme", "--api", "vps", "--api", "dns", "--store", sqlite_url
    )
    assert isinstance(created, dict)
    assert created["account"] == "acme" and created["apis"] == ["dns", "vps"]
    password = remember_secret(created["password"])
    assert len(password) >= 16
    store = open_store(sqlite_url)
    try:
        record = store.get_account("acme")
        assert record is not None and record.password_hash.startswith("$argon2id$")
        assert verify_password(record, password)
    finally:
        store.close()
    assert password.encode() not in Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()

    # Text output names the password once; a second account of the same name fails.
    done = run_cli(["accounts", "create", "globex", "--api", "dns", "--store", sqlite_url])
    assert done.returncode == 0 and "Password:" in done.stdout
    remember_secret(done.stdout.split("Password:")[1].split()[0])
    again = run_cli(["accounts", "create", "acme", "--api", "dns", "--store", sqlite_url])
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run_cli(["accounts", "create", "a b", "--api", "dns", "--store", sqlite_url])
    assert bad.returncode == 2 and "account names" in bad.stderr

    listed = cli_json("accounts", "list", "--store", sqlite_url)
    assert [(a["account"], a["apis"], a["disabled"]) for a in listed] == [  # type: ignore[union-attr]
        ("acme", ["dns", "vps"], False),
        ("globex", ["dns"], False),
    ]
    assert password not in json.dumps(listed) and "argon2" not in json.dumps(listed)
    assert cli_json("accounts", "set-apis", "globex", "--api", "vps", "--store", sqlite_url) == {
        "account": "globex",
        "apis": ["vps"],
    }
    assert cli_json("accounts", "disable", "globex", "--store", sqlite_url) == {
        "account": "globex",
        "disabled": True,
    }
    text = run_cli(["accounts", "list", "--store", sqlite_url]).stdout
    assert "globex" in text and "disabled" in text
    missing = run_cli(["accounts", "disable", "nobody", "--store", sqlite_url])
    assert missing.returncode == 1 and "no such account" in missing.stderr


def test_password_from_stdin(sqlite_url: str) -> None:
    password = remember_secret("correct horse battery staple")
    done = subprocess.run(
        [sys.executable, "-m", "bearerguard", "accounts", "create", "acme", "--api", "dns",
         "--password-stdin", "--json", "--store", sqlite_url],
        input=password + "\n", capture_output=True, text=True, env=_env(), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"account": "acme", "password": None, "apis": ["dns"]}
    store = open_store(sqlite_url)
    try:
        assert verify_password(store.get_account("acme"), password)
    finally:
        store.close()


def test_account_keys_rotation_and_disable_end_to_end() -> None:
    with LiveService() as svc:
        acct = cli_json(
            "accounts", "create", "acme", "--api", "dns", "--api", "vps", "--store", svc.store_url
        )
        remember_secret(acct["password"])  # type: ignore[index]
        # A key's APIs are a subset of its account's.
        refused = svc.cli("keys", "create", "--account", "acme", "--api", "mail")
        assert refused.returncode == 2 and "may grant only" in refused.stderr
        unknown = svc.cli("keys", "create", "--account", "nobody", "--api", "dns")
        assert unknown.returncode == 2 and "no such account" in unknown.stderr
        key = cli_json(
            "keys",
            "create",
            "--account",
            "acme",
            "--name",
            "web <1>",
            "--api",
            "dns",
            "--store",
            svc.store_url,
        )
        assert isinstance(key, dict) and key["apis"] == ["dns"]
        key_id, old = key["key_id"], remember_secret(key["secret"])
        listed = cli_json("keys", "list", "--store", svc.store_url)
        row = next(k for k in listed if k["key_id"] == key_id)  # type: ignore[union-attr]
        assert (row["account"], row["name"], row["status"]) == ("acme", "web <1>", "active")
        assert "secret" not in json.dumps(listed)

        # Rotation: both secrets log in during the grace period, then only the new one.
        rotated = cli_json("keys", "rotate", key_id, "--grace", "2", "--store", svc.store_url)
        assert set(rotated) == {"key_id", "secret"}  # type: ignore[arg-type]
        new = remember_secret(rotated["secret"])  # type: ignore[index]
        assert new != old
        assert login(svc, key_id, old).status_code == 200
        token = remember_secret(login(svc, key_id, new).json()["access_token"])
        time.sleep(2.2)
        assert login(svc, key_id, old).status_code == 401
        assert login(svc, key_id, new).status_code == 200
        assert svc.cli("keys", "rotate", "key_nope").returncode == 1

        # Disabling the account: its keys stop logging in and its tokens are gone.
        introspector = svc.create_key(["x"], introspect=True)
        assert httpx.post(
            svc.base_url + "/introspect", data={"token": token}, auth=introspector
        ).json()["active"]
        assert svc.cli("accounts", "disable", "acme").returncode == 0
        assert login(svc, key_id, new).status_code == 401
        answer = httpx.post(svc.base_url + "/introspect", data={"token": token}, auth=introspector)
        assert answer.json() == {"active": False}


def test_admin_keys(sqlite_url: str) -> None:
    admin = cli_json("keys", "create", "--admin", "--store", sqlite_url)
    remember_secret(admin["secret"])  # type: ignore[index]
    assert admin["apis"] == [ADMIN_API]  # type: ignore[index]
    both = run_cli(["keys", "create", "--admin", "--account", "acme", "--store", sqlite_url])
    assert both.returncode == 2
    nothing = run_cli(["keys", "create", "--store", sqlite_url])
    assert nothing.returncode == 2 and "--api" in nothing.stderr
    sneaky = run_cli(["keys", "create", "--api", ADMIN_API, "--store", sqlite_url])
    assert sneaky.returncode == 2 and "--admin" in sneaky.stderr
