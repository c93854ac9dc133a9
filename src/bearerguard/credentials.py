"""Pull the bearer token out of a request (RFC 6750 §2) and check its syntax."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote_plus

from .errors import RequestError

__all__ = [
    "BEARER_PREFIXES",
    "DEFAULT_MAX_TOKEN_LENGTH",
    "MalformedCredentials",
    "extract_token",
    "query_tokens",
]

DEFAULT_MAX_TOKEN_LENGTH = 4096

# RFC 6750 §2.1:  b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# credentials = "Bearer" 1*SP b64token; the scheme is case-insensitive (RFC 7235 §2.1).
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(.*)", re.DOTALL)
# The byte-level common case, for the cached path: the spellings clients send, one
# space, then the token (``value[7:]``). A value that starts otherwise goes to
# `extract_token`. What follows is not checked there: it only serves as a cache key,
# and a key matches only a token that `extract_token` accepted before.
BEARER_PREFIXES = (b"Bearer ", b"bearer ", b"BEARER ")


class MalformedCredentials(RequestError, ValueError):
    """The request's credentials are present but unusable: RFC 6750 ``invalid_request``."""


def query_tokens(query: str) -> tuple[str, ...]:
    """Every ``access_token`` value of a query string (RFC 6750 §2.3), decoded.

    Never raises, whatever the query holds (H6: ``parse_qsl(max_num_fields=…)`` raised
    on a long query and the request got a 500): fields are split and only those named
    ``access_token`` are decoded. Two or more values are refused later by
    `extract_token`, with 400.
    """
    if "access_token" not in query:
        return ()
    found: list[str] = []
    for field in query.split("&"):
        name, _, value = field.partition("=")
        if name == "access_token" or unquote_plus(name) == "access_token":
            found.append(unquote_plus(value))
            if len(found) > 1:
                break  # two is already "more than one"
    return tuple(found)


def extract_token(
    authorization: Sequence[str],
    query_tokens: Sequence[str] = (),
    *,
    max_length: int = DEFAULT_MAX_TOKEN_LENGTH,
) -> str | None:
    """Return the bearer token of a request, or None when it carries none.

    `authorization` holds every ``Authorization`` header value, `query_tokens` every
    ``access_token`` query value (pass none unless the query method is enabled).
    Another scheme (Basic, Digest…) counts as no bearer credentials.

    Raises MalformedCredentials for two headers, two methods at once (RFC 6750 §2:
    "Clients MUST NOT use more than one method"), a malformed header, a token that is
    not b64token syntax or longer than `max_length`.
    """
    if len(authorization) + len(query_tokens) > 1:
        if len(authorization) > 1:
            raise MalformedCredentials("More than one Authorization header")
        if len(query_tokens) > 1:
            raise MalformedCredentials("More than one access_token parameter")
        raise MalformedCredentials("More than one method of sending the token")
    if authorization:
        value = authorization[0]
        m = _BEARER.match(value)
        if m is None:
            scheme = value.split(" ", 1)[0].strip().lower()
            if scheme == "bearer":
                raise MalformedCredentials("Malformed Bearer credentials")
            return None
        token = m.group(1).strip(" \t")
    elif query_tokens:
        token = query_tokens[0]
    else:
        return None
    if len(token) > max_length:
        raise MalformedCredentials("Token too long")
    if not token:
        raise MalformedCredentials("Empty token")
    if _B64TOKEN.fullmatch(token) is None:
        raise MalformedCredentials("Token is not b64token syntax")
    return token
