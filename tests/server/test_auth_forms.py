"""The auth service's strict parsers, as tables (no server)."""

from __future__ import annotations

import base64

import pytest

from bearerguard.server.forms import (
    BadRequest,
    check_form_content_type,
    client_credentials,
    parse_basic,
    parse_form,
    parse_scope,
)
from bearerguard.server.throttle import LoginThrottle
from helpers import FakeClock


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", {}),
        (b"a=1", {"a": "1"}),
        (b"a=1&b=two+words", {"a": "1", "b": "two words"}),
        (b"a=%2B%26%3D", {"a": "+&="}),
        (b"a=&b=2", {"b": "2"}),  # RFC 6749 §3.1: no value = omitted
        (b"a&b=2", {"b": "2"}),
        (b"&&a=1&&", {"a": "1"}),
        (b"caf%C3%A9=%E2%82%AC", {"caf\u00e9": "\u20ac"}),
    ],
)
def test_parse_form_accepts(body: bytes, expected: dict[str, str]) -> None:
    assert parse_form(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"a=1&a=2",
        b"a=1&a=1",
        b"a=&a=1",  # repeated even when one is empty
        b"a=%FF",
        b"a=\xc3\xa9",
        b"a=%00",
        b"a=%0A",
        b"a=x%1Fy",  # every control character, the last of C0
        b"a=x%7F",  # and DEL
        b"a%09b=1",  # in a name too
        b"&".join(b"k%d=v" % i for i in range(17)),
    ],
)
def test_parse_form_refuses(body: bytes) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_form(body)
    assert exc.value.error == "invalid_request"
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("application/x-www-form-urlencoded", True),
        ("Application/X-WWW-Form-Urlencoded; charset=UTF-8", True),
        ('application/x-www-form-urlencoded; charset="utf-8"', True),
        ("application/x-www-form-urlencoded; charset=iso-8859-1", False),
        ("application/json", False),
        ("multipart/form-data; boundary=x", False),
        ("", False),
        (None, False),
    ],
)
def test_content_type(value: str | None, ok: bool) -> None:
    if ok:
        check_form_content_type(value)
    else:
        with pytest.raises(BadRequest):
            check_form_content_type(value)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        (["Bearer abc"], None),
        (["Digest x=1"], None),
        ([f"Basic {b64(b'key_1:s3cret')}"], ("key_1", "s3cret")),
        ([f"basic  {b64(b'key_1:s3cret')}"], ("key_1", "s3cret")),
        ([f"Basic {b64(b'key_1:a:b')}"], ("key_1", "a:b")),  # the password may hold ":"
        ([f"Basic {b64(b'key_1:')}"], ("key_1", "")),
        ([f"Basic {b64(b'k%65y:p%2Bq+r')}"], ("key", "p+q r")),  # RFC 6749 §2.3.1
    ],
)
def test_parse_basic_accepts(headers: list[str], expected: tuple[str, str] | None) -> None:
    creds = parse_basic(headers)
    if expected is None:
        assert creds is None
    else:
        assert creds is not None and (creds.key_id, creds.secret) == expected


@pytest.mark.parametrize(
    "headers",
    [
        ["Basic"],
        ["Basic ="],
        ["Basic a b"],
        ["Basic ****"],
        [f"Basic {b64(b'nocolon')}"],
        [f"Basic {b64(b':pw')}"],
        [f"Basic {b64(b'k:%FF')}"],
        ["Basic " + b64(b"\xe9:x")],
        ["Basic " + "A" * 2000],
        [f"Basic {b64(b'a:b')}", f"Basic {b64(b'a:b')}"],
    ],
)
def test_parse_basic_refuses(headers: list[str]) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_basic(headers)
    assert exc.value.error == "invalid_request"


def test_secret_is_not_in_repr() -> None:
    creds = parse_basic([f"Basic {b64(b'key_1:topsecretvalue')}"])
    assert creds is not None and "topsecretvalue" not in repr(creds)


def test_client_credentials_methods() -> None:
    basic = [f"Basic {b64(b'key_1:s')}"]
    assert client_credentials([], {}) is None
    got = client_credentials([], {"client_id": "key_2", "client_secret": "t"})
    assert got is not None and got.key_id == "key_2"
    with pytest.raises(BadRequest):
        client_credentials(basic, {"client_id": "key_1"})
    with pytest.raises(BadRequest):
        client_credentials([], {"client_secret": "t"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("dns", {"dns"}), ("dns vps", {"dns", "vps"}), ("a!#[]~", {"a!#[]~"})],
)
def test_parse_scope(value: str | None, expected: set[str] | None) -> None:
    assert parse_scope(value) == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize("value", [" ", "dns ", " dns", "dns  vps", 'a"b', "a\\b", "d\u00e9"])
def test_parse_scope_refuses(value: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_scope(value)
    assert exc.value.error == "invalid_scope"


def test_throttle_memory_is_bounded() -> None:
    clock = FakeClock(now=0.0)
    t = LoginThrottle(max_failures=2, window=60, max_tracked=100, clock=clock)
    for i in range(1000):
        t.failed(f"key_{i}", f"10.0.{i // 256}.{i % 256}", known=False)
    assert len(t._sources.failures) == 100
    assert len(t._keys.failures) == 0  # made-up key ids are never written (F)
    t.failed("key_999")
    t.failed("key_999")
    assert t.retry_after("key_999") == 60
    clock.advance(30)
    assert t.retry_after("key_999") == 30
    clock.advance(30)
    assert t.retry_after("key_999") is None
