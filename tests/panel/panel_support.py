"""Shared by the panel tests: Debian's Chromium under Playwright, and `PanelWorld`."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser

from bearerguard.stores.accounts import new_account
from bearerguard.stores.redis import RedisStore
from helpers import remember_secret
from integration_support import ExampleServer
from live_service import LiveService

CHROMIUM = "/usr/bin/chromium"
# What works on these machines (no sandbox as root, no GPU, nothing fetched at start).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROTATION_GRACE = 3.0

_names = itertools.count(1)


def launch(playwright: object) -> Browser:
    """Debian's Chromium (Playwright's own browser download cannot work here)."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} not installed: make test installs Debian's chromium package",
            pytrace=False,
        )
    # launch() gives the browser a fresh, throw-away user data directory.
    browser: Browser = playwright.chromium.launch(  # type: ignore[attr-defined]
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    return browser


@dataclass
class PanelWorld:
    svc: LiveService
    example: ExampleServer
    store_url: str

    @property
    def panel(self) -> str:
        return self.svc.base_url + "/panel/"

    def account(self, apis: tuple[str, ...] = ("dns", "vps")) -> tuple[str, str]:
        """A fresh account in the service's store (the CLI's own tests run the CLI)."""
        name = f"customer{next(_names)}"
        record, password = new_account(name, apis)
        store = RedisStore(self.store_url)
        try:
            assert store.create_account(record)
        finally:
            store.close()
        return name, remember_secret(password)
