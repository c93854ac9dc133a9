"""The pure parts of the introspection backend and the circuit breaker: no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from bearerguard.backends.breaker import CircuitBreaker
from bearerguard.backends.introspection import (
    IntrospectionBackend,
    backoff_delay,
    introspection_form,
    parse_introspection_response,
    token_info_from_introspection,
)
from bearerguard.errors import BackendUnavailable, ConfigurationError
from helpers import FakeClock

NOW = 1_700_000_000.0


def test_form_is_rfc7662_request() -> None:
    assert introspection_form("abc") == {"token": "abc", "token_type_hint": "access_token"}


@pytest.mark.parametrize(
    ("status", "ctype", "body", "expected"),
    [
        (200, "application/json", b'{"active": false}', {"active": False}),
        (200, "application/json; charset=utf-8", b'{"active": false}', {"active": False}),
        (200, "application/token-introspection+json", b"{}", {}),
        (200, "Application/JSON", b'{"a": 1}', {"a": 1}),
    ],
)
def test_parse_accepts_json_objects(status: int, ctype: str, body: bytes, expected: Any) -> None:
    assert parse_introspection_response(status, ctype, body) == expected


@pytest.mark.parametrize(
    ("status", "ctype", "body"),
    [
        (500, "application/json", b'{"active": true}'),
        (401, "application/json", b'{"error": "invalid_client"}'),
        (302, "application/json", b"{}"),
        (200, "text/html", b'{"active": true}'),
        (200, "", b'{"active": true}'),
        (200, "application/json", b'{"active": tru'),
        (200, "application/json", b""),
        (200, "application/json", b"\xff\xfe"),
        (200, "application/json", b'["active", true]'),
        (200, "application/json", b"true"),
        (200, "application/json", b"[" * 100_000),
    ],
)
def test_parse_refuses_anything_else(status: int, ctype: str, body: bytes) -> None:
    with pytest.raises(BackendUnavailable):
        parse_introspection_response(status, ctype, body)


def test_parse_error_never_quotes_body() -> None:
    with pytest.raises(BackendUnavailable) as info:
        parse_introspection_response(200, "application/json", b'{"token": "s3cr3t-token"')
    assert "s3cr3t" not in str(info.value)


FULL = {
    "active": True,
    "client_id": "key_1",
    "scope": "dns  vps",
    "exp": NOW + 300,
    "ip": "::ffff:10.0.0.1",
    "ttl": 300,
}


def test_full_answer_maps_to_token_info() -> None:
    info = token_info_from_introspection(FULL, now=NOW)
    assert info is not None
    assert info.key_id == "key_1"
    assert info.apis == frozenset({"dns", "vps"})
    assert info.expires_at == NOW + 300
    assert info.bound_ip == "10.0.0.1"
    assert info.ttl == 300
    assert info.claims["client_id"] == "key_1"


@pytest.mark.parametrize(
    "data",
    [{"active": False}, {}, {"client_id": "k", "scope": "dns"}, {"active": None}],
)
def test_inactive_or_missing_active_is_unknown(data: dict[str, Any]) -> None:
    assert token_info_from_introspection(data) is None


@pytest.mark.parametrize(
    "change",
    [
        {"active": "true"},
        {"active": 1},
        {"client_id": 5},
        {"client_id": None, "sub": None},
        {"client_id": ""},
        {"scope": ["dns"]},
        {"exp": "soon"},
        {"exp": True},
        {"ttl": "300"},
        {"ip": "not-an-ip"},
        {"ip": 167772161},
    ],
)
def test_wrong_types_are_unavailable_never_allow(change: dict[str, Any]) -> None:
    with pytest.raises(BackendUnavailable):
        token_info_from_introspection({**FULL, **change}, now=NOW)


def test_sub_stands_in_for_client_id() -> None:
    info = token_info_from_introspection({"active": True, "sub": "key_2"}, now=NOW)
    assert info is not None and info.key_id == "key_2"
    assert info.apis == frozenset() and info.expires_at is None and info.ttl is None


def test_missing_ip_not_enforced_by_default_and_inactive_when_required() -> None:
    data = {k: v for k, v in FULL.items() if k != "ip"}
    info = token_info_from_introspection(data, now=NOW)
    assert info is not None and info.bound_ip is None
    assert token_info_from_introspection(data, now=NOW, require_ip=True) is None
    assert token_info_from_introspection({**data, "ip": None}, require_ip=True) is None


@pytest.mark.parametrize(
    ("extra", "ttl"),
    [
        ({"ttl": 60}, 60.0),
        ({"expires_in": 45}, 45.0),
        ({}, 300.0),  # derived: exp - now (an introspection is a use of a sliding token)
        ({"exp": NOW - 5}, None),
    ],
)
def test_ttl_sources(extra: dict[str, Any], ttl: float | None) -> None:
    data = {k: v for k, v in FULL.items() if k != "ttl"} | extra
    info = token_info_from_introspection(data, now=NOW)
    assert info is not None and info.ttl == ttl


def test_backoff_is_jittered_and_capped() -> None:
    assert backoff_delay(1, 0.05, 0.5, 1.0) == pytest.approx(0.05)
    assert backoff_delay(3, 0.05, 0.5, 1.0) == pytest.approx(0.2)
    assert backoff_delay(10, 0.05, 0.5, 1.0) == pytest.approx(0.5)
    assert backoff_delay(2, 0.05, 0.5, 0.0) == 0.0


@pytest.mark.parametrize(
    ("url", "kw"),
    [
        ("ftp://x/introspect", {}),
        ("/introspect", {}),
        ("http://rs:secret@127.0.0.1/i", {}),
        ("http://127.0.0.1/i", {"connect_timeout": 0}),
        ("http://127.0.0.1/i", {"read_timeout": float("inf")}),
        ("http://127.0.0.1/i", {"max_connections": 0}),
        ("http://127.0.0.1/i", {"retries": -1}),
        ("http://127.0.0.1/i", {"breaker_threshold": 0}),
        ("http://127.0.0.1/i", {"breaker_reset": -1}),
    ],
)
def test_bad_configuration_fails_at_construction(url: str, kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        IntrospectionBackend(url, "rs", "secret", **kw)


def test_repr_hides_secret() -> None:
    b = IntrospectionBackend("http://127.0.0.1/i", "rs", "hunter2-secret")
    assert "hunter2" not in repr(b)


# -- circuit breaker -------------------------------------------------------------------


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock(0.0)
    b = CircuitBreaker(3, 10.0, clock=clock)
    for _ in range(2):
        assert b.acquire()
        b.failure()
    assert b.acquire()
    b.success()  # a success resets the count
    for _ in range(2):
        assert b.acquire()
        assert b.failure() == "closed"
    assert b.acquire()
    assert b.failure() == "open"
    assert not b.acquire()
    assert b.retry_in() == pytest.approx(10.0)


def test_breaker_half_open_lets_one_probe_through() -> None:
    clock = FakeClock(0.0)
    b = CircuitBreaker(1, 5.0, clock=clock)
    b.acquire()
    b.failure()
    clock.advance(4.9)
    assert not b.acquire() and b.state == "open"
    clock.advance(0.1)
    assert b.state == "half_open"
    assert b.acquire()  # the probe
    assert not b.acquire()  # everyone else still fails fast
    assert b.failure() == "open"  # failed probe: open for another period
    assert not b.acquire()
    clock.advance(5.0)
    assert b.acquire()
    assert b.success() == "closed"
    assert b.acquire() and b.acquire()


def test_breaker_late_failures_do_not_reopen_or_extend() -> None:
    clock = FakeClock(0.0)
    b = CircuitBreaker(2, 5.0, clock=clock)
    assert b.acquire() and b.acquire() and b.acquire()
    b.failure()
    b.failure()
    assert b.state == "open"
    clock.advance(3)
    b.failure()  # a call let out before the breaker opened lands late
    assert b.retry_in() == pytest.approx(2.0)
