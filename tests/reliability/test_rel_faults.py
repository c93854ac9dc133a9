"""Faults with real processes: the auth service, redis-server and SQLite under load.

Every answer under load is checked against what is right for its token at that moment:
nothing is let in without a valid token, nothing answers 500, outages answer 503 with
Retry-After or are served from the cache as DESIGN.md documents.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from pathlib import Path

from reliability_support import (
    Hammer,
    Planned,
    bearer,
    client_from,
    introspect,
    login,
    record,
    resource_server,
    revoke,
    scaled,
    token_for,
    wait_until,
)

from bearerguard.stores import open_store
from bearerguard.stores.base import new_token
from helpers import remember_secret
from integration_support import gunicorn_example, uvicorn_example
from live_service import LiveService
from redis_server import RedisServer

BREAKER_RESET = 2.0


def _unknown() -> str:
    return remember_secret(secrets.token_urlsafe(32))


def _get(base: str, token: str, path: str = "/dns/zones", source: str = "127.0.0.1") -> int:
    with client_from(source, timeout=15.0) as c:
        return c.get(base + path, headers=bearer(token)).status_code


def test_auth_service_killed_mid_load_introspection() -> None:
    """Kill -9 the auth service under load, restart it: no wrong answer, recovery in time."""
    with LiveService() as svc:
        rs_id, rs_secret = svc.create_key(["dns"], introspect=True)
        key_id, secret = svc.create_key(["dns"])
        vps_id, vps_secret = svc.create_key(["vps"])
        cached = token_for(svc.base_url, key_id, secret)
        wrong_api = token_for(svc.base_url, vps_id, vps_secret)
        revoked = token_for(svc.base_url, key_id, secret)
        assert revoke(svc.base_url, key_id, secret, revoked).status_code == 200
        # Valid tokens nobody has used yet: the outage must answer 503 for them.
        fresh = [token_for(svc.base_url, key_id, secret) for _ in range(8)]
        env = {
            "BEARERGUARD_INTROSPECTION_URL": svc.base_url + "/introspect",
            "BEARERGUARD_CLIENT_ID": rs_id,
            "BEARERGUARD_CLIENT_SECRET": rs_secret,
            "RELIABILITY_BREAKER_RESET": str(BREAKER_RESET),
            # Long enough that the token used before the outage stays cached through it.
            "RELIABILITY_CACHE_TTL": "60",
        }
        app = resource_server(env)
        try:
            assert _get(app.base_url, cached) == 200
            plan = [
                Planned("cached", "/dns/zones", bearer(cached), frozenset({200})),
                Planned("wrong_api", "/dns/zones", bearer(wrong_api), frozenset({403, 503})),
                Planned("revoked", "/dns/zones", bearer(revoked), frozenset({401, 503})),
                Planned("unknown", "/dns/zones", bearer(_unknown()), frozenset({401, 503})),
                # A new random token each time: always a backend call (breaker traffic).
                Planned(
                    "unknown_new",
                    "/dns/zones",
                    {},
                    frozenset({401, 503}),
                    make=lambda: bearer(_unknown()),
                ),
                Planned("none", "/dns/zones", {}, frozenset({401})),
                Planned(
                    "malformed", "/dns/zones", {"Authorization": "Bearer a b"}, frozenset({400})
                ),
            ]
            hammer = Hammer(app.base_url, plan, clients=4).start()
            time.sleep(scaled(1, 5))
            assert svc.proc is not None
            svc.proc.kill()  # SIGKILL: no goodbye
            svc.stop()
            t_kill = time.monotonic()
            outage: list[int] = []
            with client_from(timeout=15.0) as c:
                for tok in fresh[:6]:
                    r = c.get(app.base_url + "/dns/zones", headers=bearer(tok))
                    outage.append(r.status_code)
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"].isdigit()
                    assert r.json()["error"] == "temporarily_unavailable"
            time.sleep(max(0.0, scaled(2, 10) - (time.monotonic() - t_kill)))
            svc.start()
            t_up = time.monotonic()
            later = fresh[6:]
            recovery = wait_until(lambda: _get(app.base_url, later[0]) == 200, BREAKER_RESET + 20)
            assert recovery is not None, "no recovery after the auth service came back"
            # One breaker interval (plus the time a loaded machine needs to answer).
            assert recovery <= BREAKER_RESET + 5, recovery
            t_ok = time.monotonic()
            time.sleep(scaled(2, 5))
            result = hammer.stop()
        finally:
            app.stop()
        wrong = result.wrong(plan)
        assert not wrong, wrong[:10]
        assert all(o.retry_after for o in result.outcomes if o.status == 503)
        # After recovery (plus slack for requests already under way), every answer is the
        # steady one: no more 503.
        late_503 = [o for o in result.outcomes if o.at > t_ok + 1.0 and o.status == 503]
        assert not late_503, late_503[:5]
        counts = result.statuses()
        record(
            "faults.auth_service_kill",
            requests=result.total + len(outage),
            faults=1,
            outage_s=round(t_up - t_kill, 2),
            answered_503=sum(n for (k, s), n in counts.items() if s == 503),
            cached_200_during_outage=sum(
                1 for o in result.outcomes if o.kind == "cached" and t_kill <= o.at <= t_up
            ),
            recovery_s=round(recovery, 2),
            breaker_reset_s=BREAKER_RESET,
            wrong=len(wrong),
        )


def test_redis_killed_under_load_store_mode_and_service() -> None:
    """redis-server stopped and restarted (empty: no persistence) under load."""
    with RedisServer() as redis_srv, LiveService(redis_srv.url) as svc:
        key_id, secret = svc.create_key(["dns"])
        intro_id, intro_secret = svc.create_key(["dns"], introspect=True)
        cached = token_for(svc.base_url, key_id, secret)
        revoked = token_for(svc.base_url, key_id, secret)
        assert revoke(svc.base_url, key_id, secret, revoked).status_code == 200
        app = uvicorn_example({"BEARERGUARD_STORE": redis_srv.url})
        try:
            assert _get(app.base_url, cached) == 200
            plan = [
                # After the restart Redis has forgotten it: 401 is then the right answer.
                Planned("cached", "/dns/zones", bearer(cached), frozenset({200, 401})),
                Planned("revoked", "/dns/zones", bearer(revoked), frozenset({401, 503})),
                Planned("unknown", "/dns/zones", bearer(_unknown()), frozenset({401, 503})),
                Planned("none", "/dns/zones", {}, frozenset({401})),
            ]
            hammer = Hammer(app.base_url, plan, clients=4).start()
            logins = {"before": 0, "outage": 0, "after": 0}
            # Phase A, Redis up: each token /login returns works at once.
            for _ in range(scaled(5, 30)):
                tok = token_for(svc.base_url, key_id, secret)
                assert _get(app.base_url, tok) == 200
                logins["before"] += 1
            redis_srv.stop()
            t_kill = time.monotonic()
            # Phase B, Redis down: /login and /introspect answer 503, never a token.
            for _ in range(scaled(5, 30)):
                r = login(svc.base_url, key_id, secret)
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "temporarily_unavailable"
                assert "access_token" not in r.text
                assert r.headers["retry-after"].isdigit()
                logins["outage"] += 1
            r = introspect(svc.base_url, intro_id, intro_secret, cached)
            assert r.status_code == 503
            # Shaped like a real token: over a store the middleware refuses junk with
            # 401 before any lookup (token_format), and this one must be looked up.
            unseen = remember_secret(new_token())
            assert _get(app.base_url, unseen) == 503
            time.sleep(max(0.0, scaled(1, 5) - (time.monotonic() - t_kill)))
            redis_srv.start()  # same port, empty dataset
            t_up = time.monotonic()
            # Phase C: Redis kept nothing, so the old key is unknown now (honestly 401,
            # not a token that would fail later); a new key's tokens all work.
            r = login(svc.base_url, key_id, secret)
            assert r.status_code == 401, r.text
            assert r.json()["error"] == "invalid_client"
            new_id, new_secret = svc.create_key(["dns"])
            fresh: list[str] = []
            for _ in range(scaled(5, 30)):
                tok = token_for(svc.base_url, new_id, new_secret)
                assert _get(app.base_url, tok) == 200
                fresh.append(tok)
                logins["after"] += 1
            # The cached token is gone from Redis: refused once the cache asks again
            # (touch interval, 5 s by default).
            assert wait_until(lambda: _get(app.base_url, cached) == 401, 15) is not None
            # The invalidation subscription has reconnected: a revocation made now
            # evicts the middleware's cache within 1 s (G3), long before its TTL.
            wait_until(lambda: time.monotonic() - t_up > 2.5, 5)
            victim = fresh[-1]
            assert _get(app.base_url, victim) == 200  # cached now
            assert revoke(svc.base_url, new_id, new_secret, victim).status_code == 200
            evicted = wait_until(lambda: _get(app.base_url, victim) == 401, 5, step=0.01)
            assert evicted is not None and evicted <= 1.0, evicted
            # A key revocation (through the CLI, another process) too.
            other = fresh[0]
            assert _get(app.base_url, other) == 200
            assert svc.revoke_key(new_id)
            key_evicted = wait_until(lambda: _get(app.base_url, other) == 401, 5, step=0.01)
            assert key_evicted is not None and key_evicted <= 1.0, key_evicted
            result = hammer.stop()
        finally:
            app.stop()
        wrong = result.wrong(plan)
        assert not wrong, wrong[:10]
        assert all(o.retry_after for o in result.outcomes if o.status == 503)
        record(
            "faults.redis_restart",
            requests=result.total + sum(logins.values()),
            faults=1,
            logins=logins,
            outage_s=round(t_up - t_kill, 2),
            revocation_evicted_s=round(evicted, 3),
            key_revocation_evicted_s=round(key_evicted, 3),
            wrong=len(wrong),
        )


def test_sqlite_two_services_two_middlewares_one_file() -> None:
    """Concurrent issue / use / introspect / revoke over one SQLite file, 4 processes."""
    ttl = 3.0
    with tempfile.TemporaryDirectory(prefix="bearerguard-rel-") as tmp:
        url = "sqlite:///" + str(Path(tmp) / "shared.db")
        with LiveService(url, token_ttl=ttl) as svc_a, LiveService(url, token_ttl=ttl) as svc_b:
            store = open_store(url)
            try:
                key, secret = store.create_key(["dns"])
                rs, rs_secret = store.create_key(["dns"], introspect=True)
            finally:
                store.close()
            remember_secret(secret)
            remember_secret(rs_secret)
            env = {"BEARERGUARD_STORE": url}
            mw1 = uvicorn_example(env)
            mw2 = gunicorn_example(env)
            services = [svc_a.base_url, svc_b.base_url]
            mws = [mw1.base_url, mw2.base_url]
            problems: list[str] = []
            counts = {"logins": 0, "uses": 0, "introspections": 0, "revocations": 0, "keeper": 0}
            lock = threading.Lock()
            stop = threading.Event()
            kid = key.key_id

            def note(what: str, n: int = 1) -> None:
                with lock:
                    counts[what] += n

            def churn(seed: int) -> None:
                i = seed
                try:
                    with client_from(timeout=15.0) as c:
                        while not stop.is_set():
                            i += 1
                            issuer, other = services[i % 2], services[(i + 1) % 2]
                            r = c.post(
                                issuer + "/login",
                                data={"grant_type": "client_credentials"},
                                auth=(kid, secret),
                            )
                            note("logins")
                            if r.status_code != 200:
                                problems.append(f"login {r.status_code}")
                                continue
                            tok = remember_secret(r.json()["access_token"])
                            used, unused = mws[i % 2], mws[(i + 1) % 2]
                            s = c.get(used + "/dns/zones", headers=bearer(tok)).status_code
                            note("uses")
                            if s != 200:
                                problems.append(f"use {s}")
                            r = c.post(
                                other + "/introspect",
                                data={"token": tok},
                                auth=(rs.key_id, rs_secret),
                            )
                            note("introspections")
                            if r.status_code != 200 or r.json().get("active") is not True:
                                problems.append(f"introspect {r.status_code} {r.text[:80]}")
                            r = c.post(other + "/revoke", data={"token": tok}, auth=(kid, secret))
                            note("revocations")
                            if r.status_code != 200:
                                problems.append(f"revoke {r.status_code}")
                            r = c.post(
                                issuer + "/introspect",
                                data={"token": tok},
                                auth=(rs.key_id, rs_secret),
                            )
                            if r.status_code != 200 or r.json().get("active") is not False:
                                problems.append(f"revoked but {r.status_code} {r.text[:80]}")
                            # Never used at this middleware, so nothing cached: refused.
                            s = c.get(unused + "/dns/zones", headers=bearer(tok)).status_code
                            note("uses")
                            if s != 401:
                                problems.append(f"revoked token answered {s}")
                except BaseException as exc:
                    problems.append(repr(exc))

            # Sliding expiry under concurrent extension by four processes: a token used
            # every half TTL must never expire, whoever extends it.
            keeper_tok = token_for(svc_a.base_url, kid, secret)

            def keeper() -> None:
                i = 0
                try:
                    with client_from(timeout=15.0) as c:
                        while not stop.is_set():
                            i += 1
                            if i % 2:
                                s = c.get(
                                    mws[i // 2 % 2] + "/dns/zones", headers=bearer(keeper_tok)
                                ).status_code
                                ok = s == 200
                            else:
                                r = c.post(
                                    services[i // 2 % 2] + "/introspect",
                                    data={"token": keeper_tok},
                                    auth=(rs.key_id, rs_secret),
                                )
                                ok = r.status_code == 200 and r.json().get("active") is True
                            note("keeper")
                            if not ok:
                                problems.append(f"keeper token refused at step {i}")
                            stop.wait(ttl / 4)
                except BaseException as exc:
                    problems.append(repr(exc))

            threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
            threads.append(threading.Thread(target=keeper))
            started = time.monotonic()
            try:
                for t in threads:
                    t.start()
                time.sleep(scaled(9, 60))  # three token lifetimes at least
                stop.set()
                for t in threads:
                    t.join(timeout=60)
                elapsed = time.monotonic() - started
                outputs = mw1.stop() + mw2.stop()
            finally:
                stop.set()
                mw1.stop()
                mw2.stop()
        outputs += svc_a.output + svc_b.output
        assert not any(t.is_alive() for t in threads)
        assert not problems, problems[:10]
        assert "database is locked" not in outputs
        assert "Traceback" not in outputs
        assert counts["keeper"] >= 8
        record(
            "faults.sqlite_shared_file",
            requests=sum(counts.values()),
            processes=4,
            seconds=round(elapsed, 1),
            token_ttl_s=ttl,
            keeper_uses=counts["keeper"],
            wrong=len(problems),
            **{k: v for k, v in counts.items() if k != "keeper"},
        )
