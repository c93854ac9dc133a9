"""Panel and admin API latency against a real ``bearerguard serve`` (part of ``make bench``).

    .venv/bin/python -m bench.panel [--requests 300] [--keys 10000]

For each store (a SQLite file, a redis-server on loopback) it starts ``bearerguard serve``,
signs an account in, and times sequential requests from one client over keep-alive:
the sign-in page, the keys page (20 keys), a key creation (the "key created" page), and
the admin API's key listing with 10,000 keys in the store (``GET /admin/keys`` with a
``keys create --admin`` token: one page of 500, and, for reference, all 10,000 by
following the ``Link: rel="next"`` pages of 1,000). Targets: panel pages p95 < 50 ms;
the listing < 200 ms. Results: bench/results/panel-latest.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bearerguard.stores import open_store
from bearerguard.stores.accounts import ADMIN_API, new_account
from bench.servers import RedisServer, free_port

RESULTS = Path(__file__).parent / "results" / "panel-latest.json"
PANEL_P95_MS = 50.0
LISTING_MS = 200.0


def _timed(fn: Callable[[], httpx.Response], n: int, expect: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        r = fn()
        samples.append((time.perf_counter() - t) * 1000)
        if r.status_code != expect:
            raise RuntimeError(f"unexpected {r.status_code}: {r.text[:200]}")
    samples.sort()
    return {
        "n": n,
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(0.95 * (n - 1))], 2),
        "max_ms": round(samples[-1], 2),
    }


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _serve(url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEARERGUARD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bearerguard", "serve", "--port", str(port), "--store", url,
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("bearerguard serve did not start")


def run_store(url: str, requests: int, keys: int) -> dict[str, Any]:
    store: Any = open_store(url)
    record, password = new_account("bench", ["dns", "vps"])
    store.create_account(record)
    for i in range(20):
        store.create_key(["dns"], account="bench", name=f"key {i}")
    admin, admin_secret = store.create_key([ADMIN_API])
    t = time.perf_counter()
    for i in range(keys - 21):
        store.create_key(["dns", "vps"], name=f"bulk {i}")
    fill_s = time.perf_counter() - t
    store.close()
    proc, base = _serve(url)
    try:
        with httpx.Client(base_url=base, follow_redirects=False) as c:
            page = c.get("/panel/signin")
            r = c.post(
                "/panel/signin",
                data={"csrf": _csrf(page.text), "account": "bench", "password": password},
            )
            assert r.status_code == 303, r.text
            result: dict[str, Any] = {}
            with httpx.Client(base_url=base) as anon:
                result["signin_page"] = _timed(lambda: anon.get("/panel/signin"), requests, 200)
            result["keys_page"] = _timed(lambda: c.get("/panel/keys"), requests, 200)

            def create() -> httpx.Response:
                token = _csrf(c.get("/panel/keys").text)
                t0 = time.perf_counter()
                r = c.post("/panel/keys", data={"csrf": token, "name": "b", "api": "dns"})
                create.last = (time.perf_counter() - t0) * 1000  # type: ignore[attr-defined]
                return r

            samples = []
            for _ in range(min(requests, 100)):
                assert create().status_code == 200
                samples.append(create.last)  # type: ignore[attr-defined]
            samples.sort()
            result["create_key"] = {
                "n": len(samples),
                "p50_ms": round(statistics.median(samples), 2),
                "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2),
                "max_ms": round(samples[-1], 2),
            }
            token = httpx.post(
                base + "/login",
                data={"grant_type": "client_credentials"},
                auth=(admin.key_id, admin_secret),
            ).json()["access_token"]
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as a:
                result["admin_keys_per_page"] = len(a.get("/admin/keys").json())
                result["admin_list_keys"] = _timed(lambda: a.get("/admin/keys"), 20, 200)

                def walk() -> httpx.Response:
                    url: str | None = "/admin/keys?limit=1000"
                    count = 0
                    while url is not None:
                        r = a.get(url)
                        count += len(r.json())
                        link = r.headers.get("link")
                        url = link[1 : link.index(">")] if link else None
                    walk.count = count  # type: ignore[attr-defined]
                    return r

                result["admin_list_all_keys"] = _timed(walk, 5, 200)
                result["admin_keys_walked"] = walk.count  # type: ignore[attr-defined]
        result["fill_seconds"] = round(fill_s, 1)
        return result
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.panel", description=__doc__)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--keys", type=int, default=10_000)
    args = p.parse_args(argv)
    results: dict[str, Any] = {"requests": args.requests, "keys": args.keys, "stores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        print("panel: SQLite", file=sys.stderr, flush=True)
        results["stores"]["sqlite"] = run_store(
            f"sqlite:///{tmp}/panel.db", args.requests, args.keys
        )
    redis = RedisServer()
    try:
        print("panel: Redis", file=sys.stderr, flush=True)
        results["stores"]["redis"] = run_store(redis.url, args.requests, args.keys)
    finally:
        redis.stop()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    results["commit"] = commit
    results["loadavg"] = os.getloadavg()
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{'store':<8} {'what':<20} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target")
    ok = True
    for store, rows in results["stores"].items():
        for what in (
            "signin_page",
            "keys_page",
            "create_key",
            "admin_list_keys",
            "admin_list_all_keys",
        ):
            row = rows[what]
            if what == "admin_list_all_keys":
                target, passed = "(every page, for reference)", True
            elif what == "admin_list_keys":
                target, passed = f"max < {LISTING_MS:g}", row["max_ms"] < LISTING_MS
            else:
                target, passed = f"p95 < {PANEL_P95_MS:g}", row["p95_ms"] < PANEL_P95_MS
            ok = ok and passed
            print(
                f"{store:<8} {what:<20} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['max_ms']:>8}"
                f"  {target} {'ok' if passed else 'MISSED'}"
            )
    print(f"wrote {RESULTS} (commit {commit}, load {results['loadavg'][0]:.2f})")
    if not ok:
        print("bench.panel: a target was missed (see MISSED above)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
