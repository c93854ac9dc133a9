"""The face adapter (stores/_faces.py): async twins of sync methods, and closing any faces."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from bearerguard.stores import MemoryStore, SQLiteStore, _faces
from bearerguard.stores._faces import inline, threaded
from bearerguard.stores.base import KeyRecord


class _Probe:
    def where(self, tag: str, *, times: int = 1) -> tuple[int, str]:
        return threading.get_ident(), tag * times

    awhere_inline = inline(where)
    awhere_threaded = threaded(where)


def test_inline_runs_on_the_loop_thread_and_threaded_in_a_worker() -> None:
    async def main() -> None:
        here = threading.get_ident()
        probe = _Probe()
        assert await probe.awhere_inline("a", times=2) == (here, "aa")
        ident, value = await probe.awhere_threaded("b", times=3)
        assert value == "bbb"
        assert ident != here

    asyncio.run(main())


def test_the_twin_calls_the_method_by_name_at_call_time() -> None:
    # As a hand-written `return self.where(...)` did: an instance override is honoured.
    probe = _Probe()
    probe.where = lambda tag, *, times=1: (0, "patched")  # type: ignore[method-assign]
    assert asyncio.run(probe.awhere_inline("x")) == (0, "patched")
    assert asyncio.run(probe.awhere_threaded("x")) == (0, "patched")


def test_store_twins_are_named_as_async_methods() -> None:
    assert MemoryStore.aget_key.__name__ == "aget_key"
    assert SQLiteStore.atouch_token.__qualname__.endswith(".atouch_token")
    assert asyncio.iscoroutinefunction(MemoryStore.aclose)


@pytest.mark.parametrize(
    ("store_class", "in_worker"),
    [(MemoryStore, False), (SQLiteStore, True)],
    ids=["memory: inline, no I/O", "SQLite: blocking, in a worker thread"],
)
def test_a_stores_async_face_runs_where_its_blocking_flag_says(
    store_class: type[MemoryStore] | type[SQLiteStore], in_worker: bool, tmp_path: Path
) -> None:
    seen: list[int] = []

    # (SQLite's per-request calls run inline first: tests/stores/test_store_sqlite.py.)
    class Spy(store_class):  # type: ignore[valid-type,misc]
        def list_keys(
            self, account: str | None = None, *, after: str | None = None, limit: int | None = None
        ) -> list[KeyRecord]:
            seen.append(threading.get_ident())
            result: list[KeyRecord] = super().list_keys(account, after=after, limit=limit)
            return result

    url = "memory://" if store_class is MemoryStore else f"sqlite:///{tmp_path / 'f.db'}"
    store = Spy(url)
    try:
        key, _ = store.create_key(["dns"])

        async def main() -> int:
            assert await store.alist_keys() == [key]  # the twin calls Spy.list_keys
            return threading.get_ident()

        loop_thread = asyncio.run(main())
    finally:
        store.close()
    assert len(seen) == 1
    assert (seen[0] != loop_thread) is in_worker


class _Closable:
    """Records which of its faces were closed; has only the faces it is given."""

    def __init__(self, faces: str) -> None:
        self.closed: list[str] = []
        if "sync" in faces.split():
            self.close = lambda: self.closed.append("close")
        if "async" in faces.split():

            async def aclose() -> None:
                self.closed.append("aclose")

            self.aclose = aclose


@pytest.mark.parametrize(
    ("faces", "by_close", "by_aclose"),
    [
        ("sync", ["close"], ["close"]),
        ("async", [], ["aclose"]),
        ("sync async", ["close"], ["aclose"]),
        ("", [], []),
    ],
    ids=["sync face only", "async face only", "both faces", "nothing to close"],
)
def test_close_and_aclose_use_the_faces_an_object_has(
    faces: str, by_close: list[str], by_aclose: list[str]
) -> None:
    obj = _Closable(faces)
    _faces.close(obj)
    assert obj.closed == by_close
    obj = _Closable(faces)
    asyncio.run(_faces.aclose(obj))
    assert obj.closed == by_aclose
