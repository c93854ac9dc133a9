# ruff: noqa: RUF001, E501  (typographic text and long table lines of the generated page)
"""Results: machine facts, targets of issue 18, JSON files, the chart and the docs page."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
CHART = RESULTS / "latest.png"

PACKAGES = [
    "bearerguard",
    "starlette",
    "fastapi",
    "flask",
    "werkzeug",
    "flask-httpauth",
    "authlib",
    "uvicorn",
    "gunicorn",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "sniffio",
    "cachetools",
    "redis",
    "matplotlib",
]


def _cmd(args: list[str]) -> str:
    if shutil.which(args[0]) is None:
        return "absent"
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def _redis_version() -> str:
    from bench.servers import find_redis_server

    try:
        return _cmd([find_redis_server(), "--version"])
    except RuntimeError:
        return "absent"


def git_commit() -> str:
    """HEAD's short hash, with ``+uncommitted`` when src/, bench/ or tests/ differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "bench", "tests"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return head + ("+uncommitted" if changed else "") if head else "?"


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": versions,
        "redis_server": _redis_version(),
        "wrk": _cmd(["wrk", "--version"]),
        "git_commit": git_commit(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def _row(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    for row in results.get("inprocess", {}).get("rows", []):
        if row["name"] == name and "median_us" in row:
            return dict(row)
    return None


def _cold_ratio(results: dict[str, Any], name: str, ref: str) -> float | None:
    """A cold target's ratio: the median of the cold rows' own runs (`cold.repeated`),
    or, for a run from before those, the in-process row's."""
    from bench import cold

    ip = results.get("inprocess", {})
    if ip.get("cold_runs"):
        f = cold.split_of(ip, name, ref)
        return None if f is None else float(f["ratio"])
    r = _row(results, name)
    return None if r is None else r.get("vs_raw_overhead")


_COMPARE = {
    "le": lambda value, limit: value <= limit,
    "ge": lambda value, limit: value >= limit,
    # Counted facts (calls, round trips, statements): 0 would mean the thing was not
    # done at all, so only exactly the limit meets the target.
    "eq": lambda value, limit: value == limit,
}
_CMP_SIGN = {"le": "≤", "ge": "≥", "eq": "="}


def memory_scenario(mem: dict[str, Any]) -> str:
    """The memory run's scenario in words, from what the run recorded."""
    if "tokens" not in mem:
        return "not run"
    text = f"{mem['tokens']:,} tokens"
    if "keys" in mem and "addresses" in mem:
        return f"{text}, {mem['keys']:,} keys, {mem['addresses']:,} distinct addresses"
    return (
        f"{text} (keys and addresses not recorded by this run: the next `make bench` records them)"
    )


AUTH_TARGETS = (("redis", 0.5), ("sqlite", 0.4))


def auth_ratio(results: dict[str, Any], endpoint: str, server: str) -> float | None:
    """The auth service's req/s ÷ bare uvicorn's for one endpoint and server (or None)."""
    for r in results.get("auth_service", {}).get("loopback", {}).get("rows", []):
        if r["endpoint"] == endpoint and r["server"] == server:
            ratio: float | None = r.get("ratio_to_bare")
            return ratio
    return None


def _own_time(results: dict[str, Any], name: str, n: int = 4) -> str:
    """The profile's bearerguard rows for variant `name`, most own time first, as text."""
    rows = results.get("inprocess", {}).get("profile", {}).get(name) or []
    ours = sorted(
        (r for r in rows if r.get("cumulative_view")), key=lambda r: -float(r["tottime_us"])
    )
    return "; ".join(
        f"`{r['where']}` own {r['tottime_us']:.2f}, cumulative {r['cumtime_us']:.2f}"
        for r in ours[:n]
    )


def _short(where: str) -> str:
    """A source location without its directories up to the package: ``pkg/file.py:12``."""
    path, _, line = where.rpartition(":")
    return "/".join(path.split("/")[-2:]) + ":" + line


def _paired_min(lb: dict[str, dict[str, Any]], name: str, base: str) -> float | None:
    """The worst of the interleaved runs' ratios `name` ÷ `base` (None: under 3 runs)."""
    ours, bare = lb.get(name, {}).get("rps_runs", []), lb.get(base, {}).get("rps_runs", [])
    if min(len(ours), len(bare)) < 3 or not all(bare):
        return None
    return min(a / b for a, b in zip(ours, bare, strict=False))


def _hotpath_section(hot: dict[str, Any] | None) -> list[str]:
    """The cached path alone (bench/hotpath.py): the table the cached targets are read from."""
    if hot is None:
        return []
    from bench import hotpath

    L = [
        "",
        "## The cached path alone",
        "",
        "Behind Starlette or Flask a hit's few µs drown in the app's own time, so the cached "
        "targets are read here: each middleware round an app that does nothing, "
        f"{hot['rounds']} interleaved rounds of {hot['batch']} calls, timed on the thread's "
        f"CPU clock, read at the {hot['quantile']:.0%} quantile (median beside it). "
        "The contract floor is every check bearerguard's cached path makes (every header "
        "read, the scheme, SHA-256, the lookup, the refresh time, the peer, `policy.admit`, "
        "the memoised identity, the scope keys), written as one function with nothing "
        "around it (`bench/plumbing.py`, `ContractFloorMiddleware`).",
        "",
        "| face | variant | µs/call (low / median) | overhead µs | ÷ minimal reference |",
        "|---|---|---:|---:|---:|",
    ]
    names = {
        "noop": "no-op middleware (floor)",
        "bare": "bare app (floor)",
        "minimal": "header+sha256+dict+clock (reference)",
        "contract": "the contract's checks, inline (floor)",
        "bearerguard": "bearerguard, cached",
    }
    for key, us in hot["us"].items():
        face, name = key.split("_", 1)
        if name in ("noop", "bare"):
            over, ratio = "—", "—"
        else:
            over = f"{hotpath.overhead(hot, face, name):.2f}"
            ratio = f"{hotpath.ratio(hot, face, name)['low']:.2f}"
        L.append(
            f"| {face.upper()} | {names[name]} | {us['low']:.2f} / {us['median']:.2f} | "
            f"{over} | {ratio} |"
        )
    return L


def _loopback_cpu(lb: dict[str, dict[str, Any]]) -> str:
    """The server-CPU view of the loopback row, as text ('' for runs without it)."""
    ours, bare = lb.get("uvicorn_bearerguard", {}), lb.get("uvicorn_starlette", {})
    if "cpu_ratio" not in ours:
        return ""
    worst = min(b / a for a, b in zip(ours["cpu_us_runs"], bare["cpu_us_runs"], strict=False))
    return (
        f"; by the server's CPU per request (bare's ÷ ours) {ours['cpu_ratio']:.3f}, "
        f"worst run {worst:.3f}"
    )


def _loopback_expected(results: dict[str, Any], lb: dict[str, dict[str, Any]]) -> str:
    """What the in-process overhead predicts for the loopback ratio, as text ('' if unknown).

    A server that spends `c` µs of CPU on a request (bare's, measured in the run) and `o`
    more behind bearerguard serves c / (c + o) as many requests a second.
    """
    ours = _row(results, "bg_asgi")
    runs = lb.get("uvicorn_starlette", {}).get("cpu_us_runs")
    if ours is None or not runs or ours.get("overhead_us") is None:
        return ""
    bare = statistics.median(runs)
    expected = bare / (bare + ours["overhead_us"])
    return (
        f"; expected from the in-process overhead behind Starlette ({ours['overhead_us']:.2f} µs "
        f"a request over bare's {bare:.0f} µs of server CPU): {expected:.3f}"
    )


def _loopback_control(lb: dict[str, dict[str, Any]], name: str, base: str, what: str) -> str:
    """Another ratio of the same runs (`name` ÷ `base`) as text ('' if not run)."""
    row = lb.get(name, {})
    worst = _paired_min(lb, name, base)
    if worst is None or row.get("ratio") is None:
        return ""
    return f"; {what}, measured the same way: worst run {worst:.3f}, median {row['ratio']:.3f}"


def _loopback_sampled(results: dict[str, Any], name: str = "uvicorn_bearerguard") -> str:
    """py-spy's view of the protected server under wrk, as text ('' for runs without it).

    A server that spends a share `s` of its time in bearerguard's frames would serve
    1 / (1 - s) times as many requests without them: the ratio is 1 - s.
    """
    spied = results.get("loopback", {}).get("sampled", {}).get(name, {})
    if spied.get("share") is None:
        return ""
    share = spied["share"]
    return (
        f"; sampled under wrk (py-spy, {spied['samples']} samples): {share:.1%} of the "
        f"protected server's time in bearerguard's own frames, so {1 - share:.3f} expected"
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's ratios and issue 6's counted facts, each met or not, with the value.

    `where` says what the remaining time (or memory) is spent on, from the same run.
    """
    out: list[dict[str, Any]] = []

    def add(
        tid: str,
        text: str,
        value: float | None,
        limit: float,
        cmp: str,
        how: str,
        where: str = "",
    ) -> None:
        ok = None if value is None else _COMPARE[cmp](value, limit)
        out.append(
            {
                "id": tid,
                "target": text,
                "value": value,
                "limit": limit,
                "cmp": cmp,
                "ok": ok,
                "how": how,
                "where": where,
            }
        )

    def ov(name: str) -> float | None:
        r = _row(results, name)
        return None if r is None else r.get("overhead_us")

    hot = results.get("hotpath")
    for face, bare in (("asgi", "starlette"), ("wsgi", "flask")):
        if hot is not None:
            from bench import hotpath

            # The judged figure: the middlewares alone on thread CPU time (bench/hotpath.py).
            value: float | None = hot["ratios"][f"{face}_bearerguard"]["low"]
            floor = hot["ratios"][f"{face}_contract"]["low"]
            how = (
                f"overhead ÷ overhead of the minimal reference, each round a no-op app, "
                f"thread CPU time, {hot['rounds']} interleaved rounds, "
                f"{hot['quantile']:.0%} quantile (`python -m bench.hotpath`)"
            )
            where = (
                f"bearerguard {hotpath.overhead(hot, face, 'bearerguard'):.2f} µs, minimal "
                f"reference {hotpath.overhead(hot, face, 'minimal'):.2f} µs; floor in this run: "
                f"every check the cached path must make, written as one function, "
                f"{hotpath.overhead(hot, face, 'contract'):.2f} µs = **{floor:.2f}** × the "
                f"reference (median {hot['ratios'][f'{face}_contract']['median']:.2f}; "
                f"bearerguard's median {hot['ratios'][f'{face}_bearerguard']['median']:.2f})"
            )
        else:  # a run from before bench/hotpath.py: the paired in-process overheads
            ours, ref = ov(f"bg_{face}"), ov(f"minimal_{face}")
            value = None if ours is None or not ref or ref <= 0 else ours / ref
            how = f"overhead(bg_{face}) / overhead(minimal_{face}), both over bare {bare}"
            where = (
                f"bearerguard {_fmt(ours)} µs; floor in this run: minimal reference {_fmt(ref)} µs"
            )
        add(
            f"{face}_cached_vs_minimal",
            f"{face.upper()} cached overhead ÷ the in-run minimal reference (header+sha256+dict+clock)",
            value,
            1.25,
            "le",
            how,
            where
            + ". cProfile, µs/request (inflated; compare rows): "
            + (_own_time(results, f"bg_{face}") or "not run"),
        )
    from bench import cold

    for face, ref in (("asgi", "raw_httpx_async"), ("wsgi", "raw_httpx_sync")):
        add(
            f"cold_introspection_{face}",
            f"cold path over introspection ({face.upper()}) ≤ 1.1 × one raw httpx POST",
            _cold_ratio(results, f"bg_cold_introspection_{face}", ref),
            1.1,
            "le",
            cold.floor_text(results, f"bg_cold_introspection_{face}", ref),
            cold.where_text(results, f"bg_cold_introspection_{face}", ref),
        )

    ran = {r["name"] for r in results.get("inprocess", {}).get("rows", [])}
    for face, ref in (("asgi", "raw_evalsha_async"), ("wsgi", "raw_evalsha_sync")):
        if ref not in ran:
            continue  # a run from before the reference existed
        add(
            f"cold_redis_{face}",
            f"cold path over Redis ({face.upper()}) ≤ 1.2 × one raw redis-py EVALSHA",
            _cold_ratio(results, f"bg_cold_redis_{face}", ref),
            1.2,
            "le",
            cold.floor_text(results, f"bg_cold_redis_{face}", ref),
            cold.where_text(results, f"bg_cold_redis_{face}", ref),
        )
    facts = results.get("inprocess", {}).get("facts", {})
    sf = facts.get("single_flight", {})
    for face in ("asgi", "wsgi"):
        calls = sf.get(f"{face}_backend_calls")
        add(
            f"single_flight_{face}",
            f"concurrent misses for one token = one call ({face.upper()})",
            None if calls is None else float(calls),
            1,
            "eq",
            f"introspection calls for {sf.get('concurrent_requests' if face == 'asgi' else 'wsgi_threads')} concurrent requests",
        )
    rr = facts.get("redis_round_trips", {}).get("round_trips_per_lookup")
    add(
        "redis_round_trips",
        "Redis store: one round trip per cold lookup",
        rr,
        1,
        "eq",
        "client sends counted (redis-py and the lean client)",
    )
    sq = facts.get("sqlite_statements", {}).get("statements_per_lookup")
    add(
        "sqlite_statements",
        "SQLite store: one statement per cold lookup",
        sq,
        1,
        "eq",
        "sqlite3 trace",
    )
    worst = results.get("memory_distinct", {})
    lines = worst.get("tracemalloc", {}).get("by_line", [])[:4]
    add(
        "memory_distinct",
        "bytes per cached token, worst case: every token bound to its own address: "
        + memory_scenario(worst),
        worst.get("bytes_per_token"),
        400,
        "le",
        "statm (`python -m bench.memory N cache --distinct-ips`)",
        "retained per token by line (tracemalloc): "
        + (
            "; ".join(f"`{_short(x['where'])}` {x['bytes_per_token']:.0f} B" for x in lines)
            or "not run"
        ),
    )
    # The auth service (issues 15 and 18): one worker, ratio to bare uvicorn, judged in
    # runs that measured the Redis floor beside it (runs before it lack the rows).
    together = results.get("auth_service", {}).get("loopback", {}).get("together")
    how = (
        "wrk req/s ratio, the median of runs that load every server at once on one core "
        "(`bench/authservice.py`)"
        if together
        else "wrk req/s ratio, interleaved (`bench/authservice.py`)"
    )
    for store, limit in AUTH_TARGETS if auth_ratio(results, "login", "floor_redis") else ():
        for ep in ("introspect", "login"):
            add(
                f"auth_{store}_{ep}",
                f"auth service /{ep} over {store}, 1 worker ≥ {limit} × bare uvicorn",
                auth_ratio(results, ep, store),
                limit,
                "ge",
                how,
                _auth_where(results["auth_service"], store, ep),
            )
    lb = {r["name"]: r for r in results.get("loopback", {}).get("rows", [])}
    runs = lb.get("uvicorn_bearerguard", {}).get("rps_runs", [])
    add(
        "loopback_uvicorn",
        "uvicorn loopback, protected ÷ bare, in 3 of 3 runs",
        _paired_min(lb, "uvicorn_bearerguard", "uvicorn_starlette"),
        0.95,
        "ge",
        f"wrk req/s, the worst of {len(runs)} runs"
        + (
            " (each: protected and bare loaded at the same time on one core, fresh processes)"
            if results.get("loopback", {}).get("together")
            else " interleaved (each run ÷ the bare run of its round)"
        ),
        f"median ratio {_fmt(lb.get('uvicorn_bearerguard', {}).get('ratio'), 3)}"
        + _loopback_cpu(lb)
        + _loopback_expected(results, lb)
        + _loopback_sampled(results)
        + _loopback_control(
            lb,
            "uvicorn_contract",
            "uvicorn_starlette",
            "the floor (every check of the cached path as one function, "
            "`ContractFloorMiddleware`) ÷ bare",
        )
        + _loopback_control(
            lb, "uvicorn_twin_b", "uvicorn_twin_a", "two processes of the same bare app"
        ),
    )
    return out


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def chart(results: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'bearerguard[bench]')"
    rows = [r for r in results["inprocess"]["rows"] if "median_us" in r]
    fast = [
        r for r in rows if r["group"] in ("floor", "peer", "bearerguard") and "overhead_us" in r
    ]
    cold = [r for r in rows if r["group"] in ("cold", "raw")]
    colors = {
        "floor": "#999999",
        "peer": "#4c72b0",
        "bearerguard": "#dd8452",
        "cold": "#dd8452",
        "raw": "#55a868",
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6.5))
    fast.sort(key=lambda r: r["overhead_us"])
    ys = range(len(fast))
    ax1.barh(
        list(ys),
        [r["overhead_us"] for r in fast],
        xerr=[
            [max(0.0, r["overhead_us"] - r["overhead_p25_us"]) for r in fast],
            [max(0.0, r["overhead_p75_us"] - r["overhead_us"]) for r in fast],
        ],
        color=[colors[r["group"]] for r in fast],
    )
    ax1.set_yticks(list(ys), [f"{r['label']} ({r['face']})" for r in fast], fontsize=8)
    ax1.set_xlabel("overhead over the bare app, µs/request (median, p25–p75)")
    ax1.set_title("Cached path and peers, in-process")
    ax1.axvline(0, color="black", linewidth=0.5)
    cold.sort(key=lambda r: r["median_us"])
    ys2 = range(len(cold))
    ax2.barh(list(ys2), [r["median_us"] for r in cold], color=[colors[r["group"]] for r in cold])
    ax2.set_xscale("log")
    ax2.set_yticks(list(ys2), [f"{r['label']} ({r['face']})" for r in cold], fontsize=8)
    ax2.set_xlabel("µs/request, whole request (median, log scale)")
    ax2.set_title("Cold path (every request a miss) vs one raw POST")
    m = results["machine"]
    fig.suptitle(
        f"bearerguard benchmarks — {m['cpu']}, {m['cores']} cores, {m['python']}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def _inprocess_table(rows: list[dict[str, Any]], groups: tuple[str, ...], cold: bool) -> list[str]:
    if cold:
        lines = [
            "| variant | face | µs/request (median) | p25–p75 | over bare app, µs | vs raw POST (overhead / total) | note |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
    else:
        lines = [
            "| variant | face | µs/request (median) | p25–p75 | overhead µs (paired median) | ratio to bare | note |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
    for r in rows:
        if r["group"] not in groups:
            continue
        if "median_us" not in r:
            lines.append(
                f"| {r['label']} | {r['face']} | unavailable: {r['unavailable']} | | | | |"
            )
            continue
        spread = f"{r['p25_us']:.2f}–{r['p75_us']:.2f}"
        if cold:
            vs = "—"
            if "vs_raw_total" in r:
                vs = f"{_fmt(r.get('vs_raw_overhead'))} / {_fmt(r['vs_raw_total'])}"
            lines.append(
                f"| {r['label']} | {r['face']} | {r['median_us']:.1f} | {spread} | "
                f"{_fmt(r.get('overhead_us'), 1)} | {vs} | {r['note']} |"
            )
        else:
            lines.append(
                f"| {r['label']} | {r['face']} | {r['median_us']:.2f} | {spread} | "
                f"{_fmt(r.get('overhead_us'))} | {_fmt(r.get('ratio'), 3)} | {r['note']} |"
            )
    return lines


def docs(results: dict[str, Any], chart_note: str | None, page_commit: str | None = None) -> str:
    """The Markdown page. Targets are judged here, from the measured values in `results`.

    `page_commit` names the commit of this report code when the page is regenerated
    from a saved JSON (``python -m bench.report``) rather than written by the run.
    """
    m = results["machine"]
    ip = results["inprocess"]
    rows = ip["rows"]
    run = results["run"]
    made_by = (
        "*Generated by `make bench` (`python -m bench --loopback --install-missing`); do not edit by hand.*"
        if page_commit is None
        else f"*Generated from `bench/results/latest.json` by `python -m bench.report` at commit "
        f"`{page_commit}`; the figures come from the `make bench` run named below. Do not edit by hand.*"
    )
    L: list[str] = [
        "# Benchmarks",
        "",
        made_by,
        f"Latest run: {m['date_utc']} UTC, commit `{m['git_commit']}`, {run['seconds']} s, "
        f"{run['rounds']} interleaved rounds. Load average before/after: "
        f"{', '.join(f'{x:.2f}' for x in run['loadavg_before'])} / "
        f"{', '.join(f'{x:.2f}' for x in run['loadavg_after'])} "
        "(other work shares this machine: read ratios and paired overheads, not absolute µs).",
        "",
        "How it measures: every variant serves the same tiny app (`GET /whoami` → small JSON). "
        "ASGI apps are called directly with a synthetic HTTP scope and prebuilt receive/send "
        "coroutines; WSGI apps with a prepared environ and a no-op `start_response`. Variants "
        "run round-robin in a shuffled order, each round one batch per variant timed with "
        "`perf_counter_ns`; the tables give the median µs/request over the rounds, and the "
        "overhead as the median of per-round differences to the bare app of the same round. "
        "Each variant's answer is checked (HTTP 200) before and after the timing.",
        "",
        "## Targets (issue 18)",
        "",
        "Each ratio is measured side by side in one run; the counted facts are issue 6's. "
        "The last column says where the remaining time (or memory) goes, from the same run.",
        "",
        "| target | measured | limit | met | how | where the time goes |",
        "|---|---:|---:|:---:|---|---|",
    ]
    for t in targets(results):
        ok = "n/a" if t["ok"] is None else ("yes" if t["ok"] else "**no**")
        limit = f"{_CMP_SIGN[t['cmp']]} {t['limit']}"
        L.append(
            f"| {t['target']} | {_fmt(t['value'])} | {limit} | {ok} | {t['how']} | {t.get('where') or '—'} |"
        )
    L += ["", "## In-process: cached path, peers and floors", ""]
    if chart_note is None:
        L += ["![overhead per variant](../bench/results/latest.png)", ""]
    else:
        L += [f"(chart not drawn: {chart_note})", ""]
    L += _inprocess_table(rows, ("baseline", "floor", "peer", "bearerguard"), cold=False)
    L += [
        "",
        "Peers do less than bearerguard: the Starlette, FastAPI and flask-httpauth variants "
        "look the token up in a dict and check nothing else; Authlib's also checks the scope "
        "and expiry. bearerguard does the full contract on every hit (RFC 6750 syntax, SHA-256 "
        "digest, cache with expiry, IP binding, API check, touch bookkeeping). FastAPI's "
        "overhead is over bare FastAPI.",
    ]
    L += _hotpath_section(results.get("hotpath"))
    from bench import hashes

    L += hashes.docs_section(results.get("hashes"))
    L += [
        "",
        "## In-process: cold path (every request a cache miss)",
        "",
    ]
    L += _inprocess_table(rows, ("cold", "raw"), cold=True)
    facts = ip.get("facts", {})
    L += ["", "Counted facts:", ""]
    sf = facts.get("single_flight", {})
    if "unavailable" in sf:
        L.append(f"- single-flight: unavailable: {sf['unavailable']}")
    else:
        L.append(
            f"- single-flight: {_fmt(sf.get('concurrent_requests'))} concurrent ASGI requests with one "
            f"uncached token made {_fmt(sf.get('asgi_backend_calls'))} introspection call(s) "
            f"(statuses {_fmt(sf.get('asgi_statuses'))}); {_fmt(sf.get('wsgi_threads'))} WSGI threads made "
            f"{_fmt(sf.get('wsgi_backend_calls'))} (statuses {_fmt(sf.get('wsgi_statuses'))})."
        )
    rr = facts.get("redis_round_trips", {})
    if "unavailable" in rr:
        L.append(f"- Redis: unavailable: {rr['unavailable']}")
    else:
        commands = rr.get("server_commands_per_lookup") or {}
        executed = ", ".join(f"`{k}` {_fmt(v)}" for k, v in commands.items()) or "—"
        L.append(
            f"- Redis store, per cold lookup: {_fmt(rr.get('round_trips_per_lookup'))} round trip(s) "
            f"(client sends counted, redis-py and the lean client, over {_fmt(rr.get('lookups'))} lookups); commands the server "
            f"ran per lookup (INFO commandstats): {executed}"
            + (f" ({rr['note']})" if rr.get("note") else "")
        )
    sq = facts.get("sqlite_statements", {})
    if "unavailable" in sq:
        L.append(f"- SQLite: unavailable: {sq['unavailable']}")
    else:
        L.append(
            f"- SQLite store, per cold lookup: {_fmt(sq.get('statements_per_lookup'))} statement(s): "
            + "; ".join(f"`{s}`" for s in sq.get("statements", []))
        )
    mem = results.get("memory", {})
    L += ["", "## Memory", ""]
    if "bytes_per_token" in mem:
        L.append(
            f"RSS growth over cached tokens in `TokenCache` (fresh process, /proc/self/statm), "
            f"each a fresh TokenInfo as a backend builds it, shared-address scenario "
            f"({memory_scenario(mem)}): **{mem['bytes_per_token']:.0f} bytes per token**. "
            "The ≤ 400 B target is judged on this scenario; the worst case follows."
        )
        tm = mem.get("tracemalloc", {})
        if tm:
            L.append(
                f"What the cache itself retains per token (tracemalloc over {tm['tokens']:,} "
                f"tokens, the answers' temporaries freed): "
                f"≈ {tm['retained_bytes_per_token']:.0f} B. RSS is higher because freed "
                "temporaries leave partly used allocator pools behind."
            )
            L += ["", "| retained, by allocating line (tracemalloc) | bytes/token |", "|---|---:|"]
            for item in tm.get("by_line", []):
                L.append(f"| `{item['where']}` | {item['bytes_per_token']:.0f} |")
        L += [
            "",
            "| part of one answer as a backend builds it (sys.getsizeof) | bytes |",
            "|---|---:|",
        ]
        for k, v in mem.get("breakdown", {}).items():
            L.append(f"| {k} | {v} |")
        worst = results.get("memory_distinct", {})
        if "bytes_per_token" in worst:
            L += [
                "",
                f"Worst case, every token bound to its own address ({memory_scenario(worst)}): "
                f"**{worst['bytes_per_token']:.0f} bytes per token**.",
            ]
    else:
        L.append(f"unavailable: {mem.get('unavailable')}")
    lb = results.get("loopback")
    L += ["", "## Loopback (real servers on 127.0.0.1)", ""]
    if lb is None:
        L.append("Not run (`python -m bench --loopback`).")
    elif "unavailable" in lb:
        L.append(f"unavailable: {lb['unavailable']}")
    else:
        together = lb.get("together", False)
        L += [
            f"Client: {lb['client']}"
            + (" for each server" if together else "")
            + f", {lb['seconds_per_run']} s per run, {lb['reps']} "
            + ("runs per group" if together else "interleaved runs per server")
            + f"; {lb['servers']}. "
            + (
                f"The servers run pinned to core {lb['pinned']['servers']} and wrk to "
                f"{lb['pinned']['client']}"
                if lb.get("pinned")
                else f"The load client shares the {_fmt(m['cores'])} cores with the server"
            )
            + (
                "; the servers of a group (bare, protected and, for uvicorn, the floor; "
                "the control pair) are loaded at the same time on the same core (the kernel "
                "shares it out evenly, and all of them meet the same machine: its speed "
                "changes by more from second to second than bearerguard costs), and each "
                "run starts the group's processes afresh. req/s is while sharing the core."
                if together
                else "; the two servers of a pair run back to back."
            ),
            "",
        ]
        cpu = all("cpu_us_runs" in r for r in lb["rows"])
        if cpu:
            L += [
                "| server | req/s (median) | runs | ratio to bare | server CPU µs/request (runs) | CPU ratio | non-2xx |",
                "|---|---:|---|---:|---|---:|---:|",
            ]
        else:
            L += [
                "| server | req/s (median) | runs | ratio to bare | non-2xx |",
                "|---|---:|---|---:|---:|",
            ]
        for r in lb["rows"]:
            runs = ", ".join(f"{x:.0f}" for x in r["rps_runs"])
            extra = ""
            if cpu:
                cpu_runs = ", ".join(f"{x:.0f}" for x in r["cpu_us_runs"])
                extra = f" {cpu_runs} | {_fmt(r.get('cpu_ratio'), 3)} |"
            L.append(
                f"| {r['name']} | {r['rps_median']:.0f} | {runs} | {_fmt(r.get('ratio'), 3)} |{extra} {r['non_2xx']} |"
            )
        if any(r["name"] == "uvicorn_contract" for r in lb["rows"]):
            L += [
                "",
                "`uvicorn_contract` is the floor of the uvicorn row: bare Starlette behind "
                "`ContractFloorMiddleware`, every check bearerguard's cached path makes "
                "written as one function, loaded in the same runs as the two others.",
            ]
        if any(r["name"] == "uvicorn_twin_b" for r in lb["rows"]):
            L += [
                "",
                "`uvicorn_twin_a` and `uvicorn_twin_b` are two processes of the same bare app, "
                "a pair like the others: their ratio is what the comparison reads when only "
                "the process differs"
                + (
                    " (`python -m bench.twins` compares this method with loading the two "
                    "one after the other)."
                    if together
                    else " (each keeps its own memory layout for the whole run)."
                ),
            ]
        spied = {k: v for k, v in lb.get("sampled", {}).items() if v.get("share") is not None}
        if spied:
            L += [
                "",
                "Sampled: each protected server loaded once more for 4 s while py-spy "
                "records it at 250 Hz (`loopback.sample`); the share of its samples in "
                "bearerguard's own frames, not in the app it wraps: "
                + "; ".join(
                    f"{name} {v['share']:.1%} of {v['samples']} samples"
                    for name, v in spied.items()
                )
                + ".",
            ]
    prof = ip.get("profile", {})
    if prof:
        L += [
            "",
            "## Profile of the cached path",
            "",
            "Each step timed alone (best of 5, µs per call, no profiler):",
            "",
        ]
        L += ["| step | µs |", "|---|---:|"]
        for k, v in prof.get("steps_us", {}).items():
            L.append(f"| {k} | {v:.3f} |")
        for name in ("bg_asgi", "bg_wsgi"):
            L += [
                "",
                f"cProfile, `{name}`, {prof['requests']:,} requests (profiler overhead inflates "
                "small calls; compare rows, not totals). bearerguard functions by cumulative time:",
                "",
                "| function | calls/request | own µs/request | cumulative µs/request |",
                "|---|---:|---:|---:|",
            ]
            for r in [r for r in prof.get(name, []) if r.get("cumulative_view")][:12]:
                L.append(
                    f"| `{r['where']}` | {r['calls_per_request']:.1f} | {r['tottime_us']:.2f} | {r['cumtime_us']:.2f} |"
                )
    from bench import cold

    L += cold.docs_section(ip)
    L += _auth_section(results.get("auth_service", {}), m)
    L += ["", "## Machine and versions", ""]
    L.append(f"- CPU: {m['cpu']}, {m['cores']} cores; {m['python']}; {m['platform']}")
    L.append(f"- redis-server: {m['redis_server']}; wrk: {m['wrk']}")
    L.append("- " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    L += [
        "",
        "Raw results: `bench/results/latest.json` (and one timestamped JSON per run). "
        "Run `python -m bench --help` for the options; `--quick` is a short smoke run.",
        "",
    ]
    return "\n".join(L)


def _auth_profile_table(rows: list[dict[str, Any]]) -> list[str]:
    L = [
        "| function (file:line) | calls/request | own µs/request | cumulative µs/request |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        L.append(
            f"| `{r['where']}` | {r['calls_per_request']:.1f} | {r['tottime_us']:.1f} | {r['cumtime_us']:.1f} |"
        )
    return L


def _auth_where(auth: dict[str, Any], store: str, ep: str) -> str:
    """One auth-service target's floor, CPU ratio and the top rows of its profile."""
    results = {"auth_service": auth}
    floor = auth_ratio(results, ep, "floor_redis") if store == "redis" else None
    off = auth_ratio(results, ep, f"{store}-nocache")
    parts = []
    row = next(
        (
            r
            for r in auth.get("loopback", {}).get("rows", [])
            if r["endpoint"] == ep and r["server"] == store
        ),
        {},
    )
    if row.get("cpu_ratio") is not None:
        parts.append(f"by server CPU per request {row['cpu_ratio']:.3f}")
    if floor is not None:
        parts.append(f"floor (bare + one redis-py call) {floor:.3f}")
    if off is not None:
        parts.append(f"key cache off {off:.3f}")
    text = "; ".join(parts)
    rows = (auth.get("profile") or {}).get(store, {}).get(ep, {})
    served = (auth.get("served_profile") or {}).get(store, {}).get(ep)
    head, n = "Top own time", 3
    if served:
        # One `bearerguard serve` worker under wrk: the server's own time only.
        rows, head, n = served, "Top own time (the worker under wrk, cProfile)", 4
    own = rows.get("by_own_time", [])[:n]
    ours = rows.get("bearerguard_by_cumulative", [])[:n]
    if own:
        text += f". {head}: " + ", ".join(f"`{r['where']}` {r['tottime_us']:.0f} µs" for r in own)
    if ours:
        text += ". bearerguard by cumulative: " + ", ".join(
            f"`{r['where']}` {r['cumtime_us']:.0f} µs" for r in ours
        )
    return text


def _auth_targets(auth: dict[str, Any]) -> list[str]:
    """Each auth-service target beside its floor and the top rows of its profile."""
    results = {"auth_service": auth}
    if auth_ratio(results, "login", "floor_redis") is None:
        return []  # a run from before the floor was measured
    L = ["", "### Targets, with where the time goes", ""]
    for store, limit in AUTH_TARGETS:
        for ep in ("introspect", "login"):
            ratio = auth_ratio(results, ep, store)
            L.append(
                f"- **/{ep} over {store}: {_fmt(ratio, 3)} × bare** (target ≥ {limit}); "
                + _auth_where(auth, store, ep)
                + "."
            )
    if auth.get("served_profile", {}).get("redis"):
        L += [
            "",
            "The worker's profile: `bearerguard serve` under `bench.auth_profiled` (cProfile on "
            "the event-loop thread from after a warm-up run to the end of the timed run), "
            "driven by wrk like the rows above; µs per request are inflated by the profiler, "
            "so read them as shares. `poll` is the loop waiting for the network (and for Redis).",
        ]
    return L


def _auth_section(auth: dict[str, Any], m: dict[str, Any]) -> list[str]:
    """The auth service: /login and /introspect under wrk, and its profile."""
    L = [
        "",
        "## The auth service: /login and /introspect",
        "",
        "Reproduce: `python -m bench --loopback` (both parts, in the full run), or "
        "`python -m bench.authservice --loopback` (this section alone, shorter runs, "
        "JSON on stdout). Code: `bench/authservice.py`, wrk script `bench/auth_post.lua`, "
        "bare app `bench.loopback_apps:auth_bare`.",
        "",
    ]
    lb = auth.get("loopback")
    L += ["### Under load (real servers on 127.0.0.1)", ""]
    if lb is None:
        L.append("Not run (`python -m bench --loopback`).")
    elif "unavailable" in lb:
        L.append(f"unavailable: {lb['unavailable']}")
    else:
        L += [
            "`bearerguard serve --host 127.0.0.1 --port P --store URL` over a temp SQLite file "
            "and over a throw-away redis-server, against bare uvicorn serving a Starlette app "
            "whose POST /login and /introspect read the body and answer the same-shaped JSON "
            "with no store and no checks. One key made with `bearerguard keys create --api dns "
            "--introspect --json`; one token from /login for the /introspect runs. Before "
            "timing, every server is checked: /login 200 with a token, /introspect 200 "
            "`active: true` for the right key and scope, and (bearerguard) a wrong secret 401; "
            "/introspect is checked again after the load.",
            "",
            f"Client: {lb['client']} (form POST with HTTP Basic; each `/introspect` sends the "
            f"same token), {lb['seconds_per_run']} s per run, {lb['reps']} "
            + (
                "runs per endpoint, in which every server is loaded at the same time, "
                "sharing one core (the kernel shares it out evenly, so all of them meet "
                "the same machine)"
                if lb.get("together")
                else "interleaved runs per server and endpoint"
            )
            + f", shuffled. Servers: {lb['servers']}. "
            + (
                f"Pinned: {lb['pinned']} (redis-server floats)."
                if lb.get("pinned", "no") != "no"
                else f"wrk shares the {_fmt(m['cores'])} cores with the server."
            ),
            "",
        ]
        # Runs from before the per-round ratios and the server's CPU time keep their table.
        cpu_rows = all("cpu_us_median" in r for r in lb["rows"])
        if cpu_rows:
            L += [
                "Ratio to bare: each run ÷ the bare run "
                + ("beside it" if lb.get("together") else "of its round")
                + ", the median of the "
                "rounds (spread: lowest–highest). Server CPU: user + system time of the server "
                "process (all its threads, not Redis's) per request; bare's ÷ a row's is the "
                "CPU ratio, the req/s ratio the server would reach CPU-bound on a core of its "
                "own — steadier than req/s while other work shares the machine.",
                "",
                "| endpoint | server | req/s (median) | runs | ratio to bare | spread | server CPU µs/request | CPU ratio | mean latency | non-2xx | socket errors |",
                "|---|---|---:|---|---:|---|---:|---:|---|---:|---|",
            ]
        else:
            L += [
                "| endpoint | server | req/s (median) | runs | ratio to bare | mean latency | non-2xx | socket errors |",
                "|---|---|---:|---|---:|---|---:|---|",
            ]
        for r in lb["rows"]:
            runs = ", ".join(f"{x:.0f}" for x in r["rps_runs"])
            cells = f"{_fmt(r.get('ratio_to_bare'), 3)} |"
            if cpu_rows:
                lo, hi = r["ratio_spread"]
                cells += f" {lo:.2f}–{hi:.2f} | {r['cpu_us_median']:.0f} | {r['cpu_ratio']:.3f} |"
            lat = ", ".join(r.get("latency_avg", []))
            errs = "; ".join(r.get("socket_errors", [])) or "none"
            name = {
                "bare": "bare uvicorn",
                "floor_redis": "floor: bare uvicorn + one redis-py call",
            }.get(r["server"], f"bearerguard serve, {r['server']}")
            L.append(
                f"| /{r['endpoint']} | {name} | {r['rps_median']:.0f} | {runs} | "
                f"{cells} {lat} | {r['non_2xx']} | {errs} |"
            )
    L += _auth_targets(auth)
    prof = auth.get("profile")
    L += ["", "### Profile of the top costs (in-process)", ""]
    if prof is None:
        L.append("Not run (`--no-profile`).")
        return L
    if "unavailable" in prof:
        L.append(f"unavailable: {prof['unavailable']}")
        return L
    L += [
        f"`bearerguard.server.create_app(open_store(url))` called through "
        f'`httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("{prof["peer"]}", 5000)))`, '
        f"{prof['requests']:,} requests per endpoint and store, first without and then under "
        "cProfile. The client is part of every request: the same loop against the bare "
        f"Starlette app costs **{prof['bare_us_per_request']:.0f} µs/request**. cProfile sees "
        + (
            "only the event-loop thread: the SQLite store runs its per-request statements on "
            "it (in a worker thread only when another connection holds the lock). The store "
            "calls are also timed alone, without the service or the client."
            if prof.get("sqlite_calls") == "inline first"
            else "only the event-loop thread: the SQLite store runs its statements in worker "
            "threads, so that time shows up as waiting (`select.epoll.poll`) and inside the "
            "store's `a…` methods' cumulative time. The store calls are also timed alone, "
            "without the service or the client."
        ),
        "",
        "| store | /login µs/request | /introspect µs/request | under cProfile (login / introspect) | store calls alone, µs/call |",
        "|---|---:|---:|---|---|",
    ]
    for store in ("sqlite", "redis"):
        p = prof.get(store, {})
        if "unavailable" in p or "login" not in p:
            L.append(f"| {store} | unavailable: {p.get('unavailable')} | | | |")
            continue
        steps = ", ".join(f"`{k}` {v:.0f}" for k, v in p.get("store_steps_us", {}).items())
        L.append(
            f"| {store} | {p['login']['us_per_request']:.0f} | {p['introspect']['us_per_request']:.0f} | "
            f"{p['login']['us_per_request_profiled']:.0f} / {p['introspect']['us_per_request_profiled']:.0f} | {steps} |"
        )
    L += ["", "Where the time goes (computed from the rows above):", ""]
    bare = prof["bare_us_per_request"]
    for store in ("sqlite", "redis"):
        p = prof.get(store, {})
        st = p.get("store_steps_us", {})
        if "login" not in p or not st:
            continue
        a = "a" if "aget_key" in st else ""
        for ep, write in (("login", "put_token"), ("introspect", "touch_token")):
            over = p[ep]["us_per_request"] - bare
            if "key_cache_ttl" not in p:  # a run from before the key cache
                calls = st[f"{a}get_key"] + st[f"{a}{write}"]
                sync = st["get_key (sync)"] + st[f"{write} (sync)"]
                L.append(
                    f"- {store} /{ep}: the service adds {over:.0f} µs over the bare loop; its two "
                    f"store calls (`get_key` + `{write}`) take {calls:.0f} µs as the service makes "
                    f"them ({calls / over:.0%} of it), {sync:.0f} µs through the sync face "
                    "called directly."
                )
                continue
            call = st[f"{a}{write}"]
            sync = st[f"{write} (sync)"]
            L.append(
                f"- {store} /{ep}: the service adds {over:.0f} µs over the bare loop; its one "
                f"store call a request (`{write}`; the caller's key record comes from the key "
                f"cache, one `get_key` ({st[f'{a}get_key']:.0f} µs) per key and second) takes "
                f"{call:.0f} µs as the service makes it ({call / over:.0%} of it), {sync:.0f} µs "
                "through the sync face called directly."
            )
    L += [
        "",
        "cProfile counts each resumption of a coroutine as a call and does not count the "
        "time a coroutine is suspended, so `calls/request` of `async def` functions is "
        "inflated and their cumulative time leaves out the waits.",
    ]
    for store in ("sqlite", "redis"):
        p = prof.get(store, {})
        for ep in ("login", "introspect"):
            if ep not in p:
                continue
            L += [
                "",
                f"**{store}, /{ep}** — top functions by own time (all code, client included):",
                "",
            ]
            L += _auth_profile_table(p[ep]["by_own_time"])
            L += ["", f"**{store}, /{ep}** — bearerguard functions by cumulative time:", ""]
            L += _auth_profile_table(p[ep]["bearerguard_by_cumulative"])
    return L


def write(results: dict[str, Any]) -> list[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = json.dumps(results, indent=1, default=str)
    paths = [RESULTS / f"{stamp}.json", RESULTS / "latest.json"]
    for p in paths:
        p.write_text(text + "\n")
    note = chart(results, CHART)
    if note is None:
        paths.append(CHART)
    else:
        print(f"bench: chart skipped: {note}", file=sys.stderr)
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(docs(results, note))
    paths.append(DOCS)
    return paths


def console(results: dict[str, Any]) -> str:
    out = []
    for r in results["inprocess"]["rows"]:
        if "median_us" not in r:
            out.append(f"{r['name']:28} unavailable: {r['unavailable']}")
            continue
        extra = ""
        if "overhead_us" in r:
            extra = f"  overhead {r['overhead_us']:8.2f} µs  ratio {r['ratio']:.3f}"
        if "vs_raw_overhead" in r:
            extra += f"  vs raw {r['vs_raw_overhead']:.2f}"
        out.append(f"{r['name']:28} {r['median_us']:10.2f} µs{extra}")
    auth = results.get("auth_service", {})
    for r in auth.get("loopback", {}).get("rows", []):
        out.append(
            f"auth /{r['endpoint']:10} {r['server']:7} {r['rps_median']:8.0f} req/s"
            f"  ratio {r['ratio_to_bare']:.3f}  non-2xx {r['non_2xx']}"
        )
    for store in ("sqlite", "redis"):
        p = auth.get("profile", {}).get(store, {})
        for ep in ("login", "introspect"):
            if ep in p:
                out.append(
                    f"auth in-process {store} /{ep}: {p[ep]['us_per_request']:.0f} µs/request"
                )
    for t in targets(results):
        ok = "n/a" if t["ok"] is None else ("OK " if t["ok"] else "NO ")
        out.append(f"[{ok}] {t['target']}: {_fmt(t['value'])}")
    return "\n".join(out)


def regenerate(path: Path = RESULTS / "latest.json") -> Path:
    """Rewrite docs/benchmarks.md from a saved results file (no measurement)."""
    results = json.loads(path.read_text())
    note = None if CHART.exists() else "no chart in bench/results/"
    DOCS.write_text(docs(results, note, page_commit=git_commit()))
    return DOCS


if __name__ == "__main__":
    print(
        f"wrote {regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / 'latest.json')}"
    )
