"""The customer control panel in a real browser (Debian's Chromium under Playwright),
against a real ``bearerguard serve`` over Redis and the Starlette example over the same
store: the journeys of issue 14, by the accessible names of the contract."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
from panel_support import ROTATION_GRACE, PanelWorld
from playwright.sync_api import Page, expect

from helpers import remember_secret, require_tools


# -- steps ---------------------------------------------------------------------------
def sign_in(page: Page, world: PanelWorld, account: str, password: str) -> None:
    page.goto(world.panel)
    page.get_by_label("Account").fill(account)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/panel/keys$"))


def create_key(page: Page, name: str, apis: tuple[str, ...] = ("dns",)) -> tuple[str, str]:
    page.get_by_label("Key name").fill(name)
    for api in apis:
        page.get_by_role("checkbox", name=api, exact=True).check()
    page.get_by_role("button", name="Create key").click()
    key_id = page.locator("#key-id").inner_text().strip()
    secret = remember_secret(page.locator("#secret").inner_text().strip())
    assert key_id.startswith("key_") and len(secret) >= 43
    return key_id, secret


def key_row(page: Page, key_id: str):  # type: ignore[no-untyped-def]
    page.goto(page.url.split("/panel/")[0] + "/panel/keys")
    return page.get_by_role("row").filter(has_text=key_id)


def login(world: PanelWorld, key_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        world.svc.base_url + "/login",
        data={"grant_type": "client_credentials"},
        auth=(key_id, secret),
    )


def token(world: PanelWorld, key_id: str, secret: str) -> str:
    r = login(world, key_id, secret)
    assert r.status_code == 200, r.text
    return remember_secret(r.json()["access_token"])


def whoami(world: PanelWorld, tok: str) -> int:
    r = httpx.get(world.example.base_url + "/whoami", headers={"Authorization": f"Bearer {tok}"})
    return r.status_code


def refused_within(world: PanelWorld, tok: str, seconds: float) -> float:
    """How long the running example took to refuse `tok` (fails after `seconds`)."""
    start = time.monotonic()
    while whoami(world, tok) != 401:
        assert time.monotonic() - start < seconds, f"token still accepted after {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - start


def key_count(page: Page) -> int:
    page.goto(page.url.split("/panel/")[0] + "/panel/keys")
    return page.locator("tbody tr").count()


# -- journeys ------------------------------------------------------------------------
def test_1_sign_in_create_a_key_and_use_it_with_curl_and_jq(page: Page, world: PanelWorld) -> None:
    require_tools("curl", "jq")
    account, password = world.account()
    sign_in(page, world, account, password)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    key_id, secret = create_key(page, "web server", ("dns", "vps"))
    lines = page.locator("#curl-lines").inner_text()
    assert key_id in lines and secret in lines and world.svc.base_url + "/login" in lines
    # The lines as the page shows them, pasted into a shell.
    done = subprocess.run(
        ["bash", "-c", "set -e\n" + lines + " -w '\\n%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "200"
    assert httpx.Response(200, content=body).json() == {"key_id": key_id, "apis": ["dns", "vps"]}
    # The key is listed with its name, key id and APIs.
    row = key_row(page, key_id)
    expect(row).to_contain_text("web server")
    expect(row).to_contain_text("dns, vps")
    expect(row).to_contain_text("active")


def test_2_reload_and_the_secret_is_gone(page: Page, world: PanelWorld) -> None:
    account, password = world.account()
    sign_in(page, world, account, password)
    before = key_count(page)
    _, secret = create_key(page, "once")
    assert secret in page.content()
    page.reload()
    assert secret not in page.content()
    expect(page.locator("#secret")).to_have_count(0)
    # Resending the form created nothing and showed nothing.
    assert key_count(page) == before + 1


def test_3_rotate_both_secrets_work_during_the_grace_period(page: Page, world: PanelWorld) -> None:
    account, password = world.account()
    sign_in(page, world, account, password)
    key_id, old = create_key(page, "rotating")
    key_row(page, key_id).get_by_role("button", name="Rotate secret").click()
    expect(page.locator("#key-id")).to_have_text(key_id)
    new = remember_secret(page.locator("#secret").inner_text().strip())
    rotated_at = time.monotonic()
    assert new != old
    assert login(world, key_id, old).status_code == 200
    assert login(world, key_id, new).status_code == 200
    expect(key_row(page, key_id)).to_contain_text("rotating")
    time.sleep(max(0.0, ROTATION_GRACE + 0.3 - (time.monotonic() - rotated_at)))
    assert login(world, key_id, old).status_code == 401
    assert login(world, key_id, new).status_code == 200


def test_4_revoke_and_the_token_is_refused(page: Page, world: PanelWorld) -> None:
    account, password = world.account()
    sign_in(page, world, account, password)
    key_id, secret = create_key(page, "doomed")
    tok = token(world, key_id, secret)
    assert whoami(world, tok) == 200
    key_row(page, key_id).get_by_role("button", name="Revoke").click()
    expect(page.get_by_text(key_id)).to_be_visible()
    page.get_by_role("button", name="Revoke key").click()
    expect(page).to_have_url(re.compile(r"/panel/keys"))
    expect(page.get_by_role("row").filter(has_text=key_id)).to_have_count(0)
    # Over Redis the running resource server hears it within 1 s.
    assert refused_within(world, tok, 1.0) < 1.0
    assert login(world, key_id, secret).status_code == 401


def test_5_a_post_without_a_valid_csrf_token_is_refused(page: Page, world: PanelWorld) -> None:
    account, password = world.account()
    sign_in(page, world, account, password)
    before = key_count(page)
    # A forged token in the real form.
    page.locator("form[action='/panel/keys'] input[name=csrf]").evaluate("e => e.value = 'forged'")
    page.get_by_label("Key name").fill("forged")
    page.get_by_role("checkbox", name="dns", exact=True).check()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create key").click()
    assert answer.value.status == 403
    expect(page.locator("#secret")).to_have_count(0)
    # No token at all, from the signed-in browser (its cookie goes along).
    r = page.request.post(world.panel + "keys", form={"name": "x", "api": "dns"})
    assert r.status == 403
    assert key_count(page) == before
    # Revoke and sign out need it too.
    row_key = create_key(page, "kept")[0]
    r = page.request.post(world.panel + f"keys/{row_key}/revoke", form={})
    assert r.status == 403
    assert page.request.post(world.panel + "signout", form={}).status == 403
    expect(key_row(page, row_key)).to_have_count(1)


def test_6_an_xss_payload_in_a_key_name_does_not_run(page: Page, world: PanelWorld) -> None:
    account, password = world.account()
    sign_in(page, world, account, password)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    payload = '<img src=x onerror="window.xss=1;alert(1)"><script>window.xss=2</script>'
    key_id, _ = create_key(page, payload)
    row = key_row(page, key_id)
    expect(row).to_contain_text(payload)  # shown as text, not as markup
    assert page.evaluate("window.xss") is None
    assert page.locator("tbody img").count() == 0
    assert dialogs == []


def test_7_cookie_flags_and_csp(page: Page, world: PanelWorld) -> None:
    account, password = world.account()
    answer = page.goto(world.panel + "signin")
    assert answer is not None
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp  # default-src 'none'
    assert "default-src 'none'" in csp
    sign_in(page, world, account, password)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["bg_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/panel"
    assert session["secure"] is False  # plain http here; https: see test_panel_http.py
    assert page.evaluate("document.cookie") == ""
    keys_answer = page.goto(world.panel + "keys")
    assert keys_answer is not None
    assert "frame-ancestors 'none'" in keys_answer.headers["content-security-policy"]
    # No inline script anywhere: the pages have no script element at all.
    assert page.locator("script").count() == 0


def test_8_sign_out_and_the_old_cookie_is_dead(
    page: Page, world: PanelWorld, browser: object
) -> None:
    account, password = world.account()
    sign_in(page, world, account, password)
    old = {c["name"]: c for c in page.context.cookies()}["bg_session"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # The old cookie, replayed in another browser context, opens nothing.
    other = browser.new_context()  # type: ignore[attr-defined]
    try:
        other.add_cookies([{k: old[k] for k in ("name", "value", "domain", "path")}])
        p2 = other.new_page()
        p2.goto(world.panel + "keys")
        expect(p2).to_have_url(re.compile(r"/panel/signin$"))
    finally:
        other.close()


def test_9_a_form_tampered_to_grant_another_api_is_refused(page: Page, world: PanelWorld) -> None:
    account, password = world.account(apis=("dns",))
    sign_in(page, world, account, password)
    before = key_count(page)
    page.get_by_label("Key name").fill("greedy")
    box = page.get_by_role("checkbox", name="dns", exact=True)
    box.check()
    box.evaluate("e => e.value = 'vps'")  # not an API of this account
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create key").click()
    assert answer.value.status == 400
    expect(page.locator("#secret")).to_have_count(0)
    assert key_count(page) == before


def test_10_a_disabled_accounts_tokens_are_refused(page: Page, world: PanelWorld) -> None:
    account, password = world.account()
    sign_in(page, world, account, password)
    key_id, secret = create_key(page, "soon disabled")
    tok = token(world, key_id, secret)
    assert whoami(world, tok) == 200
    done = world.svc.cli("accounts", "disable", account)
    assert done.returncode == 0, done.stderr
    assert refused_within(world, tok, 1.0) < 1.0
    assert login(world, key_id, secret).status_code == 401
    # Its panel session ended too.
    page.goto(world.panel + "keys")
    expect(page).to_have_url(re.compile(r"/panel/signin$"))
    page.get_by_label("Account").fill(account)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong account name or password")
