"""The cold targets in docs/benchmarks.md: the Redis rows and the floors come from the run.

Fed an edited copy of `bench/results/latest.json` with the rows a run of `bench.cold`
adds (the raw EVALSHA references, the cold profile); every figure must follow the data.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from bench import cold, report

ROOT = Path(__file__).resolve().parents[1]

LATEST = ROOT / "bench" / "results" / "latest.json"


def _set(rows: list[dict[str, Any]], name: str, **values: float) -> None:
    row = next((r for r in rows if r["name"] == name), None)
    if row is None:
        row = {"name": name, "label": name, "group": "raw", "face": "asgi", "note": ""}
        row.update(p25_us=0.0, p75_us=0.0, min_us=0.0, rounds=1, batch=1)
        rows.append(row)
    row.update(values)


@pytest.fixture
def results() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LATEST.read_text())
    rows = data["inprocess"]["rows"]
    # A run without the in-app and contract floors; the tests that want them add them.
    rows[:] = [
        r
        for r in rows
        if not r["name"].startswith(("floor_", "bg_cold_rawredis_", "contract_miss_"))
    ]
    # Rows timed once, as before `cold.repeated`; the test of its runs adds them.
    data["inprocess"].pop("cold_runs", None)
    for r in rows:  # and without CPU times; the test that wants them adds them
        r.pop("cpu_overhead_us", None)
        r.pop("cpu_median_us", None)
    for face, bare in (("asgi", 10.0), ("wsgi", 30.0)):
        _set(rows, f"bg_cold_memory_{face}", median_us=bare + 40.0, overhead_us=40.0)
        ref = "raw_evalsha_async" if face == "asgi" else "raw_evalsha_sync"
        _set(rows, ref, median_us=200.0)
        _set(
            rows,
            f"bg_cold_redis_{face}",
            median_us=bare + 300.0,
            overhead_us=300.0,
            vs_raw_overhead=1.5,
        )
    data["inprocess"].setdefault("profile", {})["cold"] = {
        "requests": 1000,
        "bg_cold_redis_asgi": [
            {
                "where": "~:0(<method 'send' of '_socket.socket' objects>)",
                "ours": False,
                "calls_per_request": 1.0,
                "tottime_us": 123.4,
                "cumtime_us": 123.4,
            }
        ],
    }
    return data


def test_redis_targets_are_judged_with_their_floor(results: dict[str, Any]) -> None:
    targets = {t["id"]: t for t in report.targets(results)}
    for face in ("asgi", "wsgi"):
        t = targets[f"cold_redis_{face}"]
        assert t["value"] == 1.5 and t["limit"] == 1.2 and t["ok"] is False
        # floor = (memory miss 40 + raw 200) / raw 200
        assert "= 1.20" in t["how"]
    edited = copy.deepcopy(results)
    _set(edited["inprocess"]["rows"], "bg_cold_redis_asgi", vs_raw_overhead=1.1)
    assert {t["id"]: t for t in report.targets(edited)}["cold_redis_asgi"]["ok"] is True


def test_a_run_without_the_reference_has_no_redis_target(results: dict[str, Any]) -> None:
    edited = copy.deepcopy(results)
    edited["inprocess"]["rows"] = [
        r for r in edited["inprocess"]["rows"] if not r["name"].startswith("raw_evalsha")
    ]
    assert not [t for t in report.targets(edited) if t["id"].startswith("cold_redis")]


def test_the_page_splits_each_cold_row_from_the_same_run(results: dict[str, Any]) -> None:
    page = report.docs(results, None)
    section = page.split("## Where the cold paths' time goes")[1].split("\n## ")[0]
    line = next(x for x in section.splitlines() if x.startswith("| `bg_cold_redis_wsgi`"))
    # over bare 300, raw 200, miss work 40, beyond raw 300 - 40 - 200 = 60, 1.50, floor 1.20
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:] == [
        "300.0",
        "200.0 (`raw_evalsha_sync`)",
        "40.0",
        "60.0",
        "1.50",
        "1.20",
    ]  # and no in-app floor column: this run has no floor_evalsha rows
    assert "| 123.4 |" in section  # the profile's own-time row
    assert cold.docs_section({"rows": results["inprocess"]["rows"], "profile": {}}) == []


def test_the_redis_targets_name_the_in_app_floor_and_where_the_time_goes(
    results: dict[str, Any],
) -> None:
    edited = copy.deepcopy(results)
    rows = edited["inprocess"]["rows"]
    _set(rows, "floor_evalsha_wsgi", median_us=30.0 + 230.0, overhead_us=230.0)
    _set(rows, "bg_cold_rawredis_wsgi", median_us=30.0 + 290.0, overhead_us=290.0)
    edited["inprocess"]["profile"]["cold"]["split"] = {
        "bg_cold_redis_wsgi": {
            "bearerguard_us": 41.5,
            "redis_py_us": 52.0,
            "rest_us": 180.0,
            "top_ours": [["bearerguard/flow.py:302(_decide)", 9.5]],
        },
        "raw_evalsha_sync": {
            "bearerguard_us": 0.0,
            "redis_py_us": 47.0,
            "rest_us": 100.0,
            "top_ours": [],
        },
    }
    t = {t["id"]: t for t in report.targets(edited)}
    wsgi, asgi = t["cold_redis_wsgi"], t["cold_redis_asgi"]
    assert "bare app + one raw EVALSHA, over the bare app: 1.15" in wsgi["how"]  # 230 / 200
    assert "bare app + one raw EVALSHA" not in asgi["how"]  # no such row for ASGI
    assert "exactly that EVALSHA (`bg_cold_rawredis`): 1.45" in wsgi["how"]  # 290 / 200
    assert "bg_cold_rawredis" not in asgi["how"]
    assert (
        "bearerguard 41.5" in wsgi["where"]
        and "`bearerguard/flow.py:302(_decide)` 9.5" in (wsgi["where"])
    )
    assert "redis-py 52.0 (in `raw_evalsha_sync` alone: 47.0)" in wsgi["where"]
    assert asgi["where"] == "not profiled"
    page = report.docs(edited, None)
    section = page.split("## Where the cold paths' time goes")[1].split("\n## ")[0]
    line = next(x for x in section.splitlines() if x.startswith("| `bg_cold_redis_wsgi`"))
    assert line.rstrip().endswith("| 1.20 | 1.15 |")


def test_the_cold_rows_show_the_ratio_by_cpu_time_when_the_run_has_it(
    results: dict[str, Any],
) -> None:
    assert "CPU" not in {t["id"]: t for t in report.targets(results)}["cold_redis_asgi"]["how"]
    edited = copy.deepcopy(results)
    rows = edited["inprocess"]["rows"]
    _set(rows, "bg_cold_redis_asgi", cpu_overhead_us=210.0)
    _set(rows, "raw_evalsha_async", cpu_median_us=175.0)
    t = {t["id"]: t for t in report.targets(edited)}
    # 210 / 175: the wall-clock verdict stays the target's.
    assert "by the process's CPU time" in t["cold_redis_asgi"]["how"]
    assert "210.0 µs over the bare app ÷ 175.0 µs = 1.20" in t["cold_redis_asgi"]["how"]
    assert t["cold_redis_asgi"]["value"] == 1.5 and t["cold_redis_asgi"]["ok"] is False
    assert "CPU" not in t["cold_redis_wsgi"]["how"]  # no CPU figures for that row
    section = report.docs(edited, None).split("## Where the cold paths' time goes")[1]
    line = next(x for x in section.splitlines() if x.startswith("| `bg_cold_redis_asgi`"))
    assert line.rstrip().endswith("| 1.50 | 1.20 | 1.20 |")  # ratio, floor, by CPU
    line = next(x for x in section.splitlines() if x.startswith("| `bg_cold_redis_wsgi`"))
    assert line.rstrip().endswith("| 1.50 | 1.20 | — |")


def test_the_harness_keeps_wall_and_cpu_time_apart() -> None:
    # A call that sleeps costs wall time, not CPU time; the summary pairs each.
    import asyncio
    import time

    from bench import harness, plumbing

    def nap() -> None:
        time.sleep(0.002)

    def bare() -> None:
        return None

    variants = [
        plumbing.Variant("bare", "bare", "raw", None, False),
        plumbing.Variant("nap", "nap", "raw", "bare", False),
    ]
    for v, call in zip(variants, (bare, nap), strict=True):
        v.call, v.check = call, lambda: (200, b"")
    raw = asyncio.run(harness.run(variants, rounds=3, target_s=0.004, progress=False))
    rows = {r["name"]: r for r in harness.summarize(variants, raw)}
    assert rows["nap"]["overhead_us"] > 1_500  # the 2 ms sleep, on the wall clock
    assert rows["nap"]["cpu_overhead_us"] < 500  # and hardly any CPU
    assert rows["nap"]["cpu_median_us"] < rows["nap"]["median_us"]


def test_the_cold_targets_read_the_median_of_their_own_runs(results: dict[str, Any]) -> None:
    """With `cold.repeated`'s runs in the results, each cold target is their median,
    the row names every run, and the page's split is each figure's median."""
    edited = copy.deepcopy(results)

    def split(ratio: float, over: float) -> dict[str, float]:
        return {
            "over_bare": over,
            "raw": 200.0,
            "miss_bookkeeping": 40.0,
            "backend_beyond_raw": over - 240.0,
            "ratio": ratio,
            "floor_ratio": 1.2,
        }

    runs = [(1.30, 260.0), (1.10, 220.0), (1.15, 230.0)]
    edited["inprocess"]["cold_runs"] = {
        "rounds": 20,
        "target_batch_ms": 15.0,
        "runs": [
            {name: split(ratio, over) for name, _ref, _bare in cold.TARGETS} for ratio, over in runs
        ],
    }
    t = {t["id"]: t for t in report.targets(edited)}
    for target in ("cold_redis_asgi", "cold_redis_wsgi", "cold_introspection_wsgi"):
        assert t[target]["value"] == 1.15  # not the in-process row's 1.5
        assert "the median of 3 runs of the cold rows alone" in t[target]["how"]
        assert "1.30, 1.10, 1.15" in t[target]["how"]
    assert t["cold_redis_asgi"]["ok"] is True and t["cold_introspection_wsgi"]["ok"] is False
    section = report.docs(edited, None).split("## Where the cold paths' time goes")[1]
    assert "3 runs of 20 interleaved rounds" in section
    line = next(x for x in section.splitlines() if x.startswith("| `bg_cold_redis_wsgi`"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:7] == ["230.0", "200.0 (`raw_evalsha_sync`)", "40.0", "-10.0", "1.15", "1.20"]


def test_the_introspection_targets_name_their_in_app_floor(results: dict[str, Any]) -> None:
    """The bare app making the one raw httpx POST itself: the floor of an introspection row."""
    edited = copy.deepcopy(results)
    rows = edited["inprocess"]["rows"]
    raw = next(r for r in rows if r["name"] == "raw_httpx_sync")["median_us"]
    _set(rows, "floor_httpx_wsgi", median_us=30.0 + raw * 1.08, overhead_us=raw * 1.08)
    t = {t["id"]: t for t in report.targets(edited)}
    assert (
        "bare app + one raw httpx POST, over the bare app: 1.08"
        in (t["cold_introspection_wsgi"]["how"])
    )
    assert "bare app + one raw" not in t["cold_introspection_asgi"]["how"]


def test_the_cold_targets_name_the_contract_s_miss_work(results: dict[str, Any]) -> None:
    """The contract's miss work as one function: its overhead beside bearerguard's, and
    the floor it makes with the raw call, in the row and in the page's table."""
    edited = copy.deepcopy(results)
    rows = edited["inprocess"]["rows"]
    _set(rows, "contract_miss_wsgi", median_us=30.0 + 30.0, overhead_us=30.0)
    t = {t["id"]: t for t in report.targets(edited)}
    assert (
        "the contract's miss work as one function (`contract_miss_wsgi`, 30.0 µs against "
        "bearerguard's 40.0) + raw_evalsha_sync: 1.15"
    ) in t["cold_redis_wsgi"]["how"]
    assert "contract_miss" not in t["cold_redis_asgi"]["how"]  # no such row for ASGI
    section = report.docs(edited, None).split("## Where the cold paths' time goes")[1]
    line = next(x for x in section.splitlines() if x.startswith("| `bg_cold_redis_wsgi`"))
    assert line.rstrip().endswith("| 1.50 | 1.20 | 30.0 | 1.15 |")
    line = next(x for x in section.splitlines() if x.startswith("| `bg_cold_redis_asgi`"))
    assert line.rstrip().endswith("| 1.50 | 1.20 | — | — |")
