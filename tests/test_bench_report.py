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
    page = report.docs(edited, None)
    assert "7 cores" in page
    assert "2 cores" not in page
    assert "1,000" not in page.split("## Memory")[1].split("##")[0]
    assert "5,000 tokens, 50 keys, 50 distinct addresses" in page


def test_memory_verdict_names_its_scenario(results: dict[str, Any]) -> None:
    edited = copy.deepcopy(results)
    edited["memory"].update(tokens=100_000, keys=1_000, addresses=1_000, bytes_per_token=390.0)
    edited["memory_distinct"].update(
        tokens=100_000, keys=1_000, addresses=100_000, bytes_per_token=473.0
    )
    friendly, worst = _target(edited, "memory"), _target(edited, "memory_distinct")
    assert "shared-address scenario" in friendly["target"]
    assert "1,000 distinct addresses" in friendly["target"]
    assert "100,000 distinct addresses" in worst["target"]
    assert (friendly["ok"], worst["ok"]) == (True, False)
    # A run that did not record its scenario says so instead of guessing one.
    del edited["memory"]["keys"]
    assert "not recorded" in _target(edited, "memory")["target"]
