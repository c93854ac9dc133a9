"""The token model: what a backend knows about a token, and what the app sees."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol

__all__ = [
    "Identity",
    "Invalidation",
    "SECRET_PREFIX",
    "TOKEN_PREFIX",
    "TokenInfo",
    "fingerprint",
    "generate",
    "is_well_formed",
    "token_digest",
    "token_key",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class _Hash(Protocol):
    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def _sha256_constructor() -> Callable[[bytes], _Hash]:
    """SHA-256 for the short strings hashed on every request (tokens, key secrets).

    Python's own implementation rather than OpenSSL's: the digests are the same, but
    OpenSSL 3 sets each hash up through its provider machinery, which a request pays
    with cold caches (docs/benchmarks.md, "The token's SHA-256, with cold caches").
    OpenSSL's when it runs in FIPS mode, or when Python was built without its own.
    """
    try:
        fips = bool(importlib.import_module("_hashlib").get_fips_mode())
    except (ImportError, AttributeError):
        fips = False
    if not fips:
        for name in ("_sha2", "_sha256"):  # Python 3.12+, 3.10-3.11
            try:
                made: Callable[[bytes], _Hash] = importlib.import_module(name).sha256
            except (ImportError, AttributeError):
                continue
            return made
    return hashlib.sha256


sha256 = _sha256_constructor()
"""``hashlib.sha256``'s equal for the per-request digests (`_sha256_constructor`)."""


def token_digest(token: str) -> str:
    """Return the SHA-256 hex digest of `token`: the only form we store or key caches by."""
    return sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def token_key(token: str) -> bytes:
    """Return the raw SHA-256 digest of `token`: the key of caches and lookups."""
    return sha256(token.encode("utf-8", "surrogateescape")).digest()


TOKEN_PREFIX = "bgt_"  # noqa: S105  (a prefix, not a secret)
"""Prefix of access tokens issued by ``bearerguard serve``."""

SECRET_PREFIX = "bgs_"  # noqa: S105  (a prefix, not a secret)
"""Prefix of key secrets made by ``bearerguard``."""

# prefix + 43 base64url characters (256 random bits) + a 6-character checksum.
_SHAPE = re.compile(r"bg[ts]_[A-Za-z0-9_-]{49}")
_RANDOM_CHARS = 43


def _checksum(random_part: str) -> str:
    # 36 bits of SHA-256 over the random part: junk passes with odds of 1 in 6.9e10.
    digest = sha256(random_part.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:6]).decode("ascii")[:6]


def generate(prefix: str = TOKEN_PREFIX) -> str:
    """A fresh token (`TOKEN_PREFIX`) or key secret (`SECRET_PREFIX`).

    `prefix` + 43 base64url characters (256 random bits) + a 6-character checksum of
    the random part: RFC 6750 ``b64token`` syntax, and recognisable without a lookup
    (`is_well_formed`), by resource servers and secret scanners alike.
    """
    random_part = secrets.token_urlsafe(32)
    return prefix + random_part + _checksum(random_part)


def is_well_formed(value: str, prefix: str = TOKEN_PREFIX) -> bool:
    """Whether `value` has the shape of a token (or secret) from `generate(prefix)`.

    Checks the prefix, the length, the alphabet and the checksum; no I/O.
    """
    if not value.startswith(prefix) or _SHAPE.fullmatch(value) is None:
        return False
    body = value[len(prefix) :]
    random_part, check = body[:_RANDOM_CHARS], body[_RANDOM_CHARS:]
    return hmac.compare_digest(_checksum(random_part), check)


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
    """A change announced by the source, by `kind`.

    ``"token"``: one token revoked (`value` is its digest). ``"key"``: a key revoked, or
    its account disabled (`value` is the key id): its tokens are gone. ``"secret"``: a
    key's secret rotated (`value` is the key id): its tokens stay valid, only a cached
    key record (the auth service's) is stale. A subscriber ignores kinds it does not
    know, so new kinds may be added.
    """

    kind: Literal["token", "key", "secret"]
    value: str


class Anonymous:
    """Starlette-compatible user and credentials for requests on public paths."""

    __slots__ = ()
    is_authenticated = False
    display_name = ""
    identity = ""
    scopes: list[str] = []  # noqa: RUF012  (never mutated; Starlette reads it)


ANONYMOUS = Anonymous()
