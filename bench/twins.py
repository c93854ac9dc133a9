"""Two processes of the same bare app, compared two ways: why the loopback bench loads a
pair's servers at the same time.

Each trial starts a fresh pair (`loopback.TWINS`, pinned like the bench's) and reads
B ÷ A twice, in an order that alternates between trials:

* one after the other: A B B A, each a quarter of `seconds` (the bench's method before);
* together: both loaded at once for `seconds`, sharing the server core (the bench's now).

Both servers run the same code, so every distance from 1.00 is the method's own noise.
Also printed: how much one server's req/s changes from one 1-second run to the next.

    python -m bench.twins [--trials N] [--seconds S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from bearerguard import tokens
from bench import loopback


def trial(
    wrk: str | None, token: str, seconds: float, together_first: bool, split: Any
) -> dict[str, float]:
    """One fresh pair: B ÷ A one after the other and together, and A's 1-s req/s spread."""
    server_cpus, client_cpus = split if split is not None else (None, None)
    names = sorted({*loopback.TWINS, *loopback.TWINS.values()})
    procs = loopback.start_servers(names, token, server_cpus)
    try:
        urls = {name: loopback.whoami_url(port) for name, (_, port) in procs.items()}
        pids = {name: proc.pid for name, (proc, _) in procs.items()}
        a, b = sorted(urls)
        loopback.together(wrk, urls, pids, token, 1.0, 16, client_cpus)  # warm up
        out: dict[str, float] = {}
        for method in ("together", "apart") if together_first else ("apart", "together"):
            if method == "together":
                got = loopback.together(wrk, urls, pids, token, seconds, 16, client_cpus)
                out[method] = got[b]["rps"] / got[a]["rps"]
            else:
                rps: dict[str, list[float]] = {a: [], b: []}
                for name in (a, b, b, a):
                    run = loopback.load(wrk, urls[name], token, seconds / 4, 16, client_cpus)
                    rps[name].append(run["rps"])
                out[method] = statistics.fmean(rps[b]) / statistics.fmean(rps[a])
        alone = [loopback.load(wrk, urls[a], token, 1.0, 16, client_cpus)["rps"] for _ in range(6)]
        out["alone_cv"] = statistics.stdev(alone) / statistics.fmean(alone)
        return out
    finally:
        for proc, _ in procs.values():
            proc.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.twins", description=__doc__)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args(argv)
    wrk = loopback.ensure_wrk(False)
    split = loopback.cores() if wrk else None
    token = tokens.generate()
    rows = []
    for i in range(args.trials):
        rows.append(trial(wrk, token, args.seconds, i % 2 == 0, split))
        print(f"  trial {i + 1}/{args.trials}", file=sys.stderr, flush=True)
    print(f"client: {'wrk -t1 -c16' if wrk else 'httpx'}; pinned: {split is not None}")
    print("| trial | B ÷ A, one after the other | B ÷ A, together | A's 1-s req/s, cv |")
    print("|---:|---:|---:|---:|")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['apart']:.3f} | {r['together']:.3f} | {r['alone_cv']:.1%} |")
    for method in ("apart", "together"):
        got = [r[method] for r in rows]
        print(f"{method}: {min(got):.3f}-{max(got):.3f} (spread {max(got) - min(got):.3f})")


if __name__ == "__main__":
    main()
