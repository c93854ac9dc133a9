"""The token model: what a backend knows about a token, and what the app sees."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

__all__ = [
    "Identity",
    "Invalidation",
    "TokenInfo",
    "fingerprint",
    "token_digest",
    "token_key",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def token_digest(token: str) -> str:
    """Return the SHA-256 hex digest of `token`: the only form we store or key caches by."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def token_key(token: str) -> bytes:
    """Return the raw SHA-256 digest of `token`: the key of caches and lookups."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def fingerprint(digest: str | bytes) -> str:
    """Return a short, non-reversible label for a token digest (hex or raw), safe to log."""
    return (digest.hex() if isinstance(digest, bytes) else digest)[:12]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a backend knows about an active token.

    `expires_at` is wall-clock time (seconds since the epoch) as of the backend's last
    answer; with sliding expiry the source moves it on every use. `ttl` is the sliding
    lifetime in seconds when the source tells it. `bound_ip` is the normalised address
    the token was issued to, or None when the source does not bind tokens to addresses.
    `audience` holds the resources the token is meant for (RFC 8707 ``resource``, a
    JWT's or an introspection answer's ``aud``); empty when the source names none.
    """

    key_id: str
    apis: frozenset[str]
    bound_ip: str | None = None
    expires_at: float | None = None
    ttl: float | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    audience: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Identity:
    """What an allowed request carries into the application.

    It doubles as Starlette's `request.user` (``is_authenticated``, ``display_name``) and
    `request.auth` (``scopes``), so ``starlette.authentication.requires("dns")`` works.
    """

    key_id: str
    apis: frozenset[str]
    client_ip: str | None
    token: TokenInfo = field(repr=False)
    fingerprint: str = ""

    is_authenticated: ClassVar[bool] = True

    @property
    def display_name(self) -> str:
        return self.key_id

    @property
    def identity(self) -> str:
        return self.key_id

    @property
    def scopes(self) -> list[str]:
        return sorted(self.apis)


@dataclass(frozen=True, slots=True)
class Invalidation:
    """A revocation announced by the source: one token (by digest) or a whole key."""

    kind: Literal["token", "key"]
    value: str


class Anonymous:
    """Starlette-compatible user and credentials for requests on public paths."""

    __slots__ = ()
    is_authenticated = False
    display_name = ""
    identity = ""
    scopes: list[str] = []  # noqa: RUF012  (never mutated; Starlette reads it)


ANONYMOUS = Anonymous()
