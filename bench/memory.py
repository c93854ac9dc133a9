"""RSS growth per cached token, in a fresh process: ``python -m bench.memory [N]``.

Fills a `bearerguard.cache.TokenCache` with N realistic entries (each a fresh
TokenInfo as a store or introspection answer would build it: its own key id, API set
and address string) and prints JSON: bytes per token from /proc/self/statm,
the same for the bare objects held in a plain dict, and a tracemalloc split of data
vs the cache's own structures (the split runs after the RSS measurement).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


DISTINCT_IPS = False
KEYS = 1000  # token i belongs to key i % KEYS


def make(i: int, now: float) -> tuple[str, Any]:
    from bearerguard import tokens
    from bearerguard.tokens import TokenInfo

    # The cache key as the adapters make it: raw digest bytes where the core has
    # token_key, the hex digest before that.
    keyfn = getattr(tokens, "token_key", None) or tokens.token_digest
    digest = keyfn(f"bench-token-{i:08d}-{now}")
    j = i if DISTINCT_IPS else i % KEYS  # key i % KEYS is used from one address
    info = TokenInfo(
        key_id="key_" + f"{i % KEYS:024x}",
        apis=frozenset(("dns", "vps")),
        bound_ip=f"10.{(j >> 16) & 255}.{(j >> 8) & 255}.{j & 255}",
        expires_at=now + 300.0 + i % 7,
        ttl=300.0,
    )
    return digest, info


def measure(n: int, mode: str) -> dict[str, Any]:
    from bearerguard.cache import TokenCache

    now = time.time()
    cache = TokenCache(maxsize=n * 2, ttl=3600.0, touch_interval=3600.0)
    held: dict[str, Any] = {}
    make(0, now)
    cache.put(*make(-1, now), now)
    gc.collect()
    before = rss()
    for i in range(n):
        digest, info = make(i, now)
        if mode == "cache":
            cache.put(digest, info, now)
        else:
            held[digest] = info
    gc.collect()
    after = rss()
    if mode == "cache":
        assert len(cache) == n + 1
    growth = after - before
    return {
        "mode": mode,
        "tokens": n,
        "keys": min(n, KEYS),
        "addresses": n if DISTINCT_IPS else min(n, KEYS),
        "rss_growth": growth,
        "bytes_per_token": growth / n,
    }


def split(n: int = 20_000) -> dict[str, float]:
    """tracemalloc: bytes the cache retains per token once the backend's answer is gone.

    RSS also counts memory freed but not returned (the answers' temporaries are
    interleaved with retained objects in the allocator's pools); this does not.
    """
    import tracemalloc

    from bearerguard.cache import TokenCache

    now = time.time()
    cache = TokenCache(maxsize=n * 2, ttl=3600.0, touch_interval=3600.0)
    gc.collect()
    tracemalloc.start()
    for i in range(n):
        cache.put(*make(i, now), now)
    gc.collect()
    retained, _ = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    top = []
    for stat in snapshot.statistics("lineno")[:8]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("src/")[-1]
        top.append({"where": f"{where}:{frame.lineno}", "bytes_per_token": stat.size / n})
    return {"retained_bytes_per_token": retained / n, "tokens": n, "by_line": top}


def breakdown() -> dict[str, int]:
    """sys.getsizeof of one entry's parts (shallow; shared interned strings excluded)."""
    from bearerguard.cache import Entry

    now = time.time()
    digest, info = make(1, now)
    entry = Entry(info, now + 10, now + 5)
    return {
        "digest (32 raw bytes)": sys.getsizeof(digest),
        "Entry (slots)": sys.getsizeof(entry),
        "2 floats in Entry (shared with the entries of the same tick)": 2 * sys.getsizeof(now),
        "TokenInfo (slots)": sys.getsizeof(info),
        "key_id str": sys.getsizeof(info.key_id),
        "apis frozenset": sys.getsizeof(info.apis),
        "bound_ip str": sys.getsizeof(info.bound_ip),
        "2 floats in TokenInfo": 2 * sys.getsizeof(now),
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    mode = sys.argv[2] if len(sys.argv) > 2 else "cache"
    global DISTINCT_IPS
    DISTINCT_IPS = "--distinct-ips" in sys.argv
    out = measure(n, mode)
    if mode == "cache":
        out["breakdown"] = breakdown()
        out["tracemalloc"] = split()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
