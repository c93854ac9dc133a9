"""Faults with real processes: the auth service, redis-server and SQLite under load.

Every answer under load is checked against what is right for its token at that moment:
nothing is let in without a valid token, nothing answers 500, outages answer 503 with
Retry-After or are served from the cache as docs/design.md (R5, G2, G3) documents.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis
from reliability_support import (
    WAIT,
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
from bearerguard.stores.redis import invalidation_channel
from helpers import remember_secret
from integration_support import gunicorn_example, uvicorn_example
from live_service import LiveService
from redis_server import RedisServer

BREAKER_RESET = 2.0
TOUCH_INTERVAL = 5.0  # the examples' default: a hit older than this asks the source


def _unknown() -> str:
    # Shaped like a real token: over a store the middleware refuses junk with 401 before
    # any lookup (token_format), and these must be looked up.
    return remember_secret(new_token())


def _get(base: str, token: str, path: str = "/dns/zones", source: str = "127.0.0.1") -> int:
    with client_from(source, timeout=15.0) as c:
        return c.get(base + path, headers=bearer(token)).status_code


def _phased(
    kind: str,
    headers: dict[str, str],
    phases: dict[str, set[int]],
    path: str = "/dns/zones",
    make: Callable[[], dict[str, str]] | None = None,
) -> Planned:
    table = {name: frozenset(statuses) for name, statuses in phases.items()}
    # While the fault is being made (the process is stopping), either answer is right.
    table["stopping"] = table["before"] | table["outage"]
    return Planned(kind, path, headers, make=make, phases=table)


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
        unknown = _unknown()
        # Valid tokens nobody has used yet: the outage must answer 503 for them.
        fresh = [token_for(svc.base_url, key_id, secret) for _ in range(8)]
        env = {
            "BEARERGUARD_INTROSPECTION_URL": svc.base_url + "/introspect",
            "BEARERGUARD_CLIENT_ID": rs_id,
            "BEARERGUARD_CLIENT_SECRET": rs_secret,
            "RELIABILITY_BREAKER_RESET": str(BREAKER_RESET),
            # Long enough that the tokens used before the outage stay cached through it.
            "RELIABILITY_CACHE_TTL": "60",
        }
        app = resource_server(env)
        hammer: Hammer | None = None
        try:
            # Seen once before the outage: the positive answers are cached from here on.
            assert _get(app.base_url, cached) == 200
            assert _get(app.base_url, wrong_api) == 403
            # What is right in each phase. Unknown and revoked tokens are remembered
            # for the negative TTL only, so in the outage they get 401 or 503; a token
            # never seen must get 503. After the restart the breaker may still be open
            # (503) until its interval has passed; once a valid token has been allowed
            # again ("after"), every answer is the steady one.
            steady = {"before": {200}, "outage": {200}, "recovery": {200}, "after": {200}}
            not_valid = {"before": {401}, "outage": {401, 503}, "recovery": {401, 503}}
            plan = [
                _phased("cached", bearer(cached), steady),
                _phased("wrong_api", bearer(wrong_api), {k: {403} for k in steady}),
                _phased("revoked", bearer(revoked), {**not_valid, "after": {401}}),
                _phased("unknown", bearer(unknown), {**not_valid, "after": {401}}),
                # A new random token each time: always a backend call (breaker traffic).
                _phased(
                    "unknown_new",
                    {},
                    {"before": {401}, "outage": {503}, "recovery": {401, 503}, "after": {401}},
                    make=lambda: bearer(_unknown()),
                ),
                _phased("none", {}, {k: {401} for k in steady}),
                _phased("malformed", {"Authorization": "Bearer a b"}, {k: {400} for k in steady}),
            ]
            t_start = time.monotonic()
            hammer = Hammer(app.base_url, plan, clients=4).start()
            hammer.wait_for(scaled(50, 2000))
            assert svc.proc is not None
            t_kill = time.monotonic()
            svc.proc.kill()  # SIGKILL: no goodbye
            svc.stop()
            t_down = time.monotonic()
            outage: list[int] = []
            with client_from(timeout=15.0) as c:
                for tok in fresh[:6]:
                    r = c.get(app.base_url + "/dns/zones", headers=bearer(tok))
                    outage.append(r.status_code)
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"].isdigit()
                    assert r.json()["error"] == "temporarily_unavailable"
            # The outage lasts until the load has met it: new tokens refused with 503.
            hammer.wait_for(scaled(10, 500), t_kill, kind="unknown_new", status=503)
            t_up = time.monotonic()
            svc.start()
            later = fresh[6:]
            recovery = wait_until(lambda: _get(app.base_url, later[0]) == 200, BREAKER_RESET + 60)
            assert recovery is not None, "no recovery after the auth service came back"
            t_ok = time.monotonic()
            # Long enough after recovery to see that everything is steady again.
            hammer.wait_for(scaled(100, 2000), t_ok)
            result = hammer.stop()
        finally:
            if hammer is not None:
                hammer.halt()
            app.stop()
        timeline = [
            ("before", t_start),
            ("stopping", t_kill),
            ("outage", t_down),
            ("recovery", t_up),
            ("after", t_ok),
        ]
        wrong = result.wrong(plan, timeline)
        counts = result.statuses()
        record(
            "faults.auth_service_kill",
            requests=result.total + len(outage),
            per_phase=result.per_phase(timeline),
            outage_s=round(t_up - t_kill, 2),
            answered_503=sum(n for (k, s), n in counts.items() if s == 503),
            cached_200_during_outage=sum(
                1 for o in result.outcomes if o.kind == "cached" and t_kill <= o.started <= t_up
            ),
            recovery_s=round(recovery, 2),
            breaker_reset_s=BREAKER_RESET,
            wrong=len(wrong),
        )
        assert not wrong, wrong[:10]
        assert all(o.retry_after for o in result.outcomes if o.status == 503)
        # One breaker interval, plus the time a loaded machine needs to answer.
        assert recovery <= BREAKER_RESET + 10, recovery


def _subscribers(url: str) -> int:
    """How many connections listen on the invalidation channel of the Redis at `url`."""
    client = redis.Redis.from_url(url)
    try:
        channel = invalidation_channel()
        return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
    except redis.RedisError:
        return 0
    finally:
        client.close()


def _evicted_within_touch_interval(
    app_url: str, issue: Callable[[], str], kill: Callable[[str], object]
) -> float:
    """Seconds from a revocation to its first 401 at the middleware.

    The token is looked up once just before (so its next refresh at the source is a
    whole touch interval away): a 401 sooner than that came from the invalidation.
    """
    tok = issue()
    with client_from(timeout=15.0) as c:
        looked_up = time.monotonic()
        assert c.get(app_url + "/dns/zones", headers=bearer(tok)).status_code == 200
        assert c.get(app_url + "/dns/zones", headers=bearer(tok)).status_code == 200  # a hit
        kill(tok)
        revoked = time.monotonic()
        evicted = wait_until(
            lambda: c.get(app_url + "/dns/zones", headers=bearer(tok)).status_code == 401,
            TOUCH_INTERVAL,
            step=0.01,
        )
    assert evicted is not None, "not evicted within the touch interval"
    assert revoked + evicted - looked_up < TOUCH_INTERVAL
    return evicted


def _revoke_key(url: str, key_id: str) -> None:
    store = open_store(url)
    try:
        assert store.revoke_key(key_id)
    finally:
        store.close()


def test_redis_killed_under_load_store_mode_and_service() -> None:
    """redis-server stopped and restarted (empty: no persistence) under load."""
    # The service's key cache outlasts the whole run: only the outage empties it (a
    # Redis that failed may come back without the key), so the login after the
    # restart reads the store and is refused however fast the phases go.
    longer = ["--key-cache-ttl", "60"]
    with RedisServer() as redis_srv, LiveService(redis_srv.url, extra_args=longer) as svc:
        key_id, secret = svc.create_key(["dns"])
        intro_id, intro_secret = svc.create_key(["dns"], introspect=True)
        cached = token_for(svc.base_url, key_id, secret)
        revoked = token_for(svc.base_url, key_id, secret)
        assert revoke(svc.base_url, key_id, secret, revoked).status_code == 200
        app = uvicorn_example({"BEARERGUARD_STORE": redis_srv.url})
        hammer: Hammer | None = None
        try:
            assert _get(app.base_url, cached) == 200
            listening = _subscribers(redis_srv.url)
            assert listening >= 1  # the middleware's invalidation subscription
            # What is right in each phase. Redis down: cached tokens answer from the
            # cache, others 503 (or 401 while a negative entry lasts). Restarted empty:
            # until a fresh token has worked through the middleware ("after") its
            # connections may still be failing; Redis has forgotten the cached token, so
            # it gets 401 once the cache asks again, and only 401 once seen ("forgotten").
            plan = [
                _phased(
                    "cached",
                    bearer(cached),
                    {
                        "before": {200},
                        "outage": {200},
                        "reconnect": {200, 401, 503},
                        "after": {200, 401},
                        "forgotten": {401},
                    },
                ),
                *(
                    _phased(
                        kind,
                        bearer(tok),
                        {
                            "before": {401},
                            "outage": {401, 503},
                            "reconnect": {401, 503},
                            "after": {401},
                            "forgotten": {401},
                        },
                    )
                    for kind, tok in (("revoked", revoked), ("unknown", _unknown()))
                ),
                # A new random token each time: always a store lookup.
                _phased(
                    "unknown_new",
                    {},
                    {
                        "before": {401},
                        "outage": {503},
                        "reconnect": {401, 503},
                        "after": {401},
                        "forgotten": {401},
                    },
                    make=lambda: bearer(_unknown()),
                ),
                _phased(
                    "none",
                    {},
                    {k: {401} for k in ("before", "outage", "reconnect", "after", "forgotten")},
                ),
            ]
            t_start = time.monotonic()
            hammer = Hammer(app.base_url, plan, clients=4).start()
            logins = {"before": 0, "outage": 0, "after": 0}
            # Phase A, Redis up: each token /login returns works at once.
            for _ in range(scaled(5, 30)):
                tok = token_for(svc.base_url, key_id, secret)
                assert _get(app.base_url, tok) == 200
                logins["before"] += 1
            hammer.wait_for(scaled(50, 2000))
            t_kill = time.monotonic()
            redis_srv.stop()
            t_down = time.monotonic()
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
            unseen = _unknown()
            assert _get(app.base_url, unseen) == 503
            # The outage lasts until the load has met it.
            hammer.wait_for(scaled(10, 500), t_kill, status=503)
            t_up = time.monotonic()
            redis_srv.start()  # same port, empty dataset
            # Phase C: Redis kept nothing, so the old key is unknown now (honestly 401,
            # not a token that would fail later); a new key's tokens all work.
            r = login(svc.base_url, key_id, secret)
            assert r.status_code == 401, r.text
            assert r.json()["error"] == "invalid_client"
            new_id, new_secret = svc.create_key(["dns"])
            fresh: list[str] = []
            t_after = 0.0
            for _ in range(scaled(5, 30)):
                tok = token_for(svc.base_url, new_id, new_secret)
                assert _get(app.base_url, tok) == 200
                t_after = t_after or time.monotonic()
                fresh.append(tok)
                logins["after"] += 1
            # The cached token is gone from Redis: refused once the cache asks again
            # (touch interval, 5 s by default).
            assert wait_until(lambda: _get(app.base_url, cached) == 401, WAIT) is not None
            t_forgot = time.monotonic()
            # The invalidation subscription reconnects by itself: wait until it has.
            assert wait_until(lambda: _subscribers(redis_srv.url) >= listening, WAIT) is not None
            # A token revocation through the service, then a key revocation straight in
            # the store from this process (the CLI takes seconds to start on a loaded
            # machine, longer than the window), evict the middleware's cache (G3).
            evicted = _evicted_within_touch_interval(
                app.base_url,
                lambda: token_for(svc.base_url, new_id, new_secret),
                lambda tok: revoke(svc.base_url, new_id, new_secret, tok),
            )
            key_evicted = _evicted_within_touch_interval(
                app.base_url,
                lambda: token_for(svc.base_url, new_id, new_secret),
                lambda tok: _revoke_key(redis_srv.url, new_id),
            )
            hammer.wait_for(scaled(50, 2000), t_forgot)
            result = hammer.stop()
        finally:
            if hammer is not None:
                hammer.halt()
            app.stop()
        timeline = [
            ("before", t_start),
            ("stopping", t_kill),
            ("outage", t_down),
            ("reconnect", t_up),
            ("after", t_after),
            ("forgotten", t_forgot),
        ]
        wrong = result.wrong(plan, timeline)
        record(
            "faults.redis_restart",
            requests=result.total + sum(logins.values()),
            per_phase=result.per_phase(timeline),
            logins=logins,
            outage_s=round(t_up - t_kill, 2),
            revocation_evicted_s=round(evicted, 3),
            key_revocation_evicted_s=round(key_evicted, 3),
            wrong=len(wrong),
        )
        assert not wrong, wrong[:10]
        assert all(o.retry_after for o in result.outcomes if o.status == 503)


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
