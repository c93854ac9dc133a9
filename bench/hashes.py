"""The per-request SHA-256 of a token, OpenSSL's against Python's own, with cold caches.

Every request hashes its token (the cache key), and a miss hashes it again for the
store. A server runs that code between other work, so the hash rarely finds its code
and data in the CPU's caches; a loop over one call always does. Here every call comes
after one byte of each 4 KB page of an 8 MB buffer was written (2,048 pages: the TLB,
the first-level caches and much of the second-level one taken by other data, as the
rest of a request does), and only the call is timed; ``hot`` is the same call in a
tight loop. The two implementations alternate, and the empty timing (two clock reads
after the same writes) is subtracted.

``python -m bench.hashes [--rounds N]`` prints the JSON; ``python -m bench`` runs it
for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bearerguard import tokens

_TOKEN = tokens.generate().encode()
_EVICT = bytearray(8 * 1024 * 1024)


def _evict() -> None:
    buf = _EVICT
    for i in range(0, len(buf), 4096):  # one write per page
        buf[i] ^= 1


def _variants() -> dict[str, Callable[[bytes], Any]]:
    own = tokens.sha256 if tokens.sha256 is not hashlib.sha256 else None
    out: dict[str, Callable[[bytes], Any]] = {"openssl": hashlib.sha256}
    if own is not None:
        out["python"] = own
    return out


def run(rounds: int = 2_000) -> dict[str, Any]:
    """Median ns per hash, cold and hot, for each implementation; which one is used."""
    ns = time.perf_counter_ns
    variants = _variants()
    cold: dict[str, list[int]] = {name: [] for name in [*variants, "empty"]}
    for _ in range(rounds):
        for name, make in variants.items():
            _evict()
            t0 = ns()
            make(_TOKEN).digest()
            cold[name].append(ns() - t0)
        _evict()
        t0 = ns()
        cold["empty"].append(ns() - t0)
    empty = statistics.median(cold.pop("empty"))
    out: dict[str, Any] = {
        "rounds": rounds,
        "used": "python" if "python" in variants else "openssl",
        "token_bytes": len(_TOKEN),
        "cold_ns": {name: statistics.median(xs) - empty for name, xs in cold.items()},
        "hot_ns": {},
    }
    for name, make in variants.items():
        best = []
        for _ in range(7):
            t0 = ns()
            for _ in range(10_000):
                make(_TOKEN).digest()
            best.append((ns() - t0) / 10_000)
        out["hot_ns"][name] = min(best)
    return out


def docs_section(res: dict[str, Any] | None) -> list[str]:
    """docs/benchmarks.md: the table, or nothing for a run from before it existed."""
    if not res or "cold_ns" not in res:
        return []
    L = [
        "",
        "## The token's SHA-256, with cold caches",
        "",
        f"One SHA-256 of a {res['token_bytes']}-byte token (`python -m bench.hashes`): cold, "
        "each call after a byte of each 4 KB page of 8 MB was written, as a server meets it "
        f"between other work (median of {res['rounds']:,}, the empty timing subtracted); "
        "hot, a tight loop (the best of 7 runs of 10,000). bearerguard hashes with "
        + (
            "Python's own implementation (`tokens.sha256`; OpenSSL's in FIPS mode)."
            if res["used"] == "python"
            else "OpenSSL's here (FIPS mode, or a Python without its own hashes)."
        ),
        "",
        "| implementation | cold ns | hot ns |",
        "|---|---:|---:|",
    ]
    for name, label in (("openssl", "OpenSSL (`hashlib.sha256`)"), ("python", "Python's own")):
        if name in res["cold_ns"]:
            L.append(f"| {label} | {res['cold_ns'][name]:.0f} | {res['hot_ns'][name]:.0f} |")
    return L


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hashes", description=__doc__)
    p.add_argument("--rounds", type=int, default=2_000)
    print(json.dumps(run(p.parse_args(argv).rounds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
