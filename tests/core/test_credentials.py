from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bearerguard.credentials import MalformedCredentials, extract_token

B64 = string.ascii_letters + string.digits + "-._~+/"


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ((), (), None),
        (("Bearer abc",), (), "abc"),
        (("bearer abc==",), (), "abc=="),
        (("BEARER a.b-c_d~e+f/g",), (), "a.b-c_d~e+f/g"),
        (("Bearer   abc",), (), "abc"),
        (("Bearer abc  ",), (), "abc"),
        (("Basic dXNlcjpwYXNz",), (), None),
        (("Bearerabc",), (), None),
        (("",), (), None),
        ((), ("abc",), "abc"),
    ],
)
def test_accepted(headers: tuple[str, ...], query: tuple[str, ...], expected: str | None) -> None:
    assert extract_token(headers, query) == expected


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        (("Bearer",), ()),
        (("Bearer ",), ()),
        (("Bearer a b",), ()),
        (("Bearer a=b",), ()),
        (("Bearer =",), ()),
        (("Bearer a\tb",), ()),
        (("Bearer ä",), ()),
        (("Bearer a", "Bearer b"), ()),
        (("Bearer a",), ("a",)),
        ((), ("a", "b")),
        ((), ("",)),
        ((), ("a b",)),
        (("Bearer " + "a" * 4097,), ()),
    ],
)
def test_refused(headers: tuple[str, ...], query: tuple[str, ...]) -> None:
    with pytest.raises(MalformedCredentials):
        extract_token(headers, query)


def test_limit_is_exact() -> None:
    assert extract_token(("Bearer " + "a" * 4096,)) == "a" * 4096
    assert extract_token(("Bearer " + "a" * 10,), max_length=10) == "a" * 10
    with pytest.raises(MalformedCredentials):
        extract_token(("Bearer " + "a" * 11,), max_length=10)


@given(st.lists(st.text(max_size=60), max_size=3), st.lists(st.text(max_size=20), max_size=2))
def test_never_raises_anything_else(headers: list[str], query: list[str]) -> None:
    try:
        token = extract_token(headers, query)
    except MalformedCredentials:
        return
    if token is not None:
        assert token
        assert all(c in B64 or c == "=" for c in token)
        assert len(headers) + len(query) == 1


@given(st.text(alphabet=B64, min_size=1, max_size=80), st.integers(0, 3))
def test_valid_b64tokens_roundtrip(body: str, pad: int) -> None:
    token = body + "=" * pad
    assert extract_token([f"Bearer {token}"]) == token
