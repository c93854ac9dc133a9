"""``bearerguard serve --workers N``: N real worker processes, each answering, each with
its own key cache, and a revoked key refused by every one of them in time.

Which worker answers a connection is the kernel's choice, so a test that needs one
particular worker stops the others (SIGSTOP) while it talks to it, then resumes them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from server_helpers import assert_error

from live_service import LiveService

WAIT = 30.0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def workers(svc: LiveService, n: int) -> list[int]:
    """The PIDs of the service's worker processes, once `n` of them run."""
    assert svc.proc is not None
    deadline = time.monotonic() + WAIT
    while True:
        found = [c for c in _children(svc.proc.pid) if "spawn_main" in _cmdline(c)]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@contextmanager
def only(worker: int, every: list[int]) -> Iterator[None]:
    """Stop every worker but `worker`, so new connections can only reach it."""
    others = [w for w in every if w != worker]
    for w in others:
        os.kill(w, signal.SIGSTOP)
    try:
        yield
    finally:
        for w in others:
            os.kill(w, signal.SIGCONT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]


def login(svc: LiveService, key_id: str, secret: str) -> httpx.Response:
    # A new connection for every request (no keep-alive to a stopped worker).
    return httpx.post(
        svc.base_url + "/login",
        data={"grant_type": "client_credentials"},
        auth=(key_id, secret),
        timeout=WAIT,
    )


def test_three_workers_each_answer_and_sigterm_stops_them_all(sqlite_url: str) -> None:
    svc = LiveService(sqlite_url, extra_args=["--workers", "3"])
    with svc:
        pids = workers(svc, 3)
        assert len(pids) == 3 and len(set(pids)) == 3
        assert svc.proc is not None and svc.proc.pid not in pids
        key_id, secret = svc.create_key(["dns"], introspect=True)
        tokens = []
        for pid in pids:
            with only(pid, pids):
                r = login(svc, key_id, secret)
                assert r.status_code == 200, r.text
                tokens.append(r.json()["access_token"])
        # One store behind every worker: each worker knows the tokens the others issued.
        for pid, token in zip(pids, reversed(tokens), strict=True):
            with only(pid, pids):
                r = httpx.post(
                    svc.base_url + "/introspect",
                    data={"token": token},
                    auth=(key_id, secret),
                    timeout=WAIT,
                )
                assert r.status_code == 200 and r.json()["active"] is True, r.text
        svc.stop()
        assert all(not _alive(p) for p in pids), "a worker outlived SIGTERM to the parent"
    assert "3 workers" in svc.output


def test_a_revoked_key_leaves_every_workers_key_cache_in_time(persistent_url: str) -> None:
    # Redis publishes the revocation: even a 30 s key cache must let go within 1 s.
    # SQLite sends no messages between processes: the default 1 s TTL is the bound.
    cache_ttl = 30.0 if persistent_url.startswith("redis") else 1.0
    args = ["--workers", "2", "--key-cache-ttl", str(cache_ttl)]
    with LiveService(persistent_url, extra_args=args) as svc:
        pids = workers(svc, 2)
        assert len(pids) == 2
        key_id, secret = svc.create_key(["dns"])
        for pid in pids:  # every worker has the key record cached now
            with only(pid, pids):
                assert login(svc, key_id, secret).status_code == 200
        # Revoked from another process: nothing reaches the workers but the store.
        assert svc.revoke_key(key_id)
        time.sleep(1.0)
        for pid in pids:
            with only(pid, pids):
                assert_error(login(svc, key_id, secret), 401, "invalid_client")
