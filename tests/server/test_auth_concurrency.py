"""Two `bearerguard serve` processes over one store, issuing and introspecting at once."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bearerguard.stores import open_store
from bearerguard.tokens import token_digest
from helpers import remember_secret
from live_service import LiveService

ROUNDS = 100  # each round: one login on one server, one introspection on the other
WORKERS = 8


def test_two_servers_one_store(persistent_url: str) -> None:
    # The access log is on, so a 500 would show up in the output checked at the end.
    with (
        LiveService(persistent_url, extra_args=["--access-log"]) as a,
        LiveService(persistent_url, extra_args=["--access-log"]) as b,
    ):
        key_id, secret = a.create_key(["dns"])
        rs = a.create_key(["x"], introspect=True)
        servers = (a, b)

        def one_round(i: int) -> tuple[int, int, bool, str]:
            issuer, checker = servers[i % 2], servers[(i + 1) % 2]
            with httpx.Client(timeout=30) as c:
                r = c.post(
                    issuer.base_url + "/login",
                    data={"grant_type": "client_credentials"},
                    auth=(key_id, secret),
                )
                if r.status_code != 200:
                    return r.status_code, 0, False, r.text
                token = remember_secret(r.json()["access_token"])
                r2 = c.post(checker.base_url + "/introspect", data={"token": token}, auth=rs)
                active = r2.status_code == 200 and r2.json().get("active") is True
                return r.status_code, r2.status_code, active, r2.text

        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(one_round, range(ROUNDS)))

        failures = [r for r in results if r[:3] != (200, 200, True)]
        assert not failures, failures[:5]

        # One token used through both servers at once: no extension is lost, so the
        # expiry is at least the latest use + TTL.
        with httpx.Client(timeout=30) as c:
            r = c.post(
                a.base_url + "/login",
                data={"grant_type": "client_credentials"},
                auth=(key_id, secret),
            )
        token = remember_secret(r.json()["access_token"])

        def use(i: int) -> tuple[float, int, bool]:
            sent = time.time()
            with httpx.Client(timeout=30) as c:
                r = c.post(servers[i % 2].base_url + "/introspect", data={"token": token}, auth=rs)
            return sent, r.status_code, r.status_code == 200 and r.json()["active"] is True

        with ThreadPoolExecutor(WORKERS) as pool:
            uses = list(pool.map(use, range(ROUNDS)))
        assert all(ok for _, _, ok in uses), [u for u in uses if not u[2]][:5]
        store = open_store(persistent_url)
        try:
            record = store.get_token(token_digest(token), time.time())
        finally:
            store.close()
        assert record is not None
        assert record.expires_at >= max(sent for sent, _, _ in uses) + a.token_ttl
    logged = 0
    for svc in (a, b):
        assert "database is locked" not in svc.output
        assert "Traceback" not in svc.output
        statuses = re.findall(r'"POST /(?:login|introspect) HTTP/1\.1" (\d{3})', svc.output)
        assert statuses and set(statuses) == {"200"}, sorted(set(statuses))
        logged += len(statuses)
    # Every request above is in one of the two access logs: none went unseen.
    assert logged == 2 * ROUNDS + 1 + ROUNDS
