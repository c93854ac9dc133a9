"""The SQLite store on a real file: URLs, WAL, locking, processes, threads, bytes on disk."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bearerguard.errors import ConfigurationError
from bearerguard.stores import StoreUnavailable, open_store
from bearerguard.stores import sqlite as sqlite_module
from bearerguard.stores.base import TokenRecord, new_token
from bearerguard.stores.sqlite import SQLiteStore, sqlite_path
from bearerguard.tokens import token_digest
from helpers import issue, remember_secret

WORKER = Path(__file__).with_name("sqlite_worker.py")


def url_for(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///bearerguard.db", "bearerguard.db"),
        ("sqlite:///data/x.db", "data/x.db"),
        ("sqlite:////var/lib/bg/x.db", "/var/lib/bg/x.db"),
        ("SQLITE:///x.db", "x.db"),
    ],
)
def test_url_to_path(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///dir/",
        "sqlite:///:memory:",
        "sqlite:///x.db?timeout=5",
        "sqlite://host/x.db",
        "sqlite:x.db",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLiteStore(url)
    assert "\n" not in str(info.value)


def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///relative.db")
    try:
        assert isinstance(store, SQLiteStore)
        store.create_key(["dns"])
    finally:
        store.close()
    assert (tmp_path / "relative.db").is_file()


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    store = SQLiteStore(url_for(tmp_path / "wal.db"))
    store.close()
    conn = sqlite3.connect(tmp_path / "wal.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_unopenable_file_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as info:
        SQLiteStore(url_for(tmp_path / "no" / "such" / "dir" / "x.db"))
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_closed_store_refuses(tmp_path: Path) -> None:
    store = SQLiteStore(url_for(tmp_path / "c.db"))
    store.close()
    with pytest.raises(StoreUnavailable):
        store.get_key("key_x")


def test_database_is_locked_becomes_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(url_for(path), busy_timeout=0.2)
    tok = issue(store, ("dns",))
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable) as info:
            store.touch_token(token_digest(tok.token), time.time())
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert "locked" in str(info.value.__cause__)
        with pytest.raises(StoreUnavailable):
            store.create_key(["dns"])
        with pytest.raises(StoreUnavailable):
            store.revoke_key(tok.key_id)
        blocker.execute("ROLLBACK")
        # Once the lock is gone the store works again (the failed calls left no trace).
        assert store.touch_token(token_digest(tok.token), time.time()) is not None
        assert store.get_key(tok.key_id) is not None
    finally:
        blocker.close()
        store.close()


def test_async_face_does_not_block_the_loop(tmp_path: Path) -> None:
    """While a write waits for a lock held elsewhere, the event loop keeps running."""
    path = tmp_path / "loop.db"
    store = SQLiteStore(url_for(path), busy_timeout=1.0)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")

    async def main() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.02)

        task = asyncio.create_task(ticker())
        try:
            with pytest.raises(StoreUnavailable):
                await store.acreate_key(["dns"])
        finally:
            done.set()
            await task
        return ticks

    try:
        ticks = asyncio.run(main())
    finally:
        blocker.close()
        store.close()
    assert ticks >= 5  # the loop ran while the write waited for ~1 s


def test_only_digests_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.db"
    store = SQLiteStore(url_for(path))
    secrets_: list[str] = []
    digests: list[str] = []
    for _ in range(3):
        key, secret = store.create_key(["dns"])
        secrets_.append(remember_secret(secret))
        tok = issue(store, ("dns",), key_id=key.key_id)
        secrets_.append(tok.token)
        digests.append(token_digest(tok.token))
        store.touch_token(token_digest(tok.token), time.time())

    def raw() -> bytes:
        blob = b""
        for suffix in ("", "-wal", "-shm"):
            f = Path(str(path) + suffix)
            if f.exists():
                blob += f.read_bytes()
        return blob

    before = raw()  # the data is still in the WAL here
    store.close()
    after = raw()  # checkpointed into the main file on close
    for blob in (before, after):
        assert all(d.encode() in blob for d in digests)  # we did read the records
        for s in secrets_:
            assert s.encode() not in blob


def test_expired_rows_are_purged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "_PURGE_EVERY", 0.0)
    path = tmp_path / "purge.db"
    store = SQLiteStore(url_for(path))
    try:
        now = time.time()
        old = issue(store, ("dns",), ttl=10, now=now - 100)
        fresh = issue(store, ("dns",), ttl=10, now=now)
        conn = sqlite3.connect(path)
        try:
            digests = {r[0] for r in conn.execute("SELECT digest FROM bg_tokens")}
        finally:
            conn.close()
        assert digests == {token_digest(fresh.token)}
        assert token_digest(old.token) not in digests
    finally:
        store.close()


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = SQLiteStore(url_for(tmp_path / "threads.db"))
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    shared = issue(store, ("dns",), key_id=key.key_id, ttl=1000, now=0.0)
    shared_digest = token_digest(shared.token)
    errors: list[BaseException] = []
    maxima: list[float] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(100):
                now = 1.0 + i * 8 + n
                rec = TokenRecord(
                    token_digest(new_token()),
                    key.key_id,
                    frozenset({"dns"}),
                    "::1",
                    now,
                    5,
                    now + 5,
                )
                store.put_token(rec)
                assert store.touch_token(rec.digest, now) is not None
                assert store.touch_token(shared_digest, now) is not None
            maxima.append(now)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        final = store.get_token(shared_digest, 0.0)
        assert final is not None
        assert final.expires_at == max(maxima) + 1000
    finally:
        store.close()


def test_two_processes_on_one_file(tmp_path: Path) -> None:
    """Two OS processes issue and touch at once: no errors, no lost extension."""
    path = tmp_path / "procs.db"
    url = url_for(path)
    store = SQLiteStore(url)
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    base = 1_000_000.0  # sqlite_worker.BASE
    shared = [issue(store, ("dns",), key_id=key.key_id, ttl=1000, now=base) for _ in range(5)]
    digests = [token_digest(t.token) for t in shared]
    rounds = 150
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, key.key_id, str(w), str(rounds), *digests],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in (0, 1)
    ]
    results = []
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # start both at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=90)
            assert p.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    try:
        for r in results:
            assert r["errors"] == []
            assert len(r["issued"]) == rounds
        # Every issued token is there, and each shared token carries the latest use of
        # either process: the larger `now` always wins, no extension is lost.
        latest = max(r["last_now"] for r in results)
        for d in digests:
            rec = store.get_token(d, base)
            assert rec is not None
            assert rec.expires_at == latest + 1000
        for r in results:
            for d in r["issued"]:
                assert store.get_token(d, base) is not None
    finally:
        store.close()


def test_database_wal_and_shm_are_private(tmp_path: Path) -> None:
    """Issue 12, H: the files hold key ids, grants and digests: owner only (0600)."""
    old = os.umask(0o022)  # the usual umask, which would give 0644
    try:
        store = SQLiteStore(f"sqlite:///{tmp_path}/private.db")
        try:
            issue(store)  # type: ignore[arg-type]
            files = [tmp_path / n for n in ("private.db", "private.db-wal", "private.db-shm")]
            modes = {f.name: oct(f.stat().st_mode & 0o777) for f in files}
        finally:
            store.close()
    finally:
        os.umask(old)
    assert modes == {f.name: "0o600" for f in files}


def test_per_request_calls_run_on_the_loop_and_wait_for_a_lock_in_a_thread(
    tmp_path: Path,
) -> None:
    """aget_key/aput_token/atouch_token run inline; a lock held elsewhere sends the call
    to a worker thread, where it waits for the lock while the event loop keeps running."""
    path = tmp_path / "inline.db"
    threads: list[tuple[str, int]] = []

    class Spy(SQLiteStore):
        def touch_token(
            self, digest: str, now: float, client_ip: str | None = None
        ) -> TokenRecord | None:
            threads.append(("touch", threading.get_ident()))
            return super().touch_token(digest, now, client_ip)

        def put_token(self, record: TokenRecord) -> None:
            threads.append(("put", threading.get_ident()))
            super().put_token(record)

    store = Spy(url_for(path), busy_timeout=5.0)
    tok = issue(store, ("dns",))
    digest = token_digest(tok.token)
    threads.clear()
    held = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait(5)
            blocker.execute("COMMIT")
        finally:
            blocker.close()

    async def main() -> tuple[int, int]:
        loop_thread = threading.get_ident()
        assert await store.atouch_token(digest, time.time()) is not None  # inline
        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        assert held.wait(5)
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        asyncio.get_running_loop().call_later(0.3, release.set)
        try:
            record = TokenRecord(
                digest=token_digest(new_token()),
                key_id=tok.key_id,
                apis=frozenset({"dns"}),
                bound_ip="127.0.0.1",
                issued_at=time.time(),
                ttl=60.0,
                expires_at=time.time() + 60.0,
            )
            await store.aput_token(record)  # waits ~0.3 s for the lock, in a thread
            assert await store.atouch_token(record.digest, time.time()) is not None
        finally:
            done.set()
            await task
            release.set()
            holder.join(5)
        return loop_thread, ticks

    try:
        loop_thread, ticks = asyncio.run(main())
    finally:
        store.close()
    assert ticks >= 10  # the loop ran while the write waited for the lock
    # The first touch ran on the loop; the put tried there, then ran in a worker thread.
    assert threads[0] == ("touch", loop_thread)
    assert threads[1] == ("put", loop_thread)
    assert threads[2][0] == "put" and threads[2][1] != loop_thread
    assert threads[3] == ("touch", loop_thread)


def test_inline_calls_leave_the_purge_to_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No purge on the event loop; every CHECKPOINT_EVERY inline calls a worker does it."""
    monkeypatch.setattr(sqlite_module, "_PURGE_EVERY", 0.0)
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_EVERY", 3)
    path = tmp_path / "maintain.db"
    store = SQLiteStore(url_for(path))
    key, secret = store.create_key(["dns"])
    remember_secret(secret)

    def record(issued_at: float) -> TokenRecord:
        return TokenRecord(
            digest=token_digest(new_token()),
            key_id=key.key_id,
            apis=frozenset({"dns"}),
            bound_ip="127.0.0.1",
            issued_at=issued_at,
            ttl=10.0,
            expires_at=issued_at + 10.0,
        )

    def stored() -> set[str]:
        conn = sqlite3.connect(path)
        try:
            return {r[0] for r in conn.execute("SELECT digest FROM bg_tokens")}
        finally:
            conn.close()

    old = record(time.time() - 100)
    seen: list[set[str]] = []

    async def main() -> None:
        await store.aput_token(old)  # an expired row, written inline: no purge there
        await store.aput_token(record(time.time()))
        seen.append(stored())
        await store.aput_token(record(time.time()))  # the third: a worker purges
        seen.append(stored())

    try:
        asyncio.run(main())
    finally:
        store.close()
    assert old.digest in seen[0] and len(seen[0]) == 2
    assert old.digest not in seen[1] and len(seen[1]) == 2
