"""Fixtures for the integration tests; their helpers live in integration_support."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bearerguard.stores import MemoryStore


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    yield s
    s.close()
