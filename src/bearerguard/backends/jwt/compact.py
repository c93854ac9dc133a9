"""The shape of a JWT access token: a compact JWS split into its parts, and the header rules.

Nothing here verifies a signature: `parse_compact` only splits and decodes, and
`header_problem` refuses a header RFC 9068 and RFC 8725 do not allow, before any key is
looked at.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "Compact",
    "b64decode",
    "header_problem",
    "looks_like_jwt",
    "parse_compact",
    "parse_header",
]

ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
"""RFC 9068 §2.1: the ``typ`` header of a JWT access token (compared case-blind)."""

# Header parameters that carry or point at a key: the key must come from the issuer's
# JWKS, never from the token (RFC 8725 §3.10). `crit` names extensions we do not know.
_FORBIDDEN_HEADER = ("jwk", "jku", "x5u", "x5c", "crit")

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_HEADER = 2048


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass(frozen=True, slots=True)
class Compact:
    """A compact JWS split into its parts (RFC 7515 §7.1); nothing in it is trusted yet."""

    header: dict[str, Any]
    signing_input: bytes = field(repr=False)
    payload: str = field(repr=False)
    signature: str = field(repr=False)


def parse_compact(token: str) -> Compact | None:
    """Split `token` as a compact JWS, or None when it is not one.

    Three non-empty base64url segments, the first decoding to a JSON object (the header).
    """
    parts = token.split(".")
    if len(parts) != 3 or len(parts[0]) > _MAX_HEADER:
        return None
    head, payload, signature = parts
    if not (_B64URL.fullmatch(head) and _B64URL.fullmatch(payload)):
        return None
    if not _B64URL.fullmatch(signature):
        return None
    try:
        header = json.loads(b64decode(head))
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    return Compact(header, f"{head}.{payload}".encode("ascii"), payload, signature)


def parse_header(token: str) -> dict[str, Any] | None:
    """The JOSE header of a compact JWS, or None when `token` is not one."""
    compact = parse_compact(token)
    return None if compact is None else compact.header


def looks_like_jwt(token: str) -> bool:
    """Whether `token` has the shape of a JWT (what `ChainBackend` routes on)."""
    return parse_header(token) is not None


def header_problem(header: Mapping[str, Any], algorithms: Iterable[str]) -> str | None:
    """Why `header` cannot be an RFC 9068 access token's header, or None if it can."""
    typ = header.get("typ")
    # RFC 9068 §4: "Resource servers MUST verify that the typ header value is at+jwt or
    # application/at+jwt and reject tokens carrying any other value."
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        return "typ is not at+jwt"
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        return "algorithm not accepted"
    for name in _FORBIDDEN_HEADER:
        if name in header:
            return f"header parameter {name} is refused"
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        return "kid is not a string"
    return None
