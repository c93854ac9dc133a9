"""Fixtures for the panel tests: a real ``bearerguard serve`` over a real redis-server, the
Starlette example over the same store, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from bearerguard.stores.accounts import new_account
from bearerguard.stores.redis import RedisStore
from helpers import remember_secret
from integration_support import ExampleServer, uvicorn_example
from live_service import LiveService
from redis_server import RedisServer

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


@pytest.fixture(scope="module")
def world() -> Iterator[PanelWorld]:
    with RedisServer() as redis:
        example = uvicorn_example({"BEARERGUARD_STORE": redis.url})
        try:
            args = [
                "--rotation-grace",
                str(ROTATION_GRACE),
                "--panel-api-url",
                example.base_url + "/whoami",
            ]
            with LiveService(redis.url, extra_args=args) as svc:
                yield PanelWorld(svc, example, redis.url)
        finally:
            example.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        b = launch(playwright)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    p = context.new_page()
    p.set_default_timeout(15_000)
    return p
