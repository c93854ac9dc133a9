"""bench/ab.py: a revision's package beside the working tree's, timed in one process."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from bench import ab

import bearerguard


def test_a_revision_loads_as_a_package_of_its_own() -> None:
    old = ab.load("HEAD")
    assert old.__name__.startswith("bearerguard_") and old is not bearerguard
    assert old.Guard is not bearerguard.Guard
    assert ab.load("HEAD") is old  # loaded once


def test_a_side_that_works_more_on_a_miss_reads_slower(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy whose cache insert spins 20 µs more: its misses read slower in nearly every
    round, its hits (which insert nothing) do not."""
    slow = ab.load("HEAD")
    put = slow.cache.TokenCache.put

    def slower(self: Any, *args: Any, **kwargs: Any) -> Any:
        until = time.thread_time_ns() + 20_000
        while time.thread_time_ns() < until:
            pass
        return put(self, *args, **kwargs)

    monkeypatch.setattr(slow.cache.TokenCache, "put", slower)
    result = asyncio.run(ab.measure({"tree": bearerguard, "slow": slow}, rounds=12, calls=30))
    for face in ("asgi", "wsgi"):
        assert result["ratio"][f"{face}_miss"] < 0.9
        assert result["rounds_faster"][f"{face}_miss"] >= 0.75
        assert result["slow"][f"{face}_miss"]["median_us"] > 20
        assert 0.5 < result["ratio"][f"{face}_hit"] < 2.0
    assert result["slow"]["package"] == slow.__name__


def test_the_command_prints_a_table_then_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert ab.main(["HEAD", "--rounds", "2", "--calls", "5"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["rounds"] == 2 and result["calls"] == 5
    assert set(result["ratio"]) == set(ab.KINDS)
    assert "ratio" in err and "asgi_miss" in err
