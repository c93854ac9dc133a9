"""The integration modules: sorted, complete `__all__`; FastAPI imported only by its module."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "bearerguard.config",
    "bearerguard.demo",
    "bearerguard.fastapi",
    "bearerguard.flask",
    "bearerguard.starlette",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names missing {item}"


def test_fastapi_stays_optional() -> None:
    code = (
        "import sys, bearerguard, bearerguard.config, bearerguard.starlette, "
        "bearerguard.flask, bearerguard.demo; print('fastapi' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
