from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bearerguard import ClientIPResolver, ConfigurationError
from bearerguard.clientip import normalize_ip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::FFFF:10.1.2.3", "10.1.2.3"),
        ("[::1]", "::1"),
        ("2001:DB8::1", "2001:db8::1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("localhost", None),
        ("10.0.0.256", None),
        ("", None),
        ("fe80::1%eth0", None),
    ],
)
def test_normalize(text: str, expected: str | None) -> None:
    assert normalize_ip(text) == expected


@pytest.mark.parametrize(
    ("trusted", "peer", "xff", "expected"),
    [
        # No trusted proxies: the peer, whatever the headers say.
        ((), "10.0.0.5", ("1.2.3.4",), "10.0.0.5"),
        # Untrusted peer: forged header ignored.
        (("10.0.0.0/8",), "192.0.2.9", ("1.2.3.4",), "192.0.2.9"),
        # Trusted peer: the last (rightmost) hop.
        (("10.0.0.0/8",), "10.0.0.5", ("1.2.3.4",), "1.2.3.4"),
        # Client-prepended forgeries left of the real hop are not reached.
        (("10.0.0.0/8",), "10.0.0.5", ("6.6.6.6, 1.2.3.4",), "1.2.3.4"),
        # Chains of trusted proxies are skipped, right to left.
        (("10.0.0.0/8",), "10.0.0.5", ("1.2.3.4, 10.0.0.7, 10.0.0.6",), "1.2.3.4"),
        # Several headers read as one list, in order.
        (("10.0.0.0/8",), "10.0.0.5", ("6.6.6.6", "1.2.3.4, 10.0.0.9"), "1.2.3.4"),
        # All hops trusted: the leftmost is as far as we can see.
        (("10.0.0.0/8",), "10.0.0.5", ("10.0.0.8, 10.0.0.9",), "10.0.0.8"),
        # No header from a trusted proxy: the proxy itself.
        (("10.0.0.0/8",), "10.0.0.5", (), "10.0.0.5"),
        # Garbage where an address should be: cannot tell.
        (("10.0.0.0/8",), "10.0.0.5", ("not-an-ip",), None),
        (("10.0.0.0/8",), "10.0.0.5", ("1.2.3.4, ",), None),
        # Mapped IPv6 peers compare as IPv4.
        (("127.0.0.1",), "::ffff:127.0.0.1", ("::ffff:1.2.3.4",), "1.2.3.4"),
        (("::1",), "::1", ("2001:db8::7",), "2001:db8::7"),
        ((), None, ("1.2.3.4",), None),
    ],
)
def test_resolve(
    trusted: tuple[str, ...], peer: str | None, xff: tuple[str, ...], expected: str | None
) -> None:
    assert ClientIPResolver(trusted).resolve(peer, xff) == expected


def test_comma_separated_string_config() -> None:
    r = ClientIPResolver("10.0.0.0/8, 127.0.0.1")
    assert r.resolve("127.0.0.1", ("1.2.3.4",)) == "1.2.3.4"


def test_bad_config_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        ClientIPResolver(["10.0.0.0/33"])


@given(st.lists(st.text(max_size=20), max_size=4), st.text(max_size=20))
def test_never_raises(xff: list[str], peer: str) -> None:
    result = ClientIPResolver(["10.0.0.0/8"]).resolve(peer, xff)
    assert result is None or normalize_ip(result) == result
