"""`trust_env`: the backend sends through the proxy the environment names, as httpx would.

The proxy is `ScriptedServer` itself: an HTTP proxy gets the request in absolute form,
and the scripted endpoint answers it, so an answer proves the request went through it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from introspection_support import ScriptedServer, Tokens, new_token

from bearerguard.backends import IntrospectionBackend
from bearerguard.errors import BackendUnavailable

# Never resolvable (RFC 6761), so only a proxy can carry the request.
ELSEWHERE = "http://introspect.invalid/introspect"


@pytest.fixture
def via_proxy(monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer) -> ScriptedServer:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{scripted.port}")
    return scripted


def test_environment_proxy_carries_the_lookup(
    via_proxy: ScriptedServer, tokens: Tokens, make_backend: Callable[..., IntrospectionBackend]
) -> None:
    token = tokens.add(new_token(), client_id="key_a", scope="dns", ip="127.0.0.1", ttl=60)
    with make_backend(ELSEWHERE, retries=0) as backend:
        info = backend.lookup(token, "127.0.0.1")
    assert info is not None and info.key_id == "key_a"
    assert via_proxy.requests == 1


@pytest.mark.parametrize("how", ["trust_env=False", "NO_PROXY"])
def test_no_proxy_when_told(
    how: str,
    monkeypatch: pytest.MonkeyPatch,
    via_proxy: ScriptedServer,
    make_backend: Callable[..., IntrospectionBackend],
) -> None:
    if how == "NO_PROXY":
        monkeypatch.setenv("NO_PROXY", "introspect.invalid")
    options = {"trust_env": False} if how == "trust_env=False" else {}
    with make_backend(ELSEWHERE, retries=0, **options) as backend:
        with pytest.raises(BackendUnavailable):
            backend.lookup(new_token(), "127.0.0.1")
    assert via_proxy.requests == 0
