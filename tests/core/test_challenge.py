from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bearerguard import Challenge, ConfigurationError
from bearerguard.errors import quote_param

printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def test_no_credentials_challenge_has_no_error_code() -> None:
    assert Challenge(401).to_header("api") == 'Bearer realm="api"'


def test_full_challenge() -> None:
    ch = Challenge(403, "insufficient_scope", "Needs dns", "dns")
    assert ch.to_header("r") == (
        'Bearer realm="r", error="insufficient_scope", error_description="Needs dns", scope="dns"'
    )
    assert json.loads(ch.to_body()) == {
        "error": "insufficient_scope",
        "error_description": "Needs dns",
        "scope": "dns",
    }


def test_retry_after_header() -> None:
    headers = dict(Challenge(503, "temporarily_unavailable", "x", retry_after=3).to_headers("r"))
    assert headers["retry-after"] == "3"
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize("bad", ["new\nline", "tab\t", "é", "\x00"])
def test_unquotable_values_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        quote_param(bad)


@given(printable, printable, printable, printable)
def test_header_roundtrip(realm: str, error: str, description: str, scope: str) -> None:
    ch = Challenge(401, error or "invalid_token", description, scope)
    params = Challenge.from_header(ch.to_header(realm))
    assert params["realm"] == realm
    assert params["error"] == (error or "invalid_token")
    if description:
        assert params["error_description"] == description
    if scope:
        assert params["scope"] == scope


@given(st.text(max_size=60))
def test_parser_raises_only_valueerror(text: str) -> None:
    with contextlib.suppress(ValueError):
        Challenge.from_header(text)
