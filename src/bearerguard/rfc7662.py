"""RFC 7662 token introspection, both directions, with no I/O.

The resource server's side (`IntrospectionBackend`): `introspection_form` builds the
request body, `parse_introspection_response` checks and decodes the answer and
`token_info_from_introspection` maps its members onto `TokenInfo`.

The auth service's side (``bearerguard serve``'s ``/introspect``):
`introspection_request` reads the form (``token`` and the extension member
``client_ip``) and `introspection_answer` writes the answer about a token: ``active``,
``client_id``, ``scope``, ``exp``, ``iat``, ``token_type``, ``aud`` and the extension
members ``ip`` (the bound address) and ``ttl`` (the sliding lifetime), which
`token_info_from_introspection` reads back.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .clientip import normalize_ip
from .errors import BackendUnavailable
from .tokens import TokenInfo

__all__ = [
    "INACTIVE",
    "IntrospectedToken",
    "introspection_answer",
    "introspection_form",
    "introspection_request",
    "parse_introspection_response",
    "token_info_from_introspection",
    "whole_seconds",
]

INACTIVE: dict[str, Any] = {"active": False}
"""RFC 7662 §2.2: the answer about a token that is not active (no detail why)."""


class IntrospectedToken(Protocol):
    """What the auth service knows about an active token (a stored `TokenRecord`)."""

    @property
    def key_id(self) -> str: ...
    @property
    def apis(self) -> frozenset[str]: ...
    @property
    def bound_ip(self) -> str: ...
    @property
    def issued_at(self) -> float: ...
    @property
    def expires_at(self) -> float: ...
    @property
    def ttl(self) -> float: ...
    @property
    def audience(self) -> Sequence[str]: ...


def whole_seconds(value: float) -> int:
    """A lifetime as the whole seconds an answer states (at least 1)."""
    return max(1, round(value))


def introspection_request(form: Mapping[str, str]) -> tuple[str, str | None]:
    """The auth service's reading of an RFC 7662 §2.1 request: (token, client_ip).

    ``token_type_hint`` is accepted and ignored (RFC 7662 §2.1: "MAY ignore").
    ``client_ip`` (extension, H4) is the address of the request being checked, normalised.
    Raises ValueError, with the description for an ``invalid_request`` answer, when the
    token is missing or ``client_ip`` is not an IP address.
    """
    token = form.get("token")
    if token is None:
        raise ValueError("Missing token")
    client_ip = form.get("client_ip")
    if client_ip is not None:
        client_ip = normalize_ip(client_ip)
        if client_ip is None:
            raise ValueError("client_ip is not an IP address")
    return token, client_ip


def introspection_answer(token: IntrospectedToken | None) -> dict[str, Any]:
    """The RFC 7662 §2.2 answer about `token` (None: not active)."""
    if token is None:
        return dict(INACTIVE)
    extra: dict[str, Any] = {}
    if token.audience:
        # RFC 7662 §2.2: aud is a string or an array of strings.
        aud = token.audience
        extra["aud"] = aud[0] if len(aud) == 1 else list(aud)
    return {
        **extra,
        "active": True,
        "client_id": token.key_id,
        "scope": " ".join(sorted(token.apis)),
        "exp": int(token.expires_at),
        "iat": int(token.issued_at),
        "token_type": "bearer",
        "ip": token.bound_ip,
        "ttl": whole_seconds(token.ttl),
    }


def introspection_form(token: str, client_ip: str | None = None) -> dict[str, str]:
    """The RFC 7662 §2.1 request body (sent as application/x-www-form-urlencoded).

    `client_ip`, the address of the request being checked, is an extension member:
    ``bearerguard serve`` counts the introspection as a use of the token only when it
    is the token's own address (H4); other servers ignore members they do not know.
    """
    form = {"token": token, "token_type_hint": "access_token"}
    if client_ip is not None:
        form["client_ip"] = client_ip
    return form


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def parse_introspection_response(status: int, content_type: str, body: bytes) -> dict[str, Any]:
    """Check an introspection answer and return its JSON object.

    Raises BackendUnavailable for a status other than 200, a content type that is not
    JSON, a body that is not UTF-8 JSON, or JSON that is not an object. The message
    never quotes the body (a broken server might echo the token).
    """
    if status != 200:
        hint = " (check the backend's client_id and client_secret)" if status in (401, 403) else ""
        raise BackendUnavailable(f"introspection endpoint answered HTTP {status}{hint}")
    # RFC 7662 §2.2: the server responds with "application/json".
    if not _is_json(content_type):
        raise BackendUnavailable("introspection answer is not JSON (content type)")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BackendUnavailable("introspection answer is malformed JSON") from exc
    if not isinstance(data, dict):
        raise BackendUnavailable("introspection answer is not a JSON object")
    return data


def _number(data: Mapping[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BackendUnavailable(f"introspection member {name!r} is not a number")
    return float(value)


def _string(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BackendUnavailable(f"introspection member {name!r} is not a string")
    return value


def token_info_from_introspection(
    data: Mapping[str, Any], *, require_ip: bool = False, now: float | None = None
) -> TokenInfo | None:
    """Map an RFC 7662 §2.2 answer to `TokenInfo`, or None for an inactive token.

    - ``active`` false or missing → None (RFC 7662: "active" is REQUIRED; anything but
      true is not active);
    - ``client_id`` (else ``sub``) → key_id; ``scope`` (space-separated) → apis;
      ``exp`` → expires_at; ``aud`` (a string or an array of strings) → audience;
      the extension member ``ip`` → bound_ip (normalised);
    - ``ttl`` or ``expires_in`` (extension members, seconds) → ttl, the sliding
      lifetime. Without them ttl is ``exp - now``: an introspection counts as a use, so
      for a sliding token that is its full lifetime, and the cache refreshes the token
      at a third of it (a fixed-lifetime token just gets refreshed a little more often).
    - no ``ip``: None when `require_ip`, else bound_ip None (binding not enforced).

    Raises BackendUnavailable when a member has the wrong JSON type, an ``ip`` is not
    an address, or an active token names no client.
    """
    active = data.get("active")
    if active is None or active is False:
        return None
    if active is not True:
        raise BackendUnavailable("introspection member 'active' is not a boolean")
    key_id = _string(data, "client_id") or _string(data, "sub")
    if not key_id:
        raise BackendUnavailable("active token without client_id")
    scope = _string(data, "scope")
    apis = frozenset(scope.split()) if scope else frozenset()
    exp = _number(data, "exp")
    ttl = _number(data, "ttl")
    if ttl is None:
        ttl = _number(data, "expires_in")
    if ttl is None and exp is not None:
        remaining = exp - (time.time() if now is None else now)
        ttl = remaining if remaining > 0 else None
    if ttl is not None and ttl <= 0:
        ttl = None
    ip_text = _string(data, "ip")
    bound_ip: str | None = None
    if ip_text is None:
        if require_ip:
            return None
    else:
        bound_ip = normalize_ip(ip_text)
        if bound_ip is None:
            raise BackendUnavailable("introspection member 'ip' is not an IP address")
    return TokenInfo(key_id, apis, bound_ip, exp, ttl, dict(data), _audience(data))


def _audience(data: Mapping[str, Any]) -> frozenset[str]:
    aud = data.get("aud")
    if aud is None:
        return frozenset()
    names = [aud] if isinstance(aud, str) else aud
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BackendUnavailable("introspection member 'aud' is not a string or strings")
    return frozenset(names)
