"""Fixtures for the panel tests: a real ``bearerguard serve`` over a real redis-server, the
Starlette example over the same store, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from panel_support import ROTATION_GRACE, PanelWorld, launch
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from integration_support import uvicorn_example
from live_service import LiveService
from redis_server import RedisServer


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
