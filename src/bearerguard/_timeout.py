"""`within`: await with a deadline, the cheapest way the running Python offers."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any

__all__ = ["within"]

if sys.version_info >= (3, 11):

    async def within(coro: Awaitable[Any], seconds: float) -> Any:
        """Await `coro`; cancel it and raise TimeoutError after `seconds` (no extra task)."""
        async with asyncio.timeout(seconds):
            return await coro

else:  # pragma: no cover - Python 3.10

    async def within(coro: Awaitable[Any], seconds: float) -> Any:
        """Await `coro`; cancel it and raise asyncio.TimeoutError after `seconds`."""
        return await asyncio.wait_for(coro, seconds)
