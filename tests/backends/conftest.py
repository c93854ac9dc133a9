"""Fixtures for the backend tests: real introspection servers and both adapters."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from introspection_support import CLIENT_ID, Harness, ScriptedServer, Tokens

from bearerguard.backends import IntrospectionBackend
from helpers import remember_secret


@pytest.fixture
def rs_secret() -> str:
    """The resource server's client secret at the introspection endpoint."""
    return remember_secret(secrets.token_urlsafe(32))


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def scripted(rs_secret: str, tokens: Tokens) -> Iterator[ScriptedServer]:
    server = ScriptedServer(rs_secret, tokens.answer).start()
    yield server
    server.stop()


@pytest.fixture(params=["asgi", "wsgi"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_harness(adapter: str) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(backend: IntrospectionBackend, **options: Any) -> Harness:
        h = Harness(adapter, backend, **options)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def make_backend(rs_secret: str) -> Callable[..., IntrospectionBackend]:
    def make(url: str, **options: Any) -> IntrospectionBackend:
        return IntrospectionBackend(url, CLIENT_ID, rs_secret, **options)

    return make
