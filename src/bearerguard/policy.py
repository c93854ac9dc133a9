"""The decision: token facts plus request facts give an Identity or a Challenge."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from .errors import Challenge, ConfigurationError
from .tokens import Identity, TokenInfo

__all__ = [
    "EXPIRED",
    "INVALID",
    "MISSING",
    "NOT_OURS",
    "NO_AUDIENCE",
    "Rules",
    "UNAVAILABLE",
    "UNKNOWN_ADDRESS",
    "WRONG_ADDRESS",
    "WRONG_AUDIENCE",
    "admit",
    "audience_names",
    "audience_ok",
    "decide",
    "insufficient_scope",
    "public_matcher",
]

MISSING = Challenge(401)  # RFC 6750 §3.1: no credentials, so no error code
NOT_OURS = Challenge(401, "invalid_token", "The access token is not a bearerguard token")
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


def admit(
    info: TokenInfo,
    client_ip: str | None,
    api: str | None,
    now: float,
    ip_binding: bool = True,
    audience: frozenset[str] | None = None,
    require_audience: bool = False,
) -> Challenge | None:
    """The rules for one active token used from `client_ip` for `api`: None admits it.

    Runs on every request, cache hits included (R10): expiry, the audience, the address
    the token is bound to and the API the route needs are checked here and nowhere
    else. Both the full flow (`decide`) and the cached path (`Guard.cached_identity`)
    ask this function. Positional parameters: it is on the hot path.
    """
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
    return None


class Rules(NamedTuple):
    """A resource's settings for `admit`, in its parameter order (``admit(…, *rules)``)."""

    ip_binding: bool = True
    audience: frozenset[str] | None = None
    require_audience: bool = False


def decide(
    info: TokenInfo | None,
    client_ip: str | None,
    api: str | None,
    now: float,
    rules: Rules = Rules(),  # noqa: B008  (an immutable tuple)
    fingerprint: str = "",
) -> Identity | Challenge:
    """Apply the auth service's rules to one request: an `Identity`, or the refusal.

    `info` None (the backend does not know the token) is refused; otherwise `admit`.
    """
    if info is None:
        return INVALID
    refusal = admit(info, client_ip, api, now, *rules)
    if refusal is not None:
        return refusal
    return Identity(info.key_id, info.apis, client_ip, info, fingerprint)


def public_matcher(paths: Iterable[str]) -> Callable[[str], bool]:
    """R1: a test of whether a path is public; an entry ending in ``*`` is a prefix."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for p in paths:
        if not p.startswith("/"):
            raise ConfigurationError(f"public path must start with '/': {p!r}")
        if p.endswith("*"):
            prefixes.append(p[:-1])
        else:
            exact.add(p)
    prefix_tuple = tuple(prefixes)
    if not prefix_tuple:
        return exact.__contains__
    return lambda path: path in exact or path.startswith(prefix_tuple)


def audience_names(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """The `audience` option as a set of names (None: no audience check)."""
    if value is None:
        return None
    names = frozenset([value] if isinstance(value, str) else value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError("audience must be a non-empty string or strings")
    return names
