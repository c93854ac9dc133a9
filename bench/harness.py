"""Interleaved in-process timing: round-robin over variants, each round a timed batch."""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.plumbing import Variant

perf_ns = time.perf_counter_ns
# This thread's CPU time: the caller's own work (an event loop's included), not the time
# spent waiting for a peer (redis-server, the introspection server: other processes).
cpu_ns = time.thread_time_ns


async def _abatch(call: Callable[[], Any], n: int) -> tuple[int, int]:
    c0, t0 = cpu_ns(), perf_ns()
    for _ in range(n):
        await call()
    return perf_ns() - t0, cpu_ns() - c0


def _sbatch(call: Callable[[], Any], n: int) -> tuple[int, int]:
    c0, t0 = cpu_ns(), perf_ns()
    for _ in range(n):
        call()
    return perf_ns() - t0, cpu_ns() - c0


async def batch(v: Variant, n: int) -> tuple[int, int]:
    """Run `n` calls of `v`: (wall ns, this thread's CPU ns)."""
    assert v.call is not None
    if v.is_async:
        return await _abatch(v.call, n)
    return _sbatch(v.call, n)


async def run_check(v: Variant) -> tuple[int, bytes]:
    assert v.check is not None
    result = v.check()
    if asyncio.iscoroutine(result):
        result = await result
    status, body = result
    return int(status), bytes(body)


async def verify(variants: list[Variant]) -> None:
    """Mark variants whose request is not answered as expected as unavailable."""
    for v in variants:
        if v.unavailable is not None:
            continue
        try:
            status, body = await run_check(v)
        except Exception as exc:
            v.unavailable = f"check raised {type(exc).__name__}: {str(exc)[:120]}"
            continue
        if status != v.expect_status:
            v.unavailable = f"check failed: HTTP {status} {body[:120]!r}"


async def calibrate(v: Variant, target_s: float) -> int:
    """Warm `v` up and return the batch size that takes about `target_s` seconds."""
    n, spent = 1, 0
    while True:
        spent, _ = await batch(v, n)
        if spent > 2_000_000 or n >= 4096:  # 2 ms or many calls: good enough estimate
            break
        n *= 4
    per_call = spent / n / 1e9
    return max(1, min(50_000, round(target_s / per_call)))


def quantile(xs: list[float], q: float) -> float:
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[round(q * 100) - 1]


async def run(
    variants: list[Variant],
    *,
    rounds: int,
    target_s: float,
    seed: int = 6,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Time every available variant; return per-variant samples (µs/request per round),
    wall clock (``samples_us``) and this thread's CPU time (``cpu_samples_us``)."""
    live = [v for v in variants if v.unavailable is None]
    batches = {}
    for v in live:
        batches[v.name] = await calibrate(v, target_s)
    samples: dict[str, list[float]] = {v.name: [] for v in live}
    cpu: dict[str, list[float]] = {v.name: [] for v in live}
    rng = random.Random(seed)
    t_start = time.monotonic()
    for r in range(rounds):
        order = live[:]
        rng.shuffle(order)
        for v in order:
            n = batches[v.name]
            ns, cpu_spent = await batch(v, n)
            samples[v.name].append(ns / n / 1000.0)
            cpu[v.name].append(cpu_spent / n / 1000.0)
            await asyncio.sleep(0)  # let background refreshes run between batches
        if progress and (r + 1) % max(1, rounds // 5) == 0:
            print(
                f"  round {r + 1}/{rounds} ({time.monotonic() - t_start:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    await verify(live)  # still answering 200 after the run
    return {
        v.name: {
            "samples_us": samples[v.name],
            "cpu_samples_us": cpu[v.name],
            "batch": batches[v.name],
        }
        for v in live
        if v.unavailable is None
    }


def _paired(raw: dict[str, dict[str, Any]], name: str, base: str, key: str) -> list[float]:
    """Each round's `key` sample of `name` minus `base`'s in the same round."""
    return [a - b for a, b in zip(raw[name][key], raw[base][key], strict=False)]


def summarize(variants: list[Variant], raw: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians, spreads, paired overheads and ratios to the baseline of the same run."""
    rows: list[dict[str, Any]] = []
    med = {name: statistics.median(d["samples_us"]) for name, d in raw.items()}
    for v in variants:
        row: dict[str, Any] = {
            "name": v.name,
            "label": v.label,
            "group": v.group,
            "face": "asgi" if v.is_async else "wsgi",
            "baseline": v.baseline,
            "note": v.note,
        }
        if v.name not in raw:
            row["unavailable"] = v.unavailable or "not measured"
            rows.append(row)
            continue
        xs = raw[v.name]["samples_us"]
        if "cpu_samples_us" in raw[v.name]:
            row["cpu_median_us"] = statistics.median(raw[v.name]["cpu_samples_us"])
        row.update(
            median_us=med[v.name],
            p25_us=quantile(xs, 0.25),
            p75_us=quantile(xs, 0.75),
            min_us=min(xs),
            rounds=len(xs),
            batch=raw[v.name]["batch"],
        )
        if v.baseline and v.baseline in raw:
            paired = _paired(raw, v.name, v.baseline, "samples_us")
            row["overhead_us"] = statistics.median(paired)
            row["overhead_p25_us"] = quantile(paired, 0.25)
            row["overhead_p75_us"] = quantile(paired, 0.75)
            row["ratio"] = med[v.name] / med[v.baseline]
            if "cpu_samples_us" in raw[v.name] and "cpu_samples_us" in raw[v.baseline]:
                row["cpu_overhead_us"] = statistics.median(
                    _paired(raw, v.name, v.baseline, "cpu_samples_us")
                )
        if v.compare_to and v.compare_to in raw:
            ref = med[v.compare_to]
            row["compare_to"] = v.compare_to
            row["vs_raw_total"] = med[v.name] / ref
            if "overhead_us" in row:
                row["vs_raw_overhead"] = row["overhead_us"] / ref
        rows.append(row)
    return rows
