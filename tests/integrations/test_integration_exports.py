"""FastAPI is imported only by its own module (the `__all__` checks: tests/test_exports.py)."""

from __future__ import annotations

import subprocess
import sys


def test_fastapi_stays_optional() -> None:
    code = (
        "import sys, bearerguard, bearerguard.config, bearerguard.starlette, "
        "bearerguard.flask, bearerguard.demo; print('fastapi' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
