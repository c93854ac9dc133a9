"""Hostile traffic (issue 12): attacks on real processes, and what the token holders saw.

A real ``bearerguard serve`` (SQLite, ``--token-ttl 3``) and resource servers
(``resource_app.py`` under uvicorn, one introspecting, one reading the store) on
127.0.0.1. The holders connect from 127.0.0.2, the attacker from 127.0.0.3 (Linux
loopback answers on all of 127/8). Each row records what was sent and what the holders
saw (`record`, case ``attacks.*``); ``hostile_report.py`` renders the rows into the
"Hostile traffic" section of docs/reliability.md. Counts and durations are small under
``make test`` and bigger under ``make soak`` (`scaled`).
"""

from __future__ import annotations

import asyncio
import secrets
import stat
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reliability_support import bearer, client_from, login, record, resource_server, scaled, stats

from bearerguard.stores.sqlite import SQLiteStore, sqlite_path
from bearerguard.tokens import token_digest
from helpers import remember_secret
from integration_support import ExampleServer
from live_service import LiveService

HOLDER = "127.0.0.2"
ATTACKER = "127.0.0.3"
TOKEN_TTL = 3.0
TOUCH = TOKEN_TTL / 3  # the middleware touches a short token at a third of its TTL
MAX_TOKEN = 4096
HOLDERS = 3  # holder threads (one address holds a quarter of the 16 lookup slots)


@pytest.fixture(scope="module")
def service() -> Iterator[LiveService]:
    with LiveService(token_ttl=TOKEN_TTL) as svc:
        yield svc


@pytest.fixture(scope="module")
def rs_key(service: LiveService) -> tuple[str, str]:
    return service.create_key(["dns"], introspect=True)


def _introspection_env(
    service: LiveService, rs_key: tuple[str, str], **extra: str
) -> dict[str, str]:
    return {
        "BEARERGUARD_INTROSPECTION_URL": service.base_url + "/introspect",
        "BEARERGUARD_CLIENT_ID": rs_key[0],
        "BEARERGUARD_CLIENT_SECRET": rs_key[1],
        **extra,
    }


@pytest.fixture(scope="module")
def servers(service: LiveService, rs_key: tuple[str, str]) -> Iterator[dict[str, ExampleServer]]:
    made = {
        "introspection": resource_server(_introspection_env(service, rs_key)),
        "sqlite-store": resource_server({"BEARERGUARD_STORE": service.store_url}),
    }
    try:
        yield made
    finally:
        for srv in made.values():
            srv.stop()


def _holder_token(service: LiveService, key: tuple[str, str]) -> str:
    r = login(service.base_url, *key, source=HOLDER)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def _junk() -> str:
    """A token of the maximum length the middleware accepts, random b64token text."""
    return secrets.token_urlsafe(MAX_TOKEN * 3 // 4)[:MAX_TOKEN]


# -- A and G: junk tokens, then a flood, against new tokens of the holders -------------
def test_junk_tokens_then_a_flood_leave_new_tokens_alone(
    service: LiveService, servers: dict[str, ExampleServer]
) -> None:
    rs = servers["introspection"]
    key = service.create_key(["dns"])
    # A: maximum-length junk tokens made of "/" (each about 12 KB form-encoded).
    junk_statuses: Counter[int] = Counter()
    with client_from(ATTACKER) as c:
        for _ in range(10):
            r = c.get(rs.base_url + "/dns/zones", headers=bearer("/" * MAX_TOKEN))
            junk_statuses[r.status_code] += 1
    assert junk_statuses == {401: 10}
    assert stats(rs.base_url)["breaker"] == "closed"

    # G: 64 connections of random maximum-length tokens while holders get new tokens.
    connections = 64
    duration = scaled(4, 10)
    stop = threading.Event()
    flood: Counter[int] = Counter()

    async def attacker() -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        transport = httpx.AsyncHTTPTransport(local_address=ATTACKER, limits=limits)
        async with httpx.AsyncClient(transport=transport, timeout=30, trust_env=False) as c:

            async def one() -> None:
                while not stop.is_set():
                    try:
                        r = await c.get(rs.base_url + "/dns/zones", headers=bearer(_junk()))
                        flood[r.status_code] += 1
                    except httpx.TransportError:
                        flood[0] += 1

            await asyncio.gather(*(one() for _ in range(connections)))

    thread = threading.Thread(target=lambda: asyncio.run(attacker()), daemon=True)
    thread.start()
    time.sleep(0.5)
    holder: Counter[int] = Counter()
    waits: list[float] = []
    breaker_states: set[str] = set()
    started = time.monotonic()

    def holder_loop() -> None:
        with client_from(HOLDER, timeout=20) as c:
            while time.monotonic() - started < duration:
                token = _holder_token(service, key)  # a new token: never cached yet
                asked = time.monotonic()
                status = c.get(rs.base_url + "/dns/zones", headers=bearer(token)).status_code
                waits.append(time.monotonic() - asked)
                holder[status] += 1

    holders = [threading.Thread(target=holder_loop) for _ in range(HOLDERS)]
    for t in holders:
        t.start()
    while any(t.is_alive() for t in holders):
        breaker_states.add(stats(rs.base_url)["breaker"])
        time.sleep(0.2)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    sent = sum(flood.values())
    assert sent > connections, flood
    assert holder == {200: sum(holder.values())}, (holder, flood)
    assert breaker_states == {"closed"}
    assert stats(rs.base_url)["breaker"] == "closed"
    record(
        "attacks.junk_then_flood",
        attack=f"10 junk tokens of {MAX_TOKEN} '/', then {connections} connections of random "
        f"{MAX_TOKEN}-character tokens for {duration} s",
        sent=10 + sent,
        connections=connections,
        seconds=duration,
        attacker_statuses=dict(flood),
        holder_connections=HOLDERS,
        holder_new_tokens=sum(holder.values()),
        holder_200_pct=round(100 * holder[200] / sum(holder.values()), 1),
        holder_slowest_s=round(max(waits), 2),
        breaker=sorted(breaker_states),
    )


# -- B: wrong secrets against the resource server's own key and a customer's ---------
def test_throttle_attack_locks_out_no_holder(
    service: LiveService, servers: dict[str, ExampleServer], rs_key: tuple[str, str]
) -> None:
    rs = servers["introspection"]
    customer = service.create_key(["dns"])
    attempts = scaled(60, 600)
    # From ten addresses, so that the key ids themselves get throttled (one address
    # alone is slowed down after 5 wrong guesses, whatever key ids it tries).
    sources = [f"127.0.0.{3 + i}" for i in range(10)]
    attacker: Counter[int] = Counter()
    retry_after: set[int] = set()
    holder: Counter[int] = Counter()
    started = time.monotonic()
    bad = {ip: client_from(ip) for ip in sources}
    try:
        with client_from(HOLDER) as good:
            for i in range(attempts):
                victim = rs_key[0] if i % 2 else customer[0]
                r = bad[sources[i % len(sources)]].post(
                    service.base_url + "/login",
                    data={"grant_type": "client_credentials"},
                    auth=(victim, remember_secret(secrets.token_urlsafe(32))),
                )
                attacker[r.status_code] += 1
                if r.status_code == 429:
                    retry_after.add(int(r.headers["retry-after"]))
                if i % 5 == 4:
                    # The customer logs in with the right secret, and the resource server
                    # (whose key is under attack) introspects the new token.
                    token = _holder_token(service, customer)
                    r = good.get(rs.base_url + "/dns/zones", headers=bearer(token))
                    holder[r.status_code] += 1
    finally:
        for c in bad.values():
            c.close()
    took = time.monotonic() - started
    assert attacker == {401: 10, 429: attempts - 10}, attacker  # 5 per key id
    assert retry_after and all(1 <= s <= 60 for s in retry_after)
    assert holder == {200: attempts // 5}, holder
    record(
        "attacks.throttle",
        attack="wrong secrets for the resource server's key id and a customer's, "
        f"from {len(sources)} addresses",
        sent=attempts,
        connections=len(sources),
        seconds=round(took, 1),
        attacker_statuses=dict(attacker),
        holder_logins_and_uses=attempts // 5,
        holder_lockouts=sum(holder.values()) - holder[200],
    )


# -- C: someone who copied a token keeps sending it from elsewhere ---------------------
@pytest.mark.parametrize("backend", ["introspection", "sqlite-store"])
def test_keep_alive_attack_lets_the_token_expire(
    backend: str, service: LiveService, servers: dict[str, ExampleServer]
) -> None:
    rs = servers[backend]
    key = service.create_key(["dns"])
    token = _holder_token(service, key)
    digest = token_digest(token)
    store = SQLiteStore(service.store_url)
    attacker: Counter[int] = Counter()
    try:
        with client_from(HOLDER) as c:
            assert c.get(rs.base_url + "/dns/zones", headers=bearer(token)).status_code == 200
        last_use = time.time()
        seen_expiry = 0.0
        with client_from(ATTACKER) as c:
            while time.time() - last_use < TOKEN_TTL + TOUCH + 0.5:
                attacker[c.get(rs.base_url + "/dns/zones", headers=bearer(token)).status_code] += 1
                rec = store.get_token(digest, time.time())  # a read, not a use
                if rec is not None:
                    seen_expiry = max(seen_expiry, rec.expires_at)
                time.sleep(0.1)
        assert store.get_token(digest, time.time()) is None
    finally:
        store.close()
    with client_from(HOLDER) as c:
        assert c.get(rs.base_url + "/dns/zones", headers=bearer(token)).status_code == 401
    lapse = seen_expiry - last_use
    assert attacker == {401: sum(attacker.values())}, attacker
    assert lapse <= TOKEN_TTL + TOUCH, lapse
    record(
        f"attacks.keep_alive.{backend}",
        attack="the holder's token from another address every 100 ms after its last use",
        sent=sum(attacker.values()),
        connections=1,
        seconds=round(TOKEN_TTL + TOUCH + 0.5, 1),
        expires_in_s=TOKEN_TTL,
        touch_s=TOUCH,
        expired_after_last_use_s=round(lapse, 2),
    )


# -- K: the same token every 20 ms from elsewhere, while the holder uses it ------------
@pytest.mark.parametrize("backend", ["introspection", "sqlite-store"])
def test_refresh_starvation_attack(
    backend: str, service: LiveService, servers: dict[str, ExampleServer]
) -> None:
    rs = servers[backend]
    key = service.create_key(["dns"])
    token = _holder_token(service, key)
    duration = scaled(5, 30)
    stop = threading.Event()
    attacker: Counter[int] = Counter()

    def attack() -> None:
        with client_from(ATTACKER) as c:
            while not stop.is_set():
                attacker[c.get(rs.base_url + "/dns/zones", headers=bearer(token)).status_code] += 1
                time.sleep(0.02)

    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    holder: Counter[int] = Counter()
    started = time.monotonic()
    try:
        with client_from(HOLDER) as c:
            while time.monotonic() - started < duration:
                holder[c.get(rs.base_url + "/dns/zones", headers=bearer(token)).status_code] += 1
                time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert holder == {200: sum(holder.values())}, holder
    assert attacker == {401: sum(attacker.values())}, attacker
    record(
        f"attacks.refresh_starvation.{backend}",
        attack="the holder's token from another address every 20 ms while the holder "
        "uses it every 200 ms",
        sent=sum(attacker.values()),
        connections=1,
        seconds=duration,
        expires_in_s=TOKEN_TTL,
        holder_requests=sum(holder.values()),
        holder_200=holder[200],
        lapses=sum(holder.values()) - holder[200],
    )


# -- D: log injection ----------------------------------------------------------------
FORGED = "FORGED refused 200 ok"


def test_log_injection_forges_no_line(service: LiveService, rs_key: tuple[str, str]) -> None:
    rs = resource_server(_introspection_env(service, rs_key, RELIABILITY_LOG="1"))
    paths = ["/dns/zones%0A", "/x%0D%0A", "/x%E2%80%A8", "/x%C2%85", "/x%0B%0C", "/x%1B[2K%0D"]
    sent = 0
    try:
        with client_from(ATTACKER) as c:
            for p in paths:
                for token in ("/" * 60, None):
                    headers = bearer(token) if token else {}
                    url = rs.base_url + p + FORGED.replace(" ", "%20")
                    assert c.get(url, headers=headers).status_code in (401, 404)
                    sent += 1
    finally:
        out = rs.stop()
    lines = out.splitlines()
    forged = [line for line in lines if line.startswith("FORGED")]
    escaped = [line for line in lines if "FORGED" in line]
    assert len(escaped) == sent  # every request made its one refusal line...
    assert forged == []  # ...and none of them started a line of its own
    record(
        "attacks.log_injection",
        attack="paths with %0A, %0D%0A, U+2028, U+0085, VT/FF and ESC before a fake log line",
        sent=sent,
        connections=1,
        refusal_lines=len(escaped),
        forged_lines=len(forged),
    )


# -- H: the files the service created --------------------------------------------------
def test_stored_files_are_private(service: LiveService) -> None:
    db = Path(sqlite_path(service.store_url))
    login(service.base_url, *service.create_key(["dns"]))  # the WAL is in use
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert modes == {f.name: "0o600" for f in files}
    record(
        "attacks.stored_files",
        attack="bearerguard serve --store sqlite:///… (umask 022) creates its files",
        files=len(files),
        modes=sorted(set(modes.values())),
    )
