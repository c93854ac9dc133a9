"""``python -m bench.otel_rows [ROUNDS]``: only the OpenTelemetry rows and their twins.

The same variants and interleaved harness as ``make bench`` (bench/apps.py), for a quick
look at what tracing adds to the cached path: each otel row's overhead is the paired
median difference to its plain twin (its ``baseline``). Prints a table, writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from bearerguard import tokens
from bench import apps, harness, plumbing

NAMES = (
    "starlette",
    "flask",
    "bg_asgi",
    "bg_wsgi",
    "bg_asgi_otel",
    "bg_wsgi_otel",
    "bg_asgi_span",
    "bg_asgi_otel_span",
)


def _hot_path(rounds: int, n: int = 20_000) -> None:
    """`cached_identity` alone, Guard vs TracedGuard, interleaved: the cached path's Δ."""
    import random
    import statistics
    import time

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from bearerguard import Guard
    from bearerguard.flow import RequestFacts
    from bearerguard.otel import TracedGuard

    token = tokens.generate()
    backend = apps._memory_backend(token)
    provider = TracerProvider()
    guards = {"plain": Guard(api="dns"), "otel": TracedGuard(api="dns", tracer_provider=provider)}
    auth = f"Bearer {token}"
    for guard in guards.values():  # one decision through the core fills the cache
        flow = guard.authenticate(RequestFacts("/whoami", (auth,), (), plumbing.PEER[0]))
        with contextlib.suppress(StopIteration):
            flow.send(backend.lookup(next(flow).token))
        assert guard.cached_identity(auth.encode(), plumbing.PEER[0]) is not None

    def batch(guard: Guard) -> float:
        f, a, peer = guard.cached_identity, auth.encode(), plumbing.PEER[0]
        t0 = time.perf_counter_ns()
        for _ in range(n):
            f(a, peer)
        return (time.perf_counter_ns() - t0) / n / 1000.0

    rng = random.Random(6)
    server = provider.get_tracer("bench").start_span("GET /whoami")
    for label, recording in (("no recording span", False), ("recording server span", True)):
        samples: dict[str, list[float]] = {k: [] for k in guards}
        with trace.use_span(server) if recording else contextlib.nullcontext():
            for _ in range(rounds):
                order = list(guards)
                rng.shuffle(order)
                for k in order:
                    samples[k].append(batch(guards[k]))
        paired = [b - a for a, b in zip(samples["plain"], samples["otel"], strict=True)]
        q = statistics.quantiles(paired, n=4)
        lows = {k: min(v) for k, v in samples.items()}  # the least disturbed batch
        print(
            f"| cached_identity, {label} | {statistics.median(samples['plain']):.3f} | "
            f"{statistics.median(samples['otel']):.3f} | {statistics.median(paired):.3f} | "
            f"{q[0]:.3f} to {q[2]:.3f} | {lows['otel'] - lows['plain']:.3f} |"
        )
    server.end()


async def main(rounds: int) -> None:
    env = plumbing.Env(token=tokens.generate())
    built = await plumbing.build_all(env)
    variants = [v for v in built if v.name in NAMES]
    try:
        await harness.verify(variants)
        raw = await harness.run(variants, rounds=rounds, target_s=0.015)
        print("| variant | µs/request | Δ vs | Δ µs (paired median) | p25 to p75 |")
        print("|---|---:|---|---:|---:|")
        for r in harness.summarize(variants, raw):
            if "median_us" not in r:
                print(f"| {r['name']} | unavailable: {r['unavailable']} | | | |")
                continue
            delta = spread = ""
            if "overhead_us" in r:
                delta = f"{r['overhead_us']:.2f}"
                spread = f"{r['overhead_p25_us']:.2f} to {r['overhead_p75_us']:.2f}"
            base = r["baseline"] or ""
            print(f"| {r['name']} | {r['median_us']:.2f} | {base} | {delta} | {spread} |")
    finally:
        await plumbing.close_all(built)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    asyncio.run(main(rounds))
    print()
    print(
        "| hot path alone | Guard µs | TracedGuard µs | Δ µs (paired median) | p25 to p75 "
        "| Δ of the fastest batches µs |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    _hot_path(rounds * 5)
