"""mypy checks the middlewares' options and backends (options.py, backends/base.py).

A snippet of user code with one mistake per line goes through mypy --strict; each
mistake must be reported on its own line, and the correct lines must pass.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from mypy import api

SNIPPET = textwrap.dedent(
    """
    from bearerguard import BearerGuardMiddleware, StoreBackend, WSGIBearerGuard, open_store
    from bearerguard._types import Receive, Scope, Send
    from bearerguard.config import from_env
    from bearerguard.flask import BearerGuard
    from bearerguard.tokens import TokenInfo


    async def app(scope: Scope, receive: Receive, send: Send) -> None: ...


    def wsgi(environ: dict[str, object], start_response: object) -> list[bytes]:
        return []


    class AsyncOnly:
        async def alookup(self, token: str) -> TokenInfo | None:
            return None


    b = StoreBackend(open_store("memory://"))
    s = from_env()
    BearerGuardMiddleware(app, backend=b, api="dns", public_paths=["/health"], cache_ttl=5)
    BearerGuardMiddleware(app, backend=AsyncOnly(), rate_limit=(10.0, 20))
    BearerGuardMiddleware(app, backend=s.backend, **s.options)
    WSGIBearerGuard(wsgi, backend=s.backend, realm="api", max_in_flight=4)
    BearerGuard(backend=b, api="dns", backend_timeout=2.0)
    BearerGuardMiddleware(app, backend=b, realme="x")  # E: misspelt
    BearerGuardMiddleware(app, backend=b, cache_ttl="10")  # E: wrong type
    BearerGuardMiddleware(app, backend=object())  # E: not a backend
    WSGIBearerGuard(wsgi, backend=AsyncOnly())  # E: WSGI needs the sync face
    BearerGuard(backend=b, max_in_flight="4")  # E: passed through, still checked
    WSGIBearerGuard(wsgi, backend=b, rate_limit="fast")  # E: not a rate
    """
)


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    path = Path(tmp_path_factory.mktemp("typing")) / "snippet.py"
    path.write_text(SNIPPET)
    out, err, _ = api.run(["--strict", "--no-error-summary", "--hide-error-context", str(path)])
    assert not err, err
    lines: dict[int, str] = {}
    for m in re.finditer(r"^.*?snippet\.py:(\d+): error: (.*)$", out, re.M):
        lines[int(m[1])] = lines.get(int(m[1]), "") + m[2]
    return lines


def test_only_the_marked_lines_are_errors(reported: dict[int, str]) -> None:
    marked = {n for n, line in enumerate(SNIPPET.splitlines(), 1) if "# E:" in line}
    assert set(reported) == marked, reported
