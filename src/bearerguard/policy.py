"""The decision: token facts plus request facts give an Identity or a Challenge."""

from __future__ import annotations

from .errors import Challenge
from .tokens import Identity, TokenInfo

__all__ = [
    "EXPIRED",
    "INVALID",
    "NO_AUDIENCE",
    "UNAVAILABLE",
    "UNKNOWN_ADDRESS",
    "WRONG_ADDRESS",
    "WRONG_AUDIENCE",
    "audience_ok",
    "decide",
    "insufficient_scope",
]

INVALID = Challenge(401, "invalid_token", "The access token is unknown, revoked or expired")
EXPIRED = Challenge(401, "invalid_token", "The access token expired")
WRONG_ADDRESS = Challenge(401, "invalid_token", "The access token is not valid from this address")
UNKNOWN_ADDRESS = Challenge(401, "invalid_token", "The client address could not be determined")
WRONG_AUDIENCE = Challenge(401, "invalid_token", "The access token is meant for another resource")
NO_AUDIENCE = Challenge(401, "invalid_token", "The access token names no audience")
UNAVAILABLE = Challenge(
    503, "temporarily_unavailable", "The token could not be checked; try again shortly"
)

_SCOPE_CHALLENGES: dict[str, Challenge] = {}


def insufficient_scope(api: str) -> Challenge:
    """RFC 6750 §3.1 ``insufficient_scope`` naming the API the request needs."""
    ch = _SCOPE_CHALLENGES.get(api)
    if ch is None:
        ch = Challenge(403, "insufficient_scope", f"This API key may not use the {api} API", api)
        if len(_SCOPE_CHALLENGES) < 1024:
            _SCOPE_CHALLENGES[api] = ch
    return ch


def audience_ok(
    token_audience: frozenset[str], audience: frozenset[str] | None, require: bool
) -> bool:
    """RFC 8707: whether a token meant for `token_audience` may be used here.

    `audience` is the set of names this resource answers to (None: no check). A token
    naming resources must name one of them; a token naming none passes unless
    `require`.
    """
    if audience is None:
        return True
    if token_audience:
        return not token_audience.isdisjoint(audience)
    return not require


def decide(
    info: TokenInfo | None,
    client_ip: str | None,
    api: str | None,
    now: float,
    *,
    ip_binding: bool = True,
    fingerprint: str = "",
    audience: frozenset[str] | None = None,
    require_audience: bool = False,
) -> Identity | Challenge:
    """Apply the auth service's rules to one request.

    Runs on every request, cache hits included: expiry, the audience, the address the
    token is bound to and the API the route needs are checked here and nowhere else.
    """
    if info is None:
        return INVALID
    if info.expires_at is not None and now >= info.expires_at:
        return EXPIRED
    # RFC 8707 §2: a token meant for another resource must not be accepted here.
    if audience is not None and not audience_ok(info.audience, audience, require_audience):
        return WRONG_AUDIENCE if info.audience else NO_AUDIENCE
    # "Tokens are tied to IP addresses and are only valid if used from the same IP
    # address used to obtain them." (auth service documentation)
    if ip_binding and info.bound_ip is not None and client_ip != info.bound_ip:
        return WRONG_ADDRESS if client_ip is not None else UNKNOWN_ADDRESS
    if api is not None and api not in info.apis:
        return insufficient_scope(api)
    return Identity(info.key_id, info.apis, client_ip, info, fingerprint)
