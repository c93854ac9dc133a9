"""The auth service itself: /login and /introspect under load, and where its time goes.

Loopback (``python -m bench --loopback``): ``bearerguard serve`` runs once over a temp
SQLite file and once over a throw-away redis-server, next to bare uvicorn serving a
Starlette app whose POST /login and /introspect answer the same-shaped JSON with no
store (`bench.loopback_apps:auth_bare`). A key with the introspection right is made
with ``bearerguard keys create``, one token is obtained via /login for the /introspect
runs, every answer is checked (login 200 with a token, introspect 200 ``active: true``,
a wrong secret 401) before timing, and wrk drives each endpoint with `auth_post.lua`
(form POST + HTTP Basic; the credentials reach wrk through its environment only).
All the servers are loaded at the same time (one wrk each, the servers sharing one
core), one endpoint after the other in a shuffled order, repeated; each run is divided by
the bare server's run beside it, and the median req/s and ratio reported; wrk's non-2xx
count is kept for every run.

Profile (in-process, no network): `create_app(open_store(url))` is called through
``httpx.AsyncClient(transport=ASGITransport(...))`` for a few thousand /login and
/introspect requests per store under cProfile; the top functions by own and by
cumulative time are reported in µs per request, next to the same loop timed without
the profiler and the store calls timed alone.
"""

from __future__ import annotations

import asyncio
import base64
import cProfile
import json
import os
import pstats
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench import servers
from bench.loopback import ensure_wrk
from bench.profile import profile_rows

LUA = Path(__file__).resolve().parent / "auth_post.lua"
STORES = ("sqlite", "redis")
ENDPOINTS = ("login", "introspect")
PEER = ("127.0.0.1", 5000)


# -- helpers ---------------------------------------------------------------------------


def _basic(key_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


def _create_key(url: str) -> tuple[str, str]:
    """`bearerguard keys create --api dns --introspect --json`; (key_id, secret)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bearerguard",
            "keys",
            "create",
            "--api",
            "dns",
            "--introspect",
            "--json",
            "--store",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(servers.ROOT),
    )
    if out.returncode != 0:
        raise RuntimeError(f"keys create failed: {out.stderr.strip()[-300:]}")
    data = json.loads(out.stdout)
    return str(data["key_id"]), str(data["secret"])


def _serve(
    url: str,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    *,
    runner: list[str] | None = None,
) -> tuple[servers.Proc, int]:
    """`bearerguard serve` over `url` on a free port; `runner` replaces ``-m bearerguard``
    (``["-m", "bench.auth_profiled", STATS]`` profiles the worker)."""
    port = servers.free_port()
    # fmt: off
    argv = [
        sys.executable, *(runner or ["-m", "bearerguard"]), "serve",
        "--host", servers.HOST, "--port", str(port), "--store", url, *(extra or []),
    ]
    # fmt: on
    return servers.Proc(argv, env=env), port


def _check_login(r: httpx.Response, who: str) -> str:
    body = r.json() if r.status_code == 200 else {}
    token = body.get("access_token")
    if r.status_code != 200 or not isinstance(token, str) or body.get("token_type") != "bearer":
        raise RuntimeError(f"{who}: /login answered {r.status_code}, not 200 with a token")
    return token


def _check_introspect(r: httpx.Response, who: str, key_id: str | None) -> None:
    body = r.json() if r.status_code == 200 else {}
    if r.status_code != 200 or body.get("active") is not True:
        raise RuntimeError(f"{who}: /introspect answered {r.status_code}, not active:true")
    if key_id is not None and (body.get("client_id") != key_id or body.get("scope") != "dns"):
        raise RuntimeError(f"{who}: /introspect named the wrong key or scope")


def _wrk(
    wrk: str,
    url: str,
    authz: str,
    body: str,
    seconds: float,
    threads: int,
    conns: int,
    pin: int | None = None,
) -> dict[str, Any]:
    env = dict(os.environ, BENCH_AUTHZ=authz, BENCH_BODY=body)
    out = subprocess.run(
        [
            *(["taskset", "-c", str(pin)] if pin is not None else []),
            wrk,
            f"-t{threads}",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(LUA),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        env=env,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = re.search(r"(\d+) requests in", out)
    latency = re.search(r"Latency\s+(\S+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "latency_avg": latency.group(1) if latency else "",
        "socket_errors": errors.group(0) if errors else "",
    }


# -- loopback ----------------------------------------------------------------------------


def run_loopback(
    *,
    seconds: float = 3.0,
    reps: int = 3,
    threads: int = 2,
    conns: int = 16,
    install: bool = False,
    variants: dict[str, tuple[str, list[str]]] | None = None,
    baseline: str | None = None,
    pin: bool = False,
) -> dict[str, Any]:
    """Serve the auth service over SQLite and Redis and bare uvicorn; load all of them.

    `variants` (name -> (store, extra ``serve`` arguments)) adds runs of other settings;
    by default each store once more with the key cache off (``--key-cache-ttl 0``).
    `baseline` (a checkout of another commit) adds each store served by that checkout's
    ``src`` ("sqlite-base", "redis-base"): a change measured against its parent in the
    same interleaved run. With `pin`, every server runs on CPU 1 and wrk on CPU 0.

    All the servers are loaded at the same time, one endpoint at a time, each by its own
    wrk (`_together`): a run is divided by the bare run it shared the core with, and a
    row reports the median of those ratios and their spread.
    """
    if variants is None:
        # The key cache's share, measured beside it.
        variants = {f"{s}-nocache": (s, ["--key-cache-ttl", "0"]) for s in STORES}
    variants = {s: (s, []) for s in STORES} | variants
    if baseline is not None:
        variants |= {f"{s}-base": (s, []) for s in STORES}
    wrk_cpu = 0 if pin else None
    wrk = ensure_wrk(install)
    if wrk is None:
        return {"unavailable": "wrk is not installed (apt-get install wrk)"}
    tmp = Path(tempfile.mkdtemp(prefix="bearerguard-bench-auth-"))
    redis: servers.RedisServer | None = None
    procs: list[servers.Proc] = []
    # name -> (base URL, {endpoint: (authorization header, body)})
    targets: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {}
    pids: dict[str, int] = {}  # the server process of each target
    result: dict[str, Any] = {
        "client": f"wrk -t{threads} -c{conns} -s bench/auth_post.lua for each server",
        "together": True,
        "seconds_per_run": seconds,
        "reps": reps,
        "servers": "`bearerguard serve` (uvicorn, 1 process, default log level info) "
        "vs bare uvicorn 1 worker serving bench.loopback_apps:auth_bare; floor_redis: "
        "bench.auth_floor:app, bare plus one redis-py call a request",
        "pinned": "servers on CPU 1, wrk on CPU 0" if pin else "no",
    }
    try:
        redis = servers.RedisServer()
        urls = {"redis": redis.url}
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            for store, (kind, extra) in variants.items():
                # Loaded at the same time, two services on one SQLite file would wait on
                # each other's writes: each SQLite variant has a file of its own.
                url = urls[kind] if kind == "redis" else f"sqlite:///{tmp / store}.db"
                key_id, secret = _create_key(url)
                env = None
                if store.endswith("-base") and baseline is not None:
                    env = {"PYTHONPATH": str(Path(baseline) / "src")}
                proc, port = _serve(url, extra, env)
                procs.append(proc)
                base = f"http://{servers.HOST}:{port}"
                servers.wait_http(proc, base + "/health")
                authz = _basic(key_id, secret)
                hdr = {"Authorization": authz}
                form = {"grant_type": "client_credentials"}
                token = _check_login(client.post(base + "/login", data=form, headers=hdr), store)
                _check_introspect(
                    client.post(base + "/introspect", data={"token": token}, headers=hdr),
                    store,
                    key_id,
                )
                wrong = {"Authorization": _basic(key_id, "not-the-secret")}
                if client.post(base + "/login", data=form, headers=wrong).status_code != 401:
                    raise RuntimeError(f"{store}: a wrong secret did not get 401")
                targets[store] = (
                    base,
                    {
                        "login": (authz, "grant_type=client_credentials"),
                        "introspect": (authz, "token=" + token),
                    },
                )
            proc, port = servers.uvicorn(
                "bench.loopback_apps:auth_bare", env={"BENCH_TOKEN": "unused"}
            )
            procs.append(proc)
            base = f"http://{servers.HOST}:{port}"
            servers.wait_http(proc, base + "/login")
            anyone = _basic("key_bench", "bench")
            bare_hdr = {"Authorization": anyone}
            r = client.post(base + "/login", data={"grant_type": "client_credentials"})
            _check_login(r, "bare")
            r = client.post(base + "/introspect", data={"token": "x"}, headers=bare_hdr)
            _check_introspect(r, "bare", None)
            targets["bare"] = (
                base,
                {
                    "login": (anyone, "grant_type=client_credentials"),
                    "introspect": (anyone, "token=" + "x" * 43),
                },
            )
            # The floor of the Redis rows: bare plus one redis-py round trip a request.
            proc, port = servers.uvicorn(
                "bench.auth_floor:app", env={"BENCH_REDIS_URL": urls["redis"]}
            )
            procs.append(proc)
            base = f"http://{servers.HOST}:{port}"
            servers.wait_http(proc, base + "/login")
            _check_login(
                client.post(base + "/login", data={"grant_type": "client_credentials"}),
                "redis floor",
            )
            targets["floor_redis"] = (base, targets["bare"][1])
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {
            (name, ep): [] for name in targets for ep in ENDPOINTS
        }
        pids = dict(zip(targets, (p.pid for p in procs), strict=True))
        if pin:
            for p in procs:
                servers.pin(p.pid, {1})
        rng = random.Random(61)
        for rep in range(reps):
            order = list(ENDPOINTS)
            rng.shuffle(order)
            for ep in order:
                if rep == 0:  # warm up: one short run, not counted
                    _together(wrk, targets, pids, ep, 1.0, threads, conns, wrk_cpu)
                got = _together(wrk, targets, pids, ep, seconds, threads, conns, wrk_cpu)
                for name, run in got.items():
                    runs[(name, ep)].append(run)
            print(f"  auth service rep {rep + 1}/{reps}", file=sys.stderr, flush=True)
        # The answers are still right after the load (the token slid, not expired).
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            for store in variants:
                base, eps = targets[store]
                authz, body = eps["introspect"]
                r = client.post(
                    base + "/introspect",
                    content=body,
                    headers={
                        "Authorization": authz,
                        "Content-Type": "application/x-www-form-urlencoded",
                    },
                )
                _check_introspect(r, f"{store} after load", None)
    except Exception as exc:
        tails = [p.tail()[-300:] for p in procs]
        return dict(result, unavailable=f"{type(exc).__name__}: {exc}", logs=tails)
    finally:
        for p in procs:
            p.stop()
        if redis is not None:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for ep in ENDPOINTS:
        bares = [r["rps"] for r in runs[("bare", ep)]]
        bare_cpu = statistics.median(r["cpu_us"] for r in runs[("bare", ep)])
        for name in ("bare", "floor_redis", *variants):
            rs = runs[(name, ep)]
            med = statistics.median(r["rps"] for r in rs)
            ratios = [r["rps"] / b for r, b in zip(rs, bares, strict=True) if b]
            rows.append(
                {
                    "endpoint": ep,
                    "server": name,
                    "rps_median": med,
                    "rps_runs": [r["rps"] for r in rs],
                    "latency_avg": [r["latency_avg"] for r in rs],
                    "requests": sum(r["requests"] for r in rs),
                    "non_2xx": sum(r["non_2xx"] for r in rs),
                    "socket_errors": [r["socket_errors"] for r in rs if r["socket_errors"]],
                    "ratio_runs": ratios,
                    # Server CPU per request (all its threads; not Redis's): steadier
                    # than req/s on a shared machine. bare's ÷ this is the req/s ratio
                    # the server would reach with a core of its own, CPU-bound.
                    "cpu_us_runs": [r["cpu_us"] for r in rs],
                    "cpu_us_median": statistics.median(r["cpu_us"] for r in rs),
                    "cpu_ratio": bare_cpu / statistics.median(r["cpu_us"] for r in rs),
                    "ratio_to_bare": statistics.median(ratios) if ratios else None,
                    "ratio_spread": [min(ratios), max(ratios)] if ratios else None,
                }
            )
    result["rows"] = rows
    return result


def _together(
    wrk: str,
    targets: dict[str, tuple[str, dict[str, tuple[str, str]]]],
    pids: dict[str, int],
    ep: str,
    seconds: float,
    threads: int,
    conns: int,
    pin: int | None,
) -> dict[str, dict[str, Any]]:
    """Every server's `ep` loaded at the same time, one wrk each, for `seconds`.

    The servers share one core (pinned) and so meet the same machine: its speed changes
    from second to second by more than what separates them (`bench/loopback.py`).
    """

    def one(name: str) -> dict[str, Any]:
        base, eps = targets[name]
        authz, body = eps[ep]
        return _wrk(wrk, f"{base}/{ep}", authz, body, seconds, threads, conns, pin)

    return servers.at_once({name: pids[name] for name in targets}, one)


# -- profile -----------------------------------------------------------------------------


def _top(prof: cProfile.Profile, n: int, limit: int = 8) -> dict[str, list[dict[str, Any]]]:
    return _top_of(pstats.Stats(prof), n, limit)


def _top_of(stats: pstats.Stats, n: int, limit: int = 8) -> dict[str, list[dict[str, Any]]]:
    rows = profile_rows(stats, n)
    by_own = sorted(rows, key=lambda r: r["tottime_us"], reverse=True)[:limit]
    ours = sorted(
        (r for r in rows if r["ours"] and "bearerguard/cli/" not in r["where"]),
        key=lambda r: r["cumtime_us"],
        reverse=True,
    )
    return {"by_own_time": by_own, "bearerguard_by_cumulative": ours[:limit]}


async def _timed(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await fn()
    return (time.perf_counter_ns() - t0) / n / 1000


def _sync_timed(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n / 1000


async def _store_steps(store: Any, key_id: str, token: str, n: int) -> dict[str, float]:
    """µs per call of the store operations /login and /introspect make, timed alone."""
    from bearerguard.stores import AsyncTokenStore
    from bearerguard.stores.base import TokenRecord, new_token
    from bearerguard.tokens import token_digest

    digest = token_digest(token)

    def record() -> TokenRecord:
        now = time.time()
        return TokenRecord(
            digest=token_digest(new_token()),
            key_id=key_id,
            apis=frozenset({"dns"}),
            bound_ip="127.0.0.1",
            issued_at=now,
            ttl=300.0,
            expires_at=now + 300.0,
        )

    out: dict[str, float] = {}
    if isinstance(store, AsyncTokenStore):
        out["aget_key"] = await _timed(lambda: store.aget_key(key_id), n)
        out["aput_token"] = await _timed(lambda: store.aput_token(record()), n)
        out["atouch_token"] = await _timed(lambda: store.atouch_token(digest, time.time()), n)
    # The sync face, called directly (no event loop, no thread hop).
    out["get_key (sync)"] = _sync_timed(lambda: store.get_key(key_id), n)
    out["put_token (sync)"] = _sync_timed(lambda: store.put_token(record()), n)
    out["touch_token (sync)"] = _sync_timed(lambda: store.touch_token(digest, time.time()), n)
    return out


async def _profile_store(url: str, n: int) -> dict[str, Any]:
    from bearerguard.server import create_app
    from bearerguard.stores import AsyncTokenStore, open_store

    store = open_store(url)
    out: dict[str, Any] = {}
    try:
        record, secret = store.create_key(["dns"], introspect=True)
        app = create_app(store)
        headers = {
            "Authorization": _basic(record.key_id, secret),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        transport = httpx.ASGITransport(app=app, client=PEER)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://auth.bench") as client:
            login_body = b"grant_type=client_credentials"

            async def login() -> httpx.Response:
                return await client.post("/login", content=login_body, headers=headers)

            token = _check_login(await login(), url.split(":")[0])
            intro_body = b"token=" + token.encode()

            async def introspect() -> httpx.Response:
                return await client.post("/introspect", content=intro_body, headers=headers)

            _check_introspect(await introspect(), url.split(":")[0], record.key_id)
            for ep, fn in (("login", login), ("introspect", introspect)):
                for _ in range(100):  # warm up
                    await fn()
                plain = await _timed(fn, n)
                prof = cProfile.Profile()
                prof.enable()
                profiled = await _timed(fn, n)
                prof.disable()
                last = await fn()
                if last.status_code != 200:
                    raise RuntimeError(f"{ep}: HTTP {last.status_code} after the profile")
                out[ep] = {
                    "us_per_request": plain,
                    "us_per_request_profiled": profiled,
                    **_top(prof, n),
                }
            out["store_steps_us"] = await _store_steps(store, record.key_id, token, min(n, 1000))
            out["key_cache_ttl"] = app.state.bearerguard.keys.ttl
    finally:
        if isinstance(store, AsyncTokenStore):
            await store.aclose()
        store.close()
    return out


async def _raw_httpx(n: int) -> float:
    """The floor of the profile's loop: the same client against a Starlette app that
    reads the body and answers a small JSON (what the loop costs without the service)."""
    from bench.loopback_apps import auth_bare

    transport = httpx.ASGITransport(app=auth_bare, client=PEER)
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.bench") as client:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}

        async def call() -> httpx.Response:
            return await client.post("/login", content=b"grant_type=x", headers=headers)

        for _ in range(100):
            await call()
        return await _timed(call, n)


async def profile(n: int = 3000) -> dict[str, Any]:
    """cProfile /login and /introspect in-process over SQLite and Redis."""
    # How the SQLite store's per-request calls run in this code (the report says so).
    out: dict[str, Any] = {"requests": n, "peer": PEER[0], "sqlite_calls": "inline first"}
    tmp = Path(tempfile.mkdtemp(prefix="bearerguard-bench-authprof-"))
    try:
        out["bare_us_per_request"] = await _raw_httpx(n)
        out["sqlite"] = await _profile_store(f"sqlite:///{tmp / 'auth.db'}", n)
        try:
            redis = servers.RedisServer()
        except Exception as exc:
            out["redis"] = {"unavailable": f"{type(exc).__name__}: {exc}"}
        else:
            try:
                out["redis"] = await _profile_store(redis.url, n)
            finally:
                redis.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def served_profile(seconds: float = 3.0, install: bool = False) -> dict[str, Any]:
    """cProfile one ``bearerguard serve`` worker under wrk load, per store and endpoint.

    The server runs under `bench.auth_profiled`; wrk drives one endpoint for `seconds`
    (the same client as `run_loopback`), then the server stops and its stats are read.
    Rows are per request (wrk's count); cProfile inflates small calls, so read them as
    shares of the worker's time, not as absolute costs. Only the event-loop thread and
    the threads it starts are seen (not Redis).
    """
    wrk = ensure_wrk(install)
    if wrk is None:
        return {"unavailable": "wrk is not installed (apt-get install wrk)"}
    tmp = Path(tempfile.mkdtemp(prefix="bearerguard-bench-authsrv-"))
    out: dict[str, Any] = {"client": "wrk -t2 -c16", "seconds": seconds}
    redis: servers.RedisServer | None = None
    try:
        redis = servers.RedisServer()
        urls = {"sqlite": f"sqlite:///{tmp / 'auth.db'}", "redis": redis.url}
        for store in STORES:
            key_id, secret = _create_key(urls[store])
            authz = _basic(key_id, secret)
            for ep in ENDPOINTS:
                stats = tmp / f"{store}-{ep}.prof"
                proc, port = _serve(urls[store], runner=["-m", "bench.auth_profiled", str(stats)])
                try:
                    base = f"http://{servers.HOST}:{port}"
                    servers.wait_http(proc, base + "/health")
                    with httpx.Client(trust_env=False, timeout=10.0) as client:
                        r = client.post(
                            base + "/login",
                            data={"grant_type": "client_credentials"},
                            headers={"Authorization": authz},
                        )
                        token = _check_login(r, store)
                    body = "grant_type=client_credentials" if ep == "login" else "token=" + token
                    _wrk(wrk, f"{base}/{ep}", authz, body, 1.0, 2, 16)  # warm up
                    proc.popen.send_signal(signal.SIGUSR1)  # profiler on
                    time.sleep(0.2)
                    run = _wrk(wrk, f"{base}/{ep}", authz, body, seconds, 2, 16)
                    proc.popen.send_signal(signal.SIGUSR2)  # profiler off
                    time.sleep(0.2)
                finally:
                    proc.stop()
                if not stats.exists() or not run["requests"]:
                    raise RuntimeError(f"{store} /{ep}: no profile ({proc.tail()[-200:]})")
                prof = pstats.Stats(str(stats))
                out.setdefault(store, {})[ep] = {
                    "requests": run["requests"],
                    "rps_profiled": run["rps"],
                    **_top_of(prof, run["requests"]),
                }
    except Exception as exc:
        return dict(out, unavailable=f"{type(exc).__name__}: {exc}")
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_profile(n: int = 3000) -> dict[str, Any]:
    try:
        return asyncio.run(profile(n))
    except Exception as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def _arg(name: str, default: float) -> float:
    return float(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


# python -m bench.authservice [--no-profile] [--served-profile] [--loopback [--reps N] [--seconds S]
#     [--baseline CHECKOUT] [--pin] [--no-variants]]
if __name__ == "__main__":
    res: dict[str, Any] = {}
    if "--no-profile" not in sys.argv:
        res["profile"] = run_profile(1000)
    if "--served-profile" in sys.argv:
        res["served_profile"] = served_profile()
    if "--loopback" in sys.argv:
        reps = int(_arg("--reps", 1))
        base = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None
        res["loopback"] = run_loopback(
            seconds=_arg("--seconds", 2.0),
            reps=reps,
            baseline=base,
            pin="--pin" in sys.argv,
            variants={} if "--no-variants" in sys.argv else None,
        )
    print(json.dumps(res, indent=1))
