from __future__ import annotations

import importlib

import pytest

import bearerguard

MODULES = [
    "bearerguard",
    "bearerguard.tokens",
    "bearerguard.errors",
    "bearerguard.credentials",
    "bearerguard.clientip",
    "bearerguard.policy",
    "bearerguard.cache",
    "bearerguard.flow",
    "bearerguard.backends",
    "bearerguard.stores",
    "bearerguard.metrics",
    "bearerguard.prometheus",
    "bearerguard.config",
    "bearerguard.demo",
    "bearerguard.flask",
    "bearerguard.starlette",
    "bearerguard.fastapi",
    "bearerguard.django",
    "bearerguard.otel",
    "bearerguard.backends.introspection",
    "bearerguard.backends.jwt",
    "bearerguard.backends.chain",
    "bearerguard.resource",
    "bearerguard.options",
    "bearerguard.stores.local",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names missing {item}"


def test_public_names_documented() -> None:
    for item in bearerguard.__all__:
        obj = getattr(bearerguard, item)
        if callable(obj):
            assert obj.__doc__, f"{item} has no docstring"
