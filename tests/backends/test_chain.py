"""ChainBackend: which backend answers which token, on both faces."""

from __future__ import annotations

import asyncio

import pytest

from bearerguard import ChainBackend, ConfigurationError, Invalidation, StoreBackend, TokenInfo
from bearerguard.backends.jwt import looks_like_jwt
from bearerguard.stores import MemoryStore
from helpers import issue
from jwt_issuer import b64


class Recording:
    """A backend that says who it is and remembers what it was asked."""

    def __init__(self, name: str, shape: str | None = None) -> None:
        self.name = name
        self.shape = shape
        self.asked: list[str] = []

    def lookup(self, token: str) -> TokenInfo | None:
        self.asked.append(token)
        return TokenInfo(self.name, frozenset())

    def accepts(self, token: str) -> bool:
        return self.shape is None or token.startswith(self.shape)


class SyncOnly:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def lookup(self, token: str) -> TokenInfo | None:
        self.asked.append(token)
        return TokenInfo("sync-only", frozenset())


JWT_SHAPED = f"{b64({'alg': 'RS256'})}.{b64({'sub': 'x'})}.c2ln"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (JWT_SHAPED, True),
        ("bgt_" + "a" * 43, False),
        ("a.b.c", False),  # segments, but no JSON header
        (f"{b64(b'[1]')}.e30.c2ln", False),  # a JSON header that is not an object
        (f"{b64({'alg': 'none'})}.e30.", False),  # an empty segment
        (f"{b64({'a': 1})}.e30.c2ln.x", False),  # four segments
    ],
)
def test_what_looks_like_a_jwt(token: str, expected: bool) -> None:
    assert looks_like_jwt(token) is expected


def test_first_backend_that_accepts_answers_and_only_it() -> None:
    jwt, rest = Recording("jwt", shape="ey"), Recording("rest")
    chain = ChainBackend([jwt, rest])
    info = chain.lookup("eyJhbGciOi.x.y")
    assert info is not None and info.key_id == "jwt"
    info = chain.lookup("bgt_opaque")
    assert info is not None and info.key_id == "rest"
    assert jwt.asked == ["eyJhbGciOi.x.y"] and rest.asked == ["bgt_opaque"]


def test_no_backend_recognises_the_token_is_unknown() -> None:
    chain = ChainBackend([Recording("a", shape="a"), Recording("b", shape="b")])
    assert chain.lookup("zzz") is None
    assert asyncio.run(chain.alookup("zzz")) is None
    assert chain.accepts("a1") and not chain.accepts("zzz")


def test_async_face_runs_a_sync_only_member_in_a_thread() -> None:
    member = SyncOnly()
    info = asyncio.run(ChainBackend([member]).alookup("tok"))
    assert info is not None and info.key_id == "sync-only"
    assert member.asked == ["tok"]


def test_chains_nest_and_forward_revocations() -> None:
    store = MemoryStore()
    issued = issue(store)
    inner = ChainBackend([Recording("jwt", shape="ey"), StoreBackend(store)])
    chain = ChainBackend([inner])
    seen: list[Invalidation] = []
    stop = chain.subscribe(seen.append)
    info = chain.lookup(issued.token)
    assert info is not None and info.key_id == issued.key_id
    store.revoke_key(issued.key_id)
    assert seen == [Invalidation("key", issued.key_id)]
    stop()
    chain.close()


def test_bad_chains_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        ChainBackend([])
    with pytest.raises(ConfigurationError):
        ChainBackend([object()])
