"""The auth service's /metrics (scraped over HTTP from `bearerguard serve`) and /ready."""

from __future__ import annotations

import httpx
from server_helpers import Service, scrape

from helpers import remember_secret
from live_service import LiveService


def test_metrics_after_a_scripted_session(live: LiveService) -> None:
    key_id, secret = live.create_key(["dns"], introspect=True)
    with httpx.Client(base_url=live.base_url, timeout=10) as c:
        tokens = []
        for _ in range(2):
            r = c.post("/login", data={"grant_type": "client_credentials"}, auth=(key_id, secret))
            assert r.status_code == 200
            tokens.append(remember_secret(r.json()["access_token"]))
        r = c.post("/login", data={"grant_type": "client_credentials"}, auth=(key_id, "wrong"))
        assert r.status_code == 401
        assert c.post("/introspect", data={"token": tokens[0]}, auth=(key_id, secret)).json()[
            "active"
        ]
        r = c.post("/introspect", data={"token": "unknown"}, auth=(key_id, secret))
        assert r.json() == {"active": False}
        assert (
            c.post("/revoke", data={"token": tokens[1]}, auth=(key_id, secret)).status_code == 200
        )
    m = scrape(live.base_url)
    assert m["bearerguard_service_tokens_issued_total"] == 2
    assert m["bearerguard_service_login_failures_total"] == 1
    assert m["bearerguard_service_throttled_total"] == 0
    assert m['bearerguard_service_introspections_total{result="active"}'] == 1
    assert m['bearerguard_service_introspections_total{result="inactive"}'] == 1
    assert m["bearerguard_service_revocations_total"] == 1
    assert m["bearerguard_service_store_errors_total"] == 0


def test_throttled_logins_are_counted(svc: Service) -> None:
    key_id = "key_" + "ab" * 12
    for _ in range(7):
        svc.http.post("/login", data={"grant_type": "client_credentials"}, auth=(key_id, "nope"))
    snap = svc.app.state.metrics.snapshot()
    assert snap["login_failures"] == 5
    assert snap["throttled"] == 2


def test_health_is_liveness_and_ready_checks_the_store(svc: Service) -> None:
    assert svc.http.get("/health").json() == {"status": "ok"}
    assert svc.http.get("/ready").json() == {"status": "ok"}


def test_slow_body_gets_408_and_huge_headers_431() -> None:
    import asyncio
    import time
    from collections.abc import AsyncIterator

    from bearerguard.server import create_app
    from bearerguard.stores import MemoryStore

    app = create_app(MemoryStore(), body_timeout=0.3)

    async def trickle() -> AsyncIterator[bytes]:
        for ch in b"grant_type=client_credentials":
            yield bytes([ch])
            await asyncio.sleep(0.1)

    async def main() -> tuple[int, float, int]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as c:
            started = time.monotonic()
            r = await c.post(
                "/login",
                content=trickle(),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            elapsed = time.monotonic() - started
            big = await c.post(
                "/login",
                data={"grant_type": "client_credentials"},
                headers={f"x-pad-{i}": "a" * 1000 for i in range(20)},
            )
        return r.status_code, elapsed, big.status_code

    status, elapsed, big = asyncio.run(main())
    assert status == 408
    assert elapsed < 2.5  # cut off near body_timeout, not after the whole trickle
    assert big == 431
