"""A separate OS process hammering one SQLite store file (used by test_store_sqlite.py).

    python sqlite_worker.py URL KEY_ID WORKER_ID ROUNDS DIGEST [DIGEST…]

Prints ``ready``, waits for a line on stdin, then for each round issues a token of its
own and touches every shared DIGEST with ``now = BASE + 2 * round + WORKER_ID``. Prints
one JSON line: errors seen, the digests it issued, and the last `now` it used.
"""

from __future__ import annotations

import json
import sys

from bearerguard.stores.base import TokenRecord, new_token
from bearerguard.stores.sqlite import SQLiteStore
from bearerguard.tokens import token_digest

BASE = 1_000_000.0
TTL = 1000.0


def main(argv: list[str]) -> int:
    url, key_id, worker, rounds, shared = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4:]
    store = SQLiteStore(url)
    errors: list[str] = []
    issued: list[str] = []
    now = BASE
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        for i in range(rounds):
            now = BASE + 2 * i + worker
            digest = token_digest(new_token())
            try:
                store.put_token(
                    TokenRecord(
                        digest, key_id, frozenset({"dns"}), "127.0.0.1", now, TTL, now + TTL
                    )
                )
                issued.append(digest)
                for d in shared:
                    if store.touch_token(d, now) is None:
                        errors.append("shared token missing")
                if store.touch_token(digest, now) is None:
                    errors.append("own token missing")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        store.close()
    print(json.dumps({"errors": errors, "issued": issued, "last_now": now}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
