"""Loopback mode: real servers on 127.0.0.1 under a bounded load (wrk, or httpx).

uvicorn (one worker, --no-proxy-headers) serves bare Starlette, the same app behind
BearerGuardMiddleware, and behind the contract floor (every check bearerguard's cached
path makes, as one function); gunicorn (one sync worker) serves bare Flask and the app
behind WSGIBearerGuard. A control pair, two uvicorn processes of the same bare app, is
measured the same way: what a ratio reads when only the process differs. Every
response must be a 200 (wrk counts non-2xx answers; a run with any is reported as
failed).

The servers of a group (`GROUPS`) are loaded at the same time, each by its own client,
on the same core: the kernel shares the core out evenly, so all of them meet the same
machine. This machine's speed changes by more from one second to the next than
bearerguard costs, so servers loaded one after the other read far apart even when they
are the same (`python -m bench.twins` shows both methods side by side). Each run starts
the group afresh, so the runs sample different processes too; the groups' order is
shuffled.

The server's CPU time (all threads, gunicorn's worker included) is read from /proc
around every run, for CPU µs per request beside req/s.

After its last run, each protected server is loaded once more, alone, while py-spy
samples it (`sample`): the share of its samples in bearerguard's own frames (not the
app it wraps) is what the middleware costs in that server, read without comparing two
runs.

On a machine with two or more cores the servers are pinned to the first core and the
clients to the others (`os.sched_setaffinity`).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import servers

SERVERS = [
    ("uvicorn_starlette", "uvicorn", "bench.loopback_apps:starlette_bare"),
    ("uvicorn_bearerguard", "uvicorn", "bench.loopback_apps:starlette_guarded"),
    ("uvicorn_contract", "uvicorn", "bench.loopback_apps:starlette_contract"),
    ("gunicorn_flask", "gunicorn", "bench.loopback_apps:flask_bare"),
    ("gunicorn_bearerguard", "gunicorn", "bench.loopback_apps:flask_guarded"),
    # The control: two processes of the same bare app, measured as a pair like the others.
    ("uvicorn_twin_a", "uvicorn", "bench.loopback_apps:starlette_bare"),
    ("uvicorn_twin_b", "uvicorn", "bench.loopback_apps:starlette_bare"),
]
# The servers loaded together in one run (the first is the others' baseline).
GROUPS = [
    ["uvicorn_starlette", "uvicorn_bearerguard", "uvicorn_contract"],
    ["gunicorn_flask", "gunicorn_bearerguard"],
    ["uvicorn_twin_a", "uvicorn_twin_b"],
]
BASE = {"uvicorn_bearerguard": "uvicorn_starlette", "gunicorn_bearerguard": "gunicorn_flask"}
# The floor of the uvicorn target: every check bearerguard's cached path makes, as one
# function (`bench.plumbing.ContractFloorMiddleware`), in a real server.
FLOORS = {"uvicorn_contract": "uvicorn_starlette"}
# What a ratio between two servers reads when nothing differs but the process: the
# noise the protected ÷ bare ratios stand in.
TWINS = {"uvicorn_twin_b": "uvicorn_twin_a"}
# The first frame of the app a protected server's middleware wraps, in py-spy's stacks.
WRAPPED = {
    "uvicorn_bearerguard": "starlette/applications.py",
    "gunicorn_bearerguard": "flask/app.py",
}


def cores() -> tuple[set[int], set[int]] | None:
    """(server cores, client cores) when there are two cores to split, else None."""
    try:
        mine = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if len(mine) < 2:
        return None
    return {mine[0]}, set(mine[1:])


def ensure_wrk(install: bool) -> str | None:
    """Path of wrk; with `install`, apt-get it when missing (root only)."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if shutil.which("apt-get") is None:
        return None
    print("bench: installing wrk (apt-get install wrk)", file=sys.stderr)
    try:
        cmd = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(cmd, capture_output=True, timeout=180).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=180)
            subprocess.run(cmd, capture_output=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("wrk")


def _wrk(
    wrk: str, url: str, token: str, seconds: float, conns: int, cpus: set[int] | None = None
) -> dict[str, Any]:
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


async def _httpx_load(url: str, token: str, seconds: float, conns: int) -> dict[str, Any]:
    """Fallback load client: `conns` keep-alive workers for `seconds` seconds."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=conns, keepalive_expiry=4.0)
    done = bad = 0
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=5.0) as client:
        deadline = time.monotonic() + seconds
        t0 = time.monotonic()

        async def worker() -> None:
            nonlocal done, bad
            while time.monotonic() < deadline:
                try:
                    r = await client.get(url, headers=headers)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    continue  # stale keep-alive connection: retry
                done += 1
                bad += r.status_code != 200

        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.monotonic() - t0
    return {"rps": done / elapsed, "requests": done, "non_2xx": bad, "socket_errors": ""}


def run(
    token: str, *, seconds: float = 3.0, reps: int = 3, conns: int = 16, install: bool = False
) -> dict[str, Any]:
    """Load each group's servers at once, `reps` runs of fresh processes; summarise."""
    wrk = ensure_wrk(install)
    split = cores()
    pinned = split is not None and wrk is not None
    result: dict[str, Any] = {
        "client": f"wrk -t1 -c{conns}" if wrk else f"httpx.AsyncClient x{conns}",
        "seconds_per_run": seconds,
        "reps": reps,
        "servers": "uvicorn 1 worker --no-proxy-headers; gunicorn 1 sync worker",
        "together": True,
        "pinned": {"servers": sorted(split[0]), "client": sorted(split[1])}
        if pinned and split is not None
        else None,
    }
    server_cpus, client_cpus = split if pinned and split is not None else (None, None)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in SERVERS}
    sampled: dict[str, Any] = {}
    rng = random.Random(6)
    groups = [list(group) for group in GROUPS]
    for rep in range(reps):
        rng.shuffle(groups)
        for group in groups:
            procs = start_servers(group, token, server_cpus)
            try:
                urls = {name: whoami_url(port) for name, (_, port) in procs.items()}
                pids = {name: proc.pid for name, (proc, _) in procs.items()}
                together(wrk, urls, pids, token, 1.0, conns, client_cpus)  # warm up
                for name, part in together(
                    wrk, urls, pids, token, seconds, conns, client_cpus
                ).items():
                    runs[name].append(part)
                if rep == reps - 1 and wrk:  # httpx would share the server's core
                    for name in set(group) & set(WRAPPED):
                        sampled[name] = sample(
                            wrk, urls[name], token, pids[name], WRAPPED[name], client_cpus
                        )
            finally:
                for proc, _ in procs.values():
                    proc.stop()
        print(f"  loopback rep {rep + 1}/{reps}", file=sys.stderr, flush=True)
    if sampled:
        result["sampled"] = {name: sampled[name] for name in WRAPPED if name in sampled}
    rows = []
    med = {}
    for name, rs in runs.items():
        med[name] = statistics.median(r["rps"] for r in rs)
        rows.append(
            {
                "name": name,
                "rps_median": med[name],
                "rps_runs": [r["rps"] for r in rs],
                "cpu_us_runs": [r["cpu_us"] for r in rs],
                "non_2xx": sum(r["non_2xx"] for r in rs),
                "socket_errors": [r["socket_errors"] for r in rs if r["socket_errors"]],
                "baseline": BASE.get(name) or FLOORS.get(name) or TWINS.get(name),
            }
        )
    cpu = {row["name"]: statistics.median(row["cpu_us_runs"]) for row in rows}
    for row in rows:
        if row["baseline"]:
            row["ratio"] = med[row["name"]] / med[row["baseline"]]
            # The server's CPU per request, bare's ÷ ours: the req/s ratio it would reach
            # CPU-bound on a core of its own.
            if cpu[row["name"]]:
                row["cpu_ratio"] = cpu[row["baseline"]] / cpu[row["name"]]
    result["rows"] = rows
    return result


def whoami_url(port: int) -> str:
    return f"http://{servers.HOST}:{port}/whoami"


def start_servers(
    names: list[str], token: str, cpus: set[int] | None
) -> dict[str, tuple[servers.Proc, int]]:
    """Start the servers `names` (fresh processes), check their answers, pin them."""
    apps = {name: (kind, app) for name, kind, app in SERVERS}
    procs: dict[str, tuple[servers.Proc, int]] = {}
    try:
        for name in names:
            kind, app = apps[name]
            start = servers.uvicorn if kind == "uvicorn" else servers.gunicorn
            procs[name] = start(app, env={"BENCH_TOKEN": token})
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            for name, (proc, port) in procs.items():
                servers.wait_http(proc, whoami_url(port))
                ok = client.get(whoami_url(port), headers={"Authorization": f"Bearer {token}"})
                if ok.status_code != 200:
                    raise RuntimeError(f"{name}: HTTP {ok.status_code} with the token")
                if name in BASE and client.get(whoami_url(port)).status_code != 401:
                    raise RuntimeError(f"{name}: no 401 without a token")
        if cpus is not None:
            for proc, _ in procs.values():
                servers.pin(proc.pid, cpus)
    except BaseException:
        for proc, _ in procs.values():
            proc.stop()
        raise
    return procs


def together(
    wrk: str | None,
    urls: dict[str, str],
    pids: dict[str, int],
    token: str,
    seconds: float,
    conns: int,
    cpus: set[int] | None,
) -> dict[str, dict[str, Any]]:
    """Load every server in `urls` at the same time, one client each, for `seconds`
    (`servers.at_once`: each run with its CPU µs per request and its window)."""
    return servers.at_once(
        {name: pids[name] for name in urls},
        lambda name: load(wrk, urls[name], token, seconds, conns, cpus),
    )


def sample(
    wrk: str | None,
    url: str,
    token: str,
    pid: int,
    wrapped: str,
    cpus: set[int] | None = None,
    seconds: int = 4,
    rate: int = 250,
) -> dict[str, Any]:
    """py-spy on the server `pid` (and its workers) under load for `seconds` (wrk, or
    the httpx client without it): how many samples it took, and the share of them in
    bearerguard's frames outside the `wrapped` app (`bearerguard_share`)."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        return {"unavailable": "py-spy is not installed (the bench extra)"}
    out = Path(tempfile.mkdtemp(prefix="bearerguard-spy-")) / "stacks.txt"
    cmd = [spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(seconds)]
    cmd += ["--rate", str(rate), "--format", "raw", "--output", str(out)]
    spying = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        load(wrk, url, token, seconds + 1.0, 16, cpus)
        _, err = spying.communicate(timeout=60)
        if spying.returncode != 0 or not out.exists():
            return {"unavailable": f"py-spy failed: {err.strip()[-200:]}"}
        ours, total = bearerguard_share(out.read_text(), wrapped)
    finally:
        if spying.poll() is None:
            spying.kill()
        shutil.rmtree(out.parent, ignore_errors=True)
    return {"samples": total, "share": ours / total if total else None, "wrapped": wrapped}


def bearerguard_share(raw: str, wrapped: str | None = None) -> tuple[int, int]:
    """(samples in bearerguard's own frames, all samples) of py-spy's raw output.

    A sample is bearerguard's when a bearerguard frame is on its stack and the app that
    bearerguard wraps (a frame whose file path contains `wrapped`, default: any
    frame of starlette/, flask/ or werkzeug/) is not above it.
    """
    app = (wrapped,) if wrapped else ("starlette/", "flask/", "werkzeug/")
    ours = total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        first = next((i for i, f in enumerate(frames) if "bearerguard/" in f), None)
        if first is not None and not any(m in f for f in frames[first + 1 :] for m in app):
            ours += n
    return ours, total


def load(
    wrk: str | None, url: str, token: str, seconds: float, conns: int, cpus: set[int] | None = None
) -> dict[str, Any]:
    if wrk:
        return _wrk(wrk, url, token, seconds, conns, cpus)
    return asyncio.run(_httpx_load(url, token, seconds, conns))
