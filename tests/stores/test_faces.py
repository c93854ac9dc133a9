"""The face adapter: how a sync store method becomes its async twin (stores/_faces.py)."""

from __future__ import annotations

import asyncio
import threading

from bearerguard.stores import MemoryStore, SQLiteStore
from bearerguard.stores._faces import inline, threaded


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
    assert SQLiteStore.atouch_token.__qualname__ == "SQLiteStore.atouch_token"
    assert asyncio.iscoroutinefunction(MemoryStore.aclose)
