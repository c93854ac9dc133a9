"""Claim validation: a JWT access token, its signature checked against one key, → `TokenInfo`.

RFC 9068 §4 strictly: ``iss`` equals the issuer, ``aud`` contains the audience, ``exp``
is required, and every NumericDate is a finite JSON number. Claims map to `TokenInfo`
as the package docstring says.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

import jwt as pyjwt

from ...clientip import normalize_ip
from ...tokens import TokenInfo
from .compact import Compact, b64decode
from .keys import VerifyingKey

__all__ = ["verify_access_token"]


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    # RFC 7519 §2: NumericDate is a JSON number; a string or a boolean is not one.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(name)
    if not math.isfinite(value):
        raise ValueError(name)
    return float(value)


def verify_access_token(
    compact: Compact,
    key: VerifyingKey,
    *,
    issuer: str,
    audience: str,
    leeway: float,
    now: float,
) -> TokenInfo | str:
    """Check a JWT access token against `key`: a `TokenInfo`, or why it is refused.

    `compact.header` must already have passed `header_problem`. The algorithm is the
    key's (`key.alg`); the token's ``alg`` must name the same one. PyJWT's algorithm
    (over cryptography) checks the signature; the claims are checked here, strictly.
    """
    if compact.header.get("alg") != key.alg:
        return "algorithm does not match the key"
    try:
        signature = b64decode(compact.signature)
        valid = key.algorithm.verify(compact.signing_input, key.key, signature)
    except (binascii.Error, ValueError, TypeError, pyjwt.PyJWTError):
        valid = False
    if not valid:
        return "bad signature"
    try:
        claims = json.loads(b64decode(compact.payload))
    except (binascii.Error, ValueError, RecursionError):
        return "payload is not JSON"
    if not isinstance(claims, dict):
        return "payload is not a JSON object"
    # RFC 9068 §4: iss MUST exactly match, aud MUST contain this resource.
    if claims.get("iss") != issuer:
        return "wrong or missing iss"
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        return "aud missing or not strings"
    if audience not in audiences:
        return "wrong aud"
    try:
        exp = _numeric(claims, "exp")
        nbf = _numeric(claims, "nbf") if "nbf" in claims else None
        if "iat" in claims:
            _numeric(claims, "iat")
    except ValueError as exc:
        return f"{exc} missing or not a number"
    assert exp is not None
    if now >= exp + leeway:
        return "expired"
    if nbf is not None and now < nbf - leeway:
        return "not yet valid"
    key_id = claims.get("client_id") or claims.get("sub")
    if not isinstance(key_id, str) or not key_id:
        return "no client_id or sub"
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        return "scope is not a string"
    bound_ip = None
    ip = claims.get("ip")
    if ip is not None:
        bound_ip = normalize_ip(ip) if isinstance(ip, str) else None
        if bound_ip is None:
            return "ip is not an address"
    return TokenInfo(
        key_id,
        frozenset(scope.split()),
        bound_ip,
        exp + leeway,
        None,
        claims,
        frozenset(audiences),
    )
