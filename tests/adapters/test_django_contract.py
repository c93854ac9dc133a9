"""The request-contract table of test_contract.py, run through ``bearerguard.django``.

The rows are imported, not copied: every test of test_contract.py that takes the
`harness` fixture runs here again, with `harness` making a `DjangoHarness` (a real
Django project under ``WSGIHandler``, sync middleware chain, and under ``ASGIHandler``,
async chain) instead of the Flask and Starlette apps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import test_contract
from test_contract import dns, store

from django_harness import DjangoHarness, django_harness_fixture

__all__ = ["django_harness_fixture", "dns", "store"]  # fixtures the imported rows use

ROWS = {
    name: fn
    for name, fn in vars(test_contract).items()
    if name.startswith("test_") and "harness" in inspect.signature(fn).parameters
}
globals().update(ROWS)


@pytest.fixture
def harness(django_harness: Callable[..., DjangoHarness]) -> Callable[..., DjangoHarness]:
    return django_harness


def test_every_harness_row_is_imported() -> None:
    assert len(ROWS) >= 20
    assert "test_missing_api_is_403_with_scope" in ROWS
