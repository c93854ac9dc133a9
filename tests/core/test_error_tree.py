"""Every exception bearerguard raises on purpose is a `BearerGuardError`, drawn in errors.py."""

from __future__ import annotations

import re

import pytest

import bearerguard.errors
from bearerguard.credentials import MalformedCredentials, extract_token
from bearerguard.errors import (
    BackendUnavailable,
    BearerGuardError,
    ConfigurationError,
    RequestError,
)
from bearerguard.server.forms import BadRequest
from bearerguard.stores import StoreUnavailable


def _tree(cls: type[BaseException]) -> set[type[BaseException]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _tree(sub)
    return found


@pytest.mark.parametrize(
    ("cls", "parent", "also"),
    [
        (BackendUnavailable, BearerGuardError, None),
        (StoreUnavailable, BackendUnavailable, None),
        (ConfigurationError, BearerGuardError, ValueError),
        (RequestError, BearerGuardError, None),
        (MalformedCredentials, RequestError, ValueError),
        (BadRequest, RequestError, None),
    ],
    ids=lambda v: getattr(v, "__name__", repr(v)),
)
def test_each_exception_sits_under_its_parent(
    cls: type[Exception], parent: type[Exception], also: type[Exception] | None
) -> None:
    assert cls.__mro__[1] is parent
    if also is not None:  # kept for callers that catch the built-in one
        assert issubclass(cls, also)


def test_the_docstring_draws_every_class_of_the_tree() -> None:
    drawn = set(re.findall(r"[─└├]── (\w+)", bearerguard.errors.__doc__ or ""))
    drawn.add("BearerGuardError")
    public = {c.__name__ for c in _tree(BearerGuardError) if not c.__name__.startswith("_")}
    assert public <= drawn, f"not drawn in errors.py: {sorted(public - drawn)}"


def test_malformed_credentials_is_caught_as_a_bearerguard_error() -> None:
    with pytest.raises(BearerGuardError) as caught:
        extract_token(["Bearer a", "Bearer b"])
    assert isinstance(caught.value, MalformedCredentials)
    assert str(caught.value) == "More than one Authorization header"
