"""docs/benchmarks.md: every figure is read from the run's JSON, and every verdict can fail.

`bench/report.py` turns `bench/results/latest.json` into the page; these tests feed it
that file (and edited copies of it) and read what it prints.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from bench import report

ROOT = Path(__file__).resolve().parents[1]

LATEST = ROOT / "bench" / "results" / "latest.json"
PAGE = ROOT / "docs" / "benchmarks.md"


@pytest.fixture
def results() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LATEST.read_text())
    return data


def _target(results: dict[str, Any], tid: str) -> dict[str, Any]:
    return next(t for t in report.targets(results) if t["id"] == tid)


def test_committed_page_is_what_the_report_makes_of_the_committed_json(
    results: dict[str, Any],
) -> None:
    """Nobody edits the page by hand: it regenerates byte for byte from latest.json."""
    page = PAGE.read_text()
    m = re.search(r"by `python -m bench\.report` at commit `([^`]+)`", page)
    commit = m.group(1) if m else None
    chart_note = None if report.CHART.exists() else "no chart in bench/results/"
    assert report.docs(results, chart_note, page_commit=commit) == page


def test_redis_round_trips_come_from_the_keys_checks_writes(results: dict[str, Any]) -> None:
    page = report.docs(results, None)
    rr = results["inprocess"]["facts"]["redis_round_trips"]
    line = next(x for x in page.splitlines() if x.startswith("- Redis store, per cold lookup"))
    assert f"{rr['round_trips_per_lookup']:.2f} round trip(s)" in line
    for command, per_lookup in rr["server_commands_per_lookup"].items():
        assert f"`{command}` {per_lookup:.2f}" in line
    assert "None" not in page
    assert "—" not in line


@pytest.mark.parametrize(
    ("tid", "path"),
    [
        ("single_flight_asgi", ("single_flight", "asgi_backend_calls")),
        ("single_flight_wsgi", ("single_flight", "wsgi_backend_calls")),
        ("redis_round_trips", ("redis_round_trips", "round_trips_per_lookup")),
        ("sqlite_statements", ("sqlite_statements", "statements_per_lookup")),
    ],
)
def test_counted_targets_are_met_by_exactly_one(
    results: dict[str, Any], tid: str, path: tuple[str, str]
) -> None:
    verdicts = {}
    for value in (0, 1, 2):
        edited = copy.deepcopy(results)
        edited["inprocess"]["facts"][path[0]][path[1]] = value
        verdicts[value] = _target(edited, tid)["ok"]
    assert verdicts == {0: False, 1: True, 2: False}


def test_machine_prose_follows_the_data(results: dict[str, Any]) -> None:
    edited = copy.deepcopy(results)
    edited["machine"]["cores"] = 7
    edited["memory"].update(tokens=5_000, keys=50, addresses=50)
    edited["memory_distinct"].update(tokens=5_000, keys=50, addresses=5_000)
    page = report.docs(edited, None)
    assert "7 cores" in page
    assert "2 cores" not in page
    assert "1,000" not in page.split("## Memory")[1].split("##")[0]
    assert "5,000 tokens, 50 keys, 50 distinct addresses" in page


def test_memory_verdict_names_its_scenario(results: dict[str, Any]) -> None:
    edited = copy.deepcopy(results)
    edited["memory_distinct"].update(
        tokens=100_000, keys=1_000, addresses=100_000, bytes_per_token=473.0
    )
    worst = _target(edited, "memory_distinct")
    assert "100,000 distinct addresses" in worst["target"]
    assert worst["ok"] is False
    edited["memory_distinct"]["bytes_per_token"] = 399.0
    assert _target(edited, "memory_distinct")["ok"] is True
    # A run that did not record its scenario says so instead of guessing one.
    del edited["memory_distinct"]["keys"]
    assert "not recorded" in _target(edited, "memory_distinct")["target"]


@pytest.mark.parametrize(("face", "ours", "ref"), [("asgi", 2.4, 2.0), ("wsgi", 2.6, 2.0)])
def test_cached_ratio_is_overhead_over_the_minimal_reference(
    results: dict[str, Any], face: str, ours: float, ref: float
) -> None:
    edited = copy.deepcopy(results)
    edited.pop("hotpath", None)  # a run from before bench/hotpath.py: the paired overheads
    rows = edited["inprocess"]["rows"]
    rows[:] = [r for r in rows if r["name"] not in (f"bg_{face}", f"minimal_{face}")]
    for name, value in ((f"bg_{face}", ours), (f"minimal_{face}", ref)):
        rows.append({"name": name, "median_us": 20.0, "overhead_us": value})
    target = _target(edited, f"{face}_cached_vs_minimal")
    assert target["value"] == pytest.approx(ours / ref)
    assert target["ok"] is (ours / ref <= 1.25)
    rows.pop()  # no reference row: no verdict rather than a made-up one
    assert _target(edited, f"{face}_cached_vs_minimal")["ok"] is None


@pytest.mark.parametrize("face", ["asgi", "wsgi"])
def test_cached_ratio_comes_from_the_cached_path_alone(results: dict[str, Any], face: str) -> None:
    # bench/hotpath.py: (bearerguard - floor) ÷ (minimal - floor) at the low quantile,
    # the contract floor named beside it.
    edited = copy.deepcopy(results)
    base = "asgi_noop" if face == "asgi" else "wsgi_bare"
    us = {base: 0.5, f"{face}_minimal": 1.5, f"{face}_contract": 1.9, f"{face}_bearerguard": 1.7}
    edited["hotpath"]["us"].update({k: {"low": v, "median": v + 0.1} for k, v in us.items()})
    from bench import hotpath

    for name in ("bearerguard", "contract"):
        edited["hotpath"]["ratios"][f"{face}_{name}"] = hotpath.ratio(edited["hotpath"], face, name)
    target = _target(edited, f"{face}_cached_vs_minimal")
    assert (target["value"], target["ok"]) == (pytest.approx(1.2), True)
    assert "= **1.40**" in target["where"]


def _with_loopback(results: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A copy of `results` whose loopback rows are one uvicorn pair: worst run 0.96."""
    edited = copy.deepcopy(results)
    rows = [
        {"name": "uvicorn_starlette", "rps_runs": [1000.0, 1000.0, 1000.0]},
        {"name": "uvicorn_bearerguard", "rps_runs": [990.0, 960.0, 1001.0], "ratio": 0.99},
    ]
    edited["loopback"] = {"rows": rows}
    return edited, rows


def test_loopback_needs_every_run_at_the_limit(results: dict[str, Any]) -> None:
    edited, rows = _with_loopback(results)
    target = _target(edited, "loopback_uvicorn")
    assert (target["value"], target["ok"]) == (pytest.approx(0.96), True)
    rows[1]["rps_runs"][2] = 940.0  # one run of three below 0.95: not met
    assert _target(edited, "loopback_uvicorn")["ok"] is False
    rows[1]["rps_runs"].pop()  # fewer than three runs: no verdict
    assert _target(edited, "loopback_uvicorn")["ok"] is None


def test_loopback_names_its_control_pair(results: dict[str, Any]) -> None:
    # Two processes of the same bare app: their ratio is the comparison's own noise.
    edited, rows = _with_loopback(results)
    assert "same bare app" not in _target(edited, "loopback_uvicorn")["where"]
    rows += [
        {"name": "uvicorn_twin_a", "rps_runs": [1000.0, 1000.0, 1000.0]},
        {"name": "uvicorn_twin_b", "rps_runs": [1010.0, 910.0, 1080.0], "ratio": 1.01},
    ]
    where = _target(edited, "loopback_uvicorn")["where"]
    assert "two processes of the same bare app" in where
    assert "worst run 0.910, median 1.010" in where
    assert _target(edited, "loopback_uvicorn")["ok"] is True  # the verdict stays ours


def test_loopback_names_its_floor(results: dict[str, Any]) -> None:
    # The contract floor loaded in the same runs: what bearerguard's row is compared to.
    edited, rows = _with_loopback(results)
    assert "ContractFloorMiddleware" not in _target(edited, "loopback_uvicorn")["where"]
    rows.append({"name": "uvicorn_contract", "rps_runs": [980.0, 975.0, 990.0], "ratio": 0.98})
    where = _target(edited, "loopback_uvicorn")["where"]
    assert "`ContractFloorMiddleware`) ÷ bare, measured the same way: worst run 0.975" in where
    assert _target(edited, "loopback_uvicorn")["value"] == pytest.approx(0.96)


def test_auth_rows_show_the_round_spread_the_server_cpu_and_the_served_profile(
    results: dict[str, Any],
) -> None:
    """A run with per-round ratios, server CPU time and a worker profile prints all three."""
    data = copy.deepcopy(results)
    auth = data["auth_service"]
    for r in auth["loopback"]["rows"]:
        bare = r["server"] == "bare"
        r["ratio_spread"] = [1.0, 1.0] if bare else [0.41, 0.57]
        r["cpu_us_median"] = 400.0 if bare else 1000.0
        r["cpu_ratio"] = 1.0 if bare else 0.4
    top = {"where": "bearerguard/server/endpoints.py:62(login)", "tottime_us": 42.0}
    auth["served_profile"] = {
        "redis": {
            "login": {
                "by_own_time": [{"where": "~:0(<method 'send'>)", "tottime_us": 227.0}],
                "bearerguard_by_cumulative": [dict(top, cumtime_us=1346.0)],
            }
        }
    }
    page = report.docs(data, None, page_commit="test")
    assert "| ratio to bare | spread | server CPU µs/request | CPU ratio |" in page
    row = next(
        line
        for line in page.splitlines()
        if line.startswith("| /login | bearerguard serve, redis |")
    )
    assert "| 0.41\u20130.57 | 1000 | 0.400 |" in row
    target = next(line for line in page.splitlines() if line.startswith("- **/login over redis"))
    assert "by server CPU per request 0.400" in target
    assert "Top own time (the worker under wrk, cProfile): `~:0(<method 'send'>)` 227 µs" in target
    assert "`bearerguard/server/endpoints.py:62(login)` 1346 µs" in target
    # Without a worker profile, the in-process profile's rows stand there as before.
    other = next(line for line in page.splitlines() if line.startswith("- **/login over sqlite"))
    assert "Top own time: " in other


def test_every_ratio_target_says_where_its_time_goes(results: dict[str, Any]) -> None:
    # Issue 18: each target's row carries the profile's top rows (or, for memory, the
    # bytes by line) from the same run; the counted facts need none.
    counted = ("single_flight_", "redis_round_trips", "sqlite_statements")
    for t in report.targets(results):
        if t["id"].startswith(counted):
            continue
        assert t["where"], t["id"]
        if t["id"].startswith(("cold_", "auth_")):
            assert "µs" in t["where"], t["id"]  # profile rows, not just a ratio
    intro = _target(results, "cold_introspection_asgi")
    assert "by the process's CPU time" in intro["how"]
    assert "the rest (httpx, sockets, event loop, app)" in intro["where"]
    assert "redis-py" not in intro["where"]
    login = _target(results, "auth_redis_login")
    assert "Top own time" in login["where"] and "bearerguard by cumulative" in login["where"]
