"""The `harness` fixture: each test runs once per adapter (ASGI and WSGI)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapter_harness import Harness


@pytest.fixture(params=["asgi", "wsgi"])
def harness(request: pytest.FixtureRequest) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(backend: object, **options: Any) -> Harness:
        h = Harness(request.param, backend, **options)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
