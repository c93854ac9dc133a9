"""Take the panel screenshots of the README and docs/panel.md with the tests' browser.

    .venv/bin/python docs/screenshots.py

Starts ``bearerguard serve`` on a throw-away SQLite store, makes an account with a few
keys, and drives Debian's Chromium (the one the browser tests use, same flags) through
the panel: docs/img/panel-keys.png (the keys page), docs/img/panel-key-created.png (the
"key created" page) and docs/img/panel-phone.png (the keys page on a phone-sized
screen). The secret in the picture belongs to a store deleted right after.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from bearerguard.stores.accounts import new_account
from bearerguard.stores.sqlite import SQLiteStore

HERE = Path(__file__).parent
OUT = HERE / "img"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> int:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/panel.db"
        store = SQLiteStore(url)
        record, password = new_account("acme-hosting", ["dns", "vps", "mail"])
        store.create_account(record)
        now = time.time()
        for i, (name, apis) in enumerate(
            [("billing exporter", ["dns"]), ("CI deploys", ["dns", "vps"])]
        ):
            store.create_key(apis, account=record.name, name=name, now=now - 86400 * (9 - i))
        store.close()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEARERGUARD_")}
        server = subprocess.Popen(  # noqa: S603  (our own command line)
            [sys.executable, "-m", "bearerguard", "serve", "--port", str(port), "--store", url,
             "--panel-api-url", "https://api.example.net/dns/zones"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(base + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 640})
                page.goto(base + "/panel/")
                page.get_by_label("Account").fill(record.name)
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_label("Key name").fill("web server")
                page.get_by_role("checkbox", name="dns", exact=True).check()
                page.get_by_role("checkbox", name="vps", exact=True).check()
                page.get_by_role("button", name="Create key").click()
                page.locator("#secret").wait_for()
                page.screenshot(path=str(OUT / "panel-key-created.png"), full_page=True)
                page.goto(base + "/panel/keys")
                page.screenshot(path=str(OUT / "panel-keys.png"), full_page=True)
                phone = browser.new_page(viewport={"width": 390, "height": 844})
                phone.context.add_cookies(page.context.cookies())
                phone.goto(base + "/panel/keys")
                phone.screenshot(path=str(OUT / "panel-phone.png"), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(10)
    for name in ("panel-keys.png", "panel-key-created.png", "panel-phone.png"):
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
