"""Issue 12 (hostile traffic), the parts the core shows without any server.

Token format, log escaping, proxy normalisation, the fair-share rule of lookup slots,
the cache's revocation memory and its trim on tiny TTLs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys

import pytest

from bearerguard import tokens
from bearerguard._edge import _Slots
from bearerguard.cache import _GONE_TTL, TokenCache
from bearerguard.clientip import ClientIPResolver
from bearerguard.credentials import extract_token, query_tokens
from bearerguard.errors import BackendUnavailable, ConfigurationError, log_safe
from bearerguard.flow import Allow, Deny, Guard, Lookup, RequestFacts
from bearerguard.stores.base import new_secret, new_token
from bearerguard.tokens import (
    SECRET_PREFIX,
    TOKEN_PREFIX,
    TokenInfo,
    generate,
    is_well_formed,
    token_key,
)
from helpers import FakeClock

B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


# -- the token and secret format -------------------------------------------------------
def test_tokens_and_secrets_have_the_contract_shape() -> None:
    for _ in range(200):
        token, secret = new_token(), new_secret()
        assert token.startswith("bgt_") and secret.startswith("bgs_")
        assert len(token) == len(secret) == 4 + 43 + 6
        assert B64TOKEN.fullmatch(token) and B64TOKEN.fullmatch(secret)
        assert extract_token([f"Bearer {token}"]) == token
        assert is_well_formed(token) and not is_well_formed(token, SECRET_PREFIX)
        assert is_well_formed(secret, SECRET_PREFIX) and not is_well_formed(secret)


@pytest.mark.parametrize(
    "data", [b"", b"x", b"bgt_" + b"A" * 49, "\u00e9".encode() * 1000, bytes(range(256)) * 9]
)
def test_the_per_request_sha256_is_sha256(data: bytes) -> None:
    assert tokens.sha256(data).digest() == hashlib.sha256(data).digest()
    assert tokens.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()


def test_the_per_request_sha256_is_openssl_s_in_fips_mode_or_without_python_s_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # By default Python's own (cheaper with cold caches, docs/benchmarks.md) ...
    assert tokens._sha256_constructor() is not hashlib.sha256
    # ... but OpenSSL's under FIPS, and where Python was built without its own hashes.
    import _hashlib

    with monkeypatch.context() as m:
        m.setattr(_hashlib, "get_fips_mode", lambda: 1)
        assert tokens._sha256_constructor() is hashlib.sha256
    monkeypatch.setitem(sys.modules, "_sha2", None)  # an import of it raises ImportError
    monkeypatch.setitem(sys.modules, "_sha256", None)
    assert tokens._sha256_constructor() is hashlib.sha256


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # checksum
        lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:],  # random part
        lambda t: t[:-1],  # too short
        lambda t: t + "A",  # too long
        lambda t: "bgx_" + t[4:],  # prefix
        lambda t: t[:20] + "/" + t[21:],  # alphabet (b64token, not base64url)
        lambda t: t.upper(),
    ],
)
def test_junk_fails_the_checksum(mutate: object) -> None:
    token = generate(TOKEN_PREFIX)
    assert callable(mutate)
    assert not is_well_formed(mutate(token))


def test_guard_with_token_format_refuses_junk_before_any_lookup() -> None:
    guard = Guard(token_format="bearerguard")
    flow = guard.authenticate(RequestFacts("/x", ("Bearer " + "a" * 53,), peer="127.0.0.1"))
    with pytest.raises(StopIteration) as stop:
        next(flow)  # no Lookup is yielded
    decision = stop.value.value
    assert isinstance(decision, Deny)
    assert (decision.challenge.status, decision.challenge.error) == (401, "invalid_token")
    # A well-formed token is looked up as usual.
    flow = guard.authenticate(RequestFacts("/x", ("Bearer " + new_token(),), peer="127.0.0.1"))
    assert isinstance(next(flow), Lookup)
    with pytest.raises(ConfigurationError):
        Guard(token_format="jwt")


# -- H5: log lines ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ("/dns/zones", "/dns/zones"),
        ("/x\nrefused 200 forged", "/x\\nrefused 200 forged"),
        ("/x\r\nINFO forged", "/x\\r\\nINFO forged"),
        ("/x\u2028forged\x85", "/x\\u2028forged\\x85"),
        ("/x\\nforged", "/x\\\\nforged"),  # a literal backslash cannot fake an escape
        ("/\x1b[31mred", "/\\x1b[31mred"),
    ],
)
def test_log_safe_keeps_one_line(text: str, logged: str) -> None:
    assert log_safe(text) == logged
    assert len(log_safe("/" + "a" * 5000)) <= 201


def test_refusal_line_escapes_the_path(caplog: pytest.LogCaptureFixture) -> None:
    guard = Guard()
    with caplog.at_level(logging.INFO, logger="bearerguard"):
        flow = guard.authenticate(RequestFacts("/a\nrefused 200 ok: forged", peer="127.0.0.1"))
        with pytest.raises(StopIteration):
            next(flow)
    lines = [r.getMessage() for r in caplog.records if r.name == "bearerguard"]
    assert len(lines) == 1
    assert "\n" not in lines[0] and "path=/a\\nrefused 200 ok: forged" in lines[0]


# -- H6: query tokens ------------------------------------------------------------------
def test_query_tokens_never_raise_on_many_fields() -> None:
    many = "&".join(f"f{i}=v" for i in range(10_000))
    assert query_tokens(many) == ()
    assert query_tokens(many + "&access_token=abc") == ("abc",)
    assert query_tokens("access_token=a&" + many + "&access_token=b") == ("a", "b")
    assert query_tokens("access%5Ftoken=x+y%2B") == ()  # name never literally there
    assert query_tokens("access_token=x+y%2B&access%5Ftoken=z") == ("x y+", "z")


# -- L: trusted proxies written as IPv4-mapped IPv6 -------------------------------------
@pytest.mark.parametrize(
    ("proxy", "peer", "expected"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1", "203.0.113.9"),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1", "203.0.113.9"),
        ("::ffff:10.0.0.0/120", "10.0.0.77", "203.0.113.9"),
        ("::ffff:10.0.0.1", "10.0.0.2", "10.0.0.2"),  # not the proxy
        ("10.0.0.1", "::ffff:10.0.0.1", "203.0.113.9"),
    ],
)
def test_ipv4_mapped_trusted_proxy_matches(proxy: str, peer: str, expected: str) -> None:
    assert ClientIPResolver([proxy]).resolve(peer, ["203.0.113.9"]) == expected


# -- H2: the fair-share rule -----------------------------------------------------------
def test_one_address_holds_at_most_a_fair_share_under_contention() -> None:
    slots = _Slots(16)
    taken = 0
    with pytest.raises(BackendUnavailable):
        for _ in range(16):
            slots.take("127.0.0.3")
            taken += 1
    assert taken == 8  # half the slots while nobody else needs them, then no more
    for ip in ("127.0.0.2", "127.0.0.4"):
        for _ in range(4):
            slots.take(ip)  # every other address still gets its quarter
    assert slots.total == 16
    with pytest.raises(BackendUnavailable):
        slots.take("127.0.0.5")  # the global bound stays
    slots.give("127.0.0.3")
    with pytest.raises(BackendUnavailable):
        slots.take("127.0.0.3")  # above its share while the pool is busy
    slots.take("127.0.0.5")


# -- P: a revocation wins over an older answer ------------------------------------------
def test_an_answer_in_flight_when_the_token_is_revoked_is_not_cached() -> None:
    clock = FakeClock()
    guard = Guard(clock=clock)
    token = new_token()
    info = TokenInfo("key_a", frozenset({"dns"}), "127.0.0.1", clock() + 300, 300)
    flow = guard.authenticate(RequestFacts("/x", (f"Bearer {token}",), peer="127.0.0.1"))
    lk = next(flow)
    guard.cache.evict(lk.key)  # the invalidation arrives while the lookup is out
    with pytest.raises(StopIteration) as stop:
        flow.send(info)
    assert isinstance(stop.value.value, Deny)
    assert guard.cache.peek(lk.key) is None
    # A key revocation too, for every token of the key.
    other = new_token()
    flow = guard.authenticate(RequestFacts("/x", (f"Bearer {other}",), peer="127.0.0.1"))
    next(flow)
    guard.cache.evict_key("key_a")
    with pytest.raises(StopIteration) as stop:
        flow.send(info)
    assert isinstance(stop.value.value, Deny)
    # A background refresh that lands after the revocation does not bring it back.
    guard.refreshed(token_key(other), info, "127.0.0.1")
    assert guard.cache.peek(token_key(other)) is None


def test_a_key_revoked_while_its_token_is_looked_up_wins_then_is_forgotten() -> None:
    # A key revocation alone (no token evicted before it), then the same answer once
    # the revocation is older than any lookup can be (`_GONE_TTL`): cached again.
    clock = FakeClock()
    guard = Guard(clock=clock)
    token = new_token()
    info = TokenInfo("key_a", frozenset({"dns"}), "127.0.0.1", clock() + 900, 900)
    facts = RequestFacts("/x", (f"Bearer {token}",), peer="127.0.0.1")
    flow = guard.authenticate(facts)
    lk = next(flow)
    guard.cache.evict_key("key_a")
    with pytest.raises(StopIteration) as stop:
        flow.send(info)
    assert isinstance(stop.value.value, Deny)
    assert guard.cache.peek(lk.key) is None
    clock.advance(_GONE_TTL)
    flow = guard.authenticate(facts)
    next(flow)
    with pytest.raises(StopIteration) as stop:
        flow.send(info)
    assert isinstance(stop.value.value, Allow)
    assert guard.cache.peek(lk.key) is not None


# -- Q: tiny cache TTLs ----------------------------------------------------------------
def test_trim_never_raises_on_an_entry_stale_when_inserted() -> None:
    clock = FakeClock()
    cache = TokenCache(ttl=1e-9, clock=clock)
    info = TokenInfo("key_a", frozenset({"dns"}), None, clock() + 300, 300)
    for i in range(3):
        cache.put(bytes([i]) * 32, info, clock())  # fresh_until == now at this clock
    guard = Guard(cache_ttl=1e-9, clock=clock)
    flow = guard.authenticate(RequestFacts("/x", (f"Bearer {new_token()}",), peer="127.0.0.1"))
    next(flow)
    with pytest.raises(StopIteration) as stop:
        flow.send(info)
    assert stop.value.value.identity.key_id == "key_a"
