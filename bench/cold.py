"""The cold paths next to their raw references, and where their time goes.

``python -m bench.cold [--runs N] [--rounds N] [--profile-requests N]`` starts the
bench's introspection server and a redis-server, times the cold rows (every request a
cache miss) over introspection and over the Redis store next to one raw httpx POST and
one raw redis-py EVALSHA of the same script, in interleaved rounds (the harness of
``python -m bench``), several runs over (`repeated`), prints the ratios the targets
judge, then profiles each cold row. ``python -m bench`` calls `repeated` and `profile`
too, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import sys
from typing import Any

from bench import apps, plumbing
from bench.profile import profile_rows

# (cold row, its raw reference, the bare app under it)
TARGETS = (
    ("bg_cold_introspection_asgi", "raw_httpx_async", "starlette"),
    ("bg_cold_introspection_wsgi", "raw_httpx_sync", "flask"),
    ("bg_cold_redis_asgi", "raw_evalsha_async", "starlette"),
    ("bg_cold_redis_wsgi", "raw_evalsha_sync", "flask"),
)
REDIS_REFS = ("raw_evalsha_async", "raw_evalsha_sync")
# The floors run next to the targets: the memory-store miss (the middleware's own miss
# work) and, for Redis, the bare app making the one raw EVALSHA itself (bench/peers.py).
FLOORS = (
    "bg_cold_memory_asgi",
    "bg_cold_memory_wsgi",
    "floor_evalsha_asgi",
    "floor_evalsha_wsgi",
    "floor_httpx_asgi",
    "floor_httpx_wsgi",
    "contract_miss_asgi",
    "contract_miss_wsgi",
    "bg_cold_rawredis_asgi",
    "bg_cold_rawredis_wsgi",
)


async def _build(env: plumbing.Env, name: str) -> plumbing.Variant:
    build = next(b for b in plumbing.BUILDERS if b[0] == name)
    v = plumbing.Variant(*build[:5])
    return await build[5](env, v)


async def _calls(v: plumbing.Variant, n: int) -> None:
    call = v.call
    assert call is not None
    if v.is_async:
        for _ in range(n):
            await call()
    else:
        for _ in range(n):
            call()


def _top(prof: cProfile.Profile, n: int, limit: int = 12) -> list[dict[str, Any]]:
    rows = profile_rows(prof, n)
    rows.sort(key=lambda r: r["tottime_us"], reverse=True)
    ours = sorted((r for r in rows if r["ours"]), key=lambda r: r["cumtime_us"], reverse=True)
    return rows[:limit] + [dict(r, cumulative_view=True) for r in ours[:limit]]


# The raw EVALSHA references are profiled too: "where the time goes" sets a Redis miss's
# own time beside redis-py's own time in the raw call alone.
PROFILED = tuple(name for name, _ref, _bare in TARGETS) + REDIS_REFS


def _split(prof: cProfile.Profile, n: int) -> dict[str, Any]:
    """Own time per request: bearerguard's, redis-py's (hiredis included), the rest's."""
    rows = profile_rows(prof, n)
    ours = [r for r in rows if r["ours"]]
    driver = sum(
        r["tottime_us"] for r in rows if r["where"].startswith("redis/") or "hiredis" in r["where"]
    )
    mine = sum(r["tottime_us"] for r in ours)
    top = sorted(ours, key=lambda r: r["tottime_us"], reverse=True)[:3]
    return {
        "bearerguard_us": mine,
        "redis_py_us": driver,
        "rest_us": sum(r["tottime_us"] for r in rows) - mine - driver,
        "top_ours": [(r["where"], r["tottime_us"]) for r in top],
    }


async def profile(env: plumbing.Env, n: int = 2_000) -> dict[str, Any]:
    """cProfile each cold row over `n` requests; per-request µs, top rows first.

    ``split`` holds each profiled row's own time by owner (`_split`), the raw EVALSHA
    references' included.
    """
    out: dict[str, Any] = {"requests": n, "split": {}}
    for name in PROFILED:
        v = await _build(env, name)
        try:
            if v.unavailable:
                out[name] = {"unavailable": v.unavailable}
                continue
            await _calls(v, 50)
            prof = cProfile.Profile()
            prof.enable()
            await _calls(v, n)
            prof.disable()
            out[name] = _top(prof, n)
            out["split"][name] = _split(prof, n)
        finally:
            await apps.close_all([v])
    return out


async def _run(
    env: plumbing.Env, runs: int, rounds: int, target_ms: float, n: int
) -> dict[str, Any]:
    result = await repeated(env, runs, rounds, target_ms)
    return {"cold_runs": result, "profile": await profile(env, n) if n else {}}


async def repeated(
    env: plumbing.Env, runs: int = 5, rounds: int = 20, target_ms: float = 15.0
) -> dict[str, Any]:
    """The cold rows and their floors alone, `runs` times over: what the targets judge.

    A cold row waits on a real peer, and this machine's speed drifts from one second to
    the next (docs/design.md), so one run's ratio moves by 0.1 and more with the same
    code (cold introspection WSGI: 0.86, 0.92 and 1.33 in three runs back to back).
    Each run builds the variants afresh (new connections, new caches), warms them with
    one round that is not counted, and times them in `rounds` interleaved rounds of
    their own (shuffled differently each run); the targets read the median of the
    runs, and the page shows every run. Returns each run's `_floor` split per target.
    """
    from bench import harness

    names = sorted({x for t in TARGETS for x in t} | set(FLOORS))
    out: list[dict[str, Any]] = []
    for i in range(runs):
        variants = [await _build(env, name) for name in names]
        try:
            await harness.verify(variants)
            await harness.run(variants, rounds=1, target_s=target_ms / 1000, progress=False)
            raw = await harness.run(
                variants, rounds=rounds, target_s=target_ms / 1000, seed=i, progress=False
            )
            summary = harness.summarize(variants, raw)
        finally:
            await apps.close_all(variants)
        out.append({name: _floor(summary, name, ref) for name, ref, _bare in TARGETS})
    return {"runs": out, "rounds": rounds, "target_batch_ms": target_ms}


def split_of(ip: dict[str, Any], name: str, ref: str) -> dict[str, Any] | None:
    """One cold target's split (`_floor`): the median over the repeated runs of the cold
    rows alone (each figure its own median, with ``runs`` the ratio of every run), or,
    for a run from before those, from the in-process rows."""
    runs = [r[name] for r in ip.get("cold_runs", {}).get("runs", []) if r.get(name)]
    if not runs:
        return _floor(ip.get("rows", []), name, ref)
    merged: dict[str, Any] = {
        k: statistics.median(r[k] for r in runs) for k in runs[0] if all(k in r for r in runs)
    }
    merged["runs"] = [r["ratio"] for r in runs]
    return merged


def main(argv: list[str] | None = None) -> int:
    from bearerguard import tokens
    from bench import run

    p = argparse.ArgumentParser(prog="python -m bench.cold", description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--target-ms", type=float, default=15.0)
    p.add_argument("--profile-requests", type=int, default=2_000, help="0: no profile")
    args = p.parse_args(argv)
    env = plumbing.Env(token=tokens.generate())
    with run.peers(env):
        result = asyncio.run(
            _run(env, args.runs, args.rounds, args.target_ms, args.profile_requests)
        )
    for name, ref, _bare in TARGETS:
        f = split_of(result, name, ref) or {}
        each = " ".join(f"{x:.3f}" for x in f.get("runs", []))
        print(
            f"{name:28} vs raw {f.get('ratio', 0):.3f} (runs {each})"
            f"  floor {f.get('floor_ratio', 0):.3f}"
            f"  contract floor {f.get('contract_floor_ratio', 0):.3f}"
            f"  app floor {f.get('in_app_floor_ratio', 0):.3f}"
            f"  raw-backend floor {f.get('middleware_floor_ratio', 0):.3f}"
            f"  by CPU {f.get('cpu_ratio', 0):.3f}",
            file=sys.stderr,
        )
    print(json.dumps(result, indent=1, default=str))
    return 0


def _floor(rows: list[dict[str, Any]], name: str, ref: str) -> dict[str, float] | None:
    """Where one cold row's time goes, from the rows of the same run (µs per request)."""
    by = {r["name"]: r for r in rows}
    face = name.rsplit("_", 1)[1]
    cold, raw, mem = by.get(name, {}), by.get(ref, {}), by.get(f"bg_cold_memory_{face}", {})
    needed = ((cold, "overhead_us"), (raw, "median_us"), (mem, "overhead_us"))
    if not all(k in d for d, k in needed):
        return None
    over, ref_us, miss = cold["overhead_us"], raw["median_us"], mem["overhead_us"]
    out = {
        "over_bare": over,
        "raw": ref_us,
        "miss_bookkeeping": miss,
        "backend_beyond_raw": over - miss - ref_us,
        "ratio": over / ref_us,
        "floor_ratio": (miss + ref_us) / ref_us,
    }
    kind = "evalsha" if ref in REDIS_REFS else "httpx"
    in_app = by.get(f"floor_{kind}_{face}", {}).get("overhead_us")
    if in_app is not None:
        # The bare app making the raw call itself: what one round trip costs a request.
        out["in_app_floor_ratio"] = in_app / ref_us
    contract = by.get(f"contract_miss_{face}", {}).get("overhead_us")
    if contract is not None:
        # The contract's miss work as one function (over the same memory store): the
        # floor of the miss work itself, plus the raw call.
        out["contract_miss"] = contract
        out["contract_floor_ratio"] = (contract + ref_us) / ref_us
    through = by.get(f"bg_cold_rawredis_{face}", {}).get("overhead_us")
    if ref in REDIS_REFS and through is not None:
        # The middleware's miss with a backend that is exactly the raw call.
        out["middleware_floor_ratio"] = through / ref_us
    cpu_over, cpu_ref = cold.get("cpu_overhead_us"), raw.get("cpu_median_us")
    if cpu_over is not None and cpu_ref:
        # The same ratio by this process's CPU time (a run from before it was recorded
        # has none): what the request costs the caller, leaving out waits on the peer.
        out["cpu_ratio"] = cpu_over / cpu_ref
        out["cpu_over_bare"], out["cpu_raw"] = cpu_over, cpu_ref
    return out


def floor_text(results: dict[str, Any], name: str, ref: str) -> str:
    """The floor of a cold target, for its row in the targets table."""
    ip = results.get("inprocess", {})
    f = split_of(ip, name, ref)
    if f is None:
        return f"(miss request - bare app) / {ref}"
    text = f"(miss request - bare app) / {ref}"
    if "runs" in f:
        repeats = ip["cold_runs"]
        text += (
            f", the median of {len(f['runs'])} runs of the cold rows alone (each "
            f"{repeats['rounds']} interleaved rounds, fresh variants): "
            + ", ".join(f"{x:.2f}" for x in f["runs"])
            + "; each figure below is the median of those runs"
        )
    text += f"; floor in this run (memory-store miss + {ref}) / {ref} = {f['floor_ratio']:.2f}"
    if "contract_floor_ratio" in f:
        text += (
            f"; the contract's miss work as one function (`contract_miss_{name.rsplit('_', 1)[1]}`"
            f", {f['contract_miss']:.1f} µs against bearerguard's {f['miss_bookkeeping']:.1f}) "
            f"+ {ref}: {f['contract_floor_ratio']:.2f}"
        )
    if "in_app_floor_ratio" in f:
        call = "EVALSHA" if ref in REDIS_REFS else "httpx POST"
        text += f"; bare app + one raw {call}, over the bare app: {f['in_app_floor_ratio']:.2f}"
    if "middleware_floor_ratio" in f:
        text += (
            "; the miss with a backend that is exactly that EVALSHA "
            f"(`bg_cold_rawredis`): {f['middleware_floor_ratio']:.2f}"
        )
    if "cpu_ratio" in f:
        text += (
            f"; by the process's CPU time (waits on the peer left out): {f['cpu_over_bare']:.1f} "
            f"µs over the bare app ÷ {f['cpu_raw']:.1f} µs = {f['cpu_ratio']:.2f}"
        )
    return text


def where_text(results: dict[str, Any], name: str, ref: str) -> str:
    """Where one miss's time goes, from the run's cold profile: ours, and for a Redis
    row redis-py's beside its share in the raw call alone."""
    split = results.get("inprocess", {}).get("profile", {}).get("cold", {}).get("split", {})
    if not split:
        return ""  # a run from before the split was recorded
    ours, raw = split.get(name), split.get(ref)
    if ours is None:
        return "not profiled"
    top = ", ".join(f"`{w}` {us:.1f}" for w, us in ours["top_ours"])
    text = (
        f"cProfile of one miss, own µs/request (inflated; compare rows): bearerguard "
        f"{ours['bearerguard_us']:.1f} (most: {top})"
    )
    if ref not in REDIS_REFS:  # the HTTP client's own time is part of the rest
        return text + f"; the rest (httpx, sockets, event loop, app) {ours['rest_us']:.1f}"
    text += f"; redis-py {ours['redis_py_us']:.1f}"
    if raw is not None:
        text += f" (in `{ref}` alone: {raw['redis_py_us']:.1f})"
    return text + f"; the rest (sockets, event loop, app) {ours['rest_us']:.1f}"


def _contract_cells(f: dict[str, Any]) -> str:
    if "contract_floor_ratio" not in f:
        return " — | — |"
    return f" {f['contract_miss']:.1f} | {f['contract_floor_ratio']:.2f} |"


def docs_section(ip: dict[str, Any]) -> list[str]:
    """docs/benchmarks.md: where each cold target's time goes, and its profile's top rows.

    Empty for a run from before the cold profile existed (the page stays as it was).
    """
    prof = ip.get("profile", {}).get("cold", {})
    if not prof:
        return []
    repeats = ip.get("cold_runs")
    # The in-app floor column only for a run that has the floor rows (bench/peers.py).
    in_app_run = any(r["name"].startswith("floor_") for r in ip.get("rows", []))
    # The contract floor's column only for a run that has its rows (bench/apps.py).
    contract_run = any(r["name"].startswith("contract_miss_") for r in ip.get("rows", []))
    # And the CPU column only for a run that recorded the caller's CPU time.
    cpu_run = any("cpu_overhead_us" in r for r in ip.get("rows", []))
    L = [
        "",
        "## Where the cold paths' time goes",
        "",
        "Each cold row split with rows of the same run (µs per request, medians): the "
        "middleware's own miss work is the memory-store miss row's overhead over the bare "
        "app (an in-process store: the same flow, single-flight and cache insert with no "
        "I/O); the raw reference is one request of the same kind with no app; what is left "
        "is the backend's own work beyond that raw request. The floor is the best ratio a "
        "backend costing exactly one raw request can reach on top of that miss work."
        + (
            " The contract's miss work is every step a miss must take, written as one "
            "function over the same memory store (`bench.plumbing.ContractMissMiddleware`): "
            "the floor of the miss work itself."
            if contract_run
            else ""
        )
        + (
            f" These rows are timed on their own, {len(repeats['runs'])} runs of "
            f"{repeats['rounds']} interleaved rounds, each with fresh variants after a "
            "round that is not counted; each figure is the median over the runs (the "
            "in-process table above times them once, among all the variants)."
            if repeats
            else ""
        )
        + (
            " The ratio by CPU is the same ratio in this process's CPU time (the thread "
            "that runs the request and its client): the time spent waiting for the peer "
            "left out."
            if cpu_run
            else ""
        ),
        "",
        "| cold row | over bare app | raw reference | miss work (memory row) | backend beyond raw "
        "| ratio | floor |"
        + (" floor: bare app + the raw call |" if in_app_run else "")
        + (" contract's miss work | floor: it + the raw call |" if contract_run else "")
        + (" ratio by CPU |" if cpu_run else ""),
        "|---|---:|---:|---:|---:|---:|---:|"
        + ("---:|" if in_app_run else "")
        + ("---:|---:|" if contract_run else "")
        + ("---:|" if cpu_run else ""),
    ]
    for name, ref, _bare in TARGETS:
        f = split_of(ip, name, ref)
        if f is None:
            L.append(
                f"| `{name}` | not measured | | | | | |"
                + (" |" if in_app_run else "")
                + (" | |" if contract_run else "")
                + (" |" if cpu_run else "")
            )
            continue
        in_app, by_cpu = f.get("in_app_floor_ratio"), f.get("cpu_ratio")
        L.append(
            f"| `{name}` | {f['over_bare']:.1f} | {f['raw']:.1f} (`{ref}`) | "
            f"{f['miss_bookkeeping']:.1f} | {f['backend_beyond_raw']:.1f} | "
            f"{f['ratio']:.2f} | {f['floor_ratio']:.2f} |"
            + ((" —" if in_app is None else f" {in_app:.2f}") + " |" if in_app_run else "")
            + (_contract_cells(f) if contract_run else "")
            + ((" —" if by_cpu is None else f" {by_cpu:.2f}") + " |" if cpu_run else "")
        )
    for name, _ref, _bare in TARGETS:
        rows = prof.get(name)
        if not isinstance(rows, list):
            continue
        L += [
            "",
            f"cProfile, `{name}`, {prof['requests']:,} requests (profiler overhead inflates "
            "small calls; compare rows, not totals). Top rows by own time, then bearerguard "
            "functions by cumulative time:",
            "",
            "| function | calls/request | own µs/request | cumulative µs/request |",
            "|---|---:|---:|---:|",
        ]
        for r in [r for r in rows if not r.get("cumulative_view")][:8] + [
            r for r in rows if r.get("cumulative_view")
        ][:8]:
            L.append(
                f"| `{r['where']}` | {r['calls_per_request']:.1f} | {r['tottime_us']:.1f} "
                f"| {r['cumtime_us']:.1f} |"
            )
    return L


if __name__ == "__main__":
    sys.exit(main())
