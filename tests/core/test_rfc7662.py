"""`bearerguard.rfc7662`: both directions of RFC 7662 in one module, with no I/O."""

from __future__ import annotations

import json

import pytest

from bearerguard.rfc7662 import (
    introspection_answer,
    introspection_form,
    introspection_request,
    parse_introspection_response,
    token_info_from_introspection,
)
from bearerguard.stores.base import TokenRecord

NOW = 1_700_000_000.0


def record(audience: tuple[str, ...] = ()) -> TokenRecord:
    return TokenRecord(
        digest="d" * 64,
        key_id="key_ab12",
        apis=frozenset({"vps", "dns"}),
        bound_ip="2001:db8::1",
        issued_at=NOW - 20.5,
        ttl=300.0,
        expires_at=NOW + 280.0,
        audience=audience,
    )


@pytest.mark.parametrize(
    ("audience", "aud"),
    [
        ((), None),
        (("https://a",), "https://a"),
        (("https://a", "https://b"), ["https://a", "https://b"]),
    ],
)
def test_answer_members(audience: tuple[str, ...], aud: object) -> None:
    answer = introspection_answer(record(audience))
    expected = {
        "active": True,
        "client_id": "key_ab12",
        "scope": "dns vps",
        "exp": int(NOW + 280.0),
        "iat": int(NOW - 20.5),
        "token_type": "bearer",
        "ip": "2001:db8::1",
        "ttl": 300,
    }
    if aud is not None:
        expected["aud"] = aud
    assert answer == expected


def test_inactive_answer_says_nothing_more() -> None:
    assert introspection_answer(None) == {"active": False}
    assert introspection_answer(None) is not introspection_answer(None)  # never shared


@pytest.mark.parametrize("audience", [(), ("https://a",), ("https://a", "https://b")])
def test_answer_reads_back_as_the_stored_token(audience: tuple[str, ...]) -> None:
    """What the service writes, the backend reads back: the record's own TokenInfo."""
    body = json.dumps(introspection_answer(record(audience))).encode()
    data = parse_introspection_response(200, "application/json", body)
    info = token_info_from_introspection(data, require_ip=True, now=NOW)
    assert info is not None
    want = record(audience).to_info()
    assert (info.key_id, info.apis, info.bound_ip, info.ttl, info.audience) == (
        want.key_id,
        want.apis,
        want.bound_ip,
        want.ttl,
        want.audience,
    )
    assert info.expires_at == int(want.expires_at)


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"token": "t"}, ("t", None)),
        ({"token": "t", "token_type_hint": "refresh_token"}, ("t", None)),
        ({"token": "t", "client_ip": "::ffff:10.0.0.1"}, ("t", "10.0.0.1")),
        (introspection_form("t", "192.0.2.7"), ("t", "192.0.2.7")),
    ],
)
def test_request_is_read(form: dict[str, str], expected: tuple[str, str | None]) -> None:
    assert introspection_request(form) == expected


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({}, "Missing token"),
        ({"token_type_hint": "access_token"}, "Missing token"),
        ({"token": "t", "client_ip": "not-an-ip"}, "client_ip is not an IP address"),
        ({"token": "t", "client_ip": ""}, "client_ip is not an IP address"),
    ],
)
def test_request_refused(form: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        introspection_request(form)
