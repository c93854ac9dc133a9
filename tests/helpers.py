"""Shared test helpers: a controllable clock and tokens issued straight into a store."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bearerguard.stores.base import TokenRecord, new_token
from bearerguard.stores.memory import MemoryStore
from bearerguard.tokens import token_digest

# Every token and secret a test makes goes here; conftest checks that no log line of
# the suite ever contains one of them.
SECRETS: set[str] = set()


def remember_secret(value: str) -> str:
    """Register a token or key secret that must never appear in any log record.

    Values shorter than 8 characters are not real tokens or secrets (ours have 256
    bits) and would match ordinary log text, so they are not registered.
    """
    if len(value) >= 8:
        SECRETS.add(value)
    return value


def secrets_in(text: str) -> list[str]:
    """The registered tokens and secrets that appear in `text`.

    Reads a copy of the set (one step under the GIL): a thread a failed test left
    behind may still be registering tokens.
    """
    return [s for s in SECRETS.copy() if s in text]


def require_tools(*names: str) -> None:
    """Fail with one line naming each documented prerequisite (curl, jq) that is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed: the README lists curl and jq as "
            "prerequisites of make test",
            pytrace=False,
        )


@dataclass
class FakeClock:
    """Wall-clock seconds that only move when told to."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Issued:
    token: str = field(repr=False)
    key_id: str
    apis: frozenset[str]


def issue(
    store: MemoryStore,
    apis: tuple[str, ...] = ("dns",),
    *,
    ip: str = "127.0.0.1",
    ttl: float = 300.0,
    now: float | None = None,
    key_id: str | None = None,
) -> Issued:
    """Create a key (unless given) and a token bound to `ip`, as the auth service would."""
    if now is None:
        now = time.time()
    if key_id is None:
        key, secret = store.create_key(apis, now=now)
        remember_secret(secret)
        key_id = key.key_id
    token = remember_secret(new_token())
    store.put_token(
        TokenRecord(
            digest=token_digest(token),
            key_id=key_id,
            apis=frozenset(apis),
            bound_ip=ip,
            issued_at=now,
            ttl=ttl,
            expires_at=now + ttl,
        )
    )
    return Issued(token, key_id, frozenset(apis))


async def assert_store_down(app: Any) -> None:
    """The auth service `app` over a store it cannot reach: /ready and /login say 503
    ``temporarily_unavailable``, never 500."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.get("/ready")).status_code == 503
        r = await c.post("/login", data={"grant_type": "client_credentials"}, auth=("key_x", "s"))
        assert r.status_code == 503
        assert r.json()["error"] == "temporarily_unavailable"
