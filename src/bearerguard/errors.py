"""Denials as values, and the few exceptions that mean "cannot decide".

Exceptions::

    BearerGuardError
    ├── BackendUnavailable           a backend failed transiently (timeout, refused,
    │   │                            garbage): the request gets 503, or a stale cache
    │   │                            entry if allowed
    │   └── StoreUnavailable         (stores.base) a store's I/O failed
    ├── ConfigurationError           bad options, raised at construction, never per
    │                                request (also a ValueError)
    └── RequestError                 the request as sent cannot be served; caught where
        │                            it is parsed and answered with a 4xx, never a 500
        ├── MalformedCredentials     (credentials) RFC 6750 ``invalid_request``: 400
        │                            (also a ValueError)
        └── BadRequest               (server.forms) the auth service's RFC 6749 §5.2
                                     error code and status

A refusal is not an exception: it is a `Challenge`, rendered once for both adapters as
an RFC 6750 §3 ``WWW-Authenticate`` header plus a JSON body.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = [
    "BackendUnavailable",
    "BearerGuardError",
    "Challenge",
    "ConfigurationError",
    "RequestError",
    "log_safe",
    "quote_param",
]


class BearerGuardError(Exception):
    """Base class of every exception bearerguard raises on purpose."""


class BackendUnavailable(BearerGuardError):
    """The backend could not answer (unreachable, timed out, answered garbage)."""


class ConfigurationError(BearerGuardError, ValueError):
    """Options that cannot work; raised when the middleware or backend is built."""


class RequestError(BearerGuardError):
    """A request that cannot be served as sent; the code that parses it answers 4xx."""


def _check_quotable(value: str) -> None:
    # RFC 6750 §3: error, error_description and scope values MUST NOT include characters
    # outside %x20-21 / %x23-5B / %x5D-7E; realm is a quoted-string (RFC 7235 §2.1), so
    # we hold it to the same printable-ASCII set and escape quote and backslash.
    for ch in value:
        if not (0x20 <= ord(ch) <= 0x7E):
            raise ConfigurationError(f"not printable ASCII: {value!r}")


# Control characters (C0, DEL, C1), Unicode line and paragraph separators, and the
# backslash that introduces our escapes.
_LOG_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")


def _escape(m: re.Match[str]) -> str:
    return m.group().encode("unicode_escape").decode("ascii")


def log_safe(text: str, limit: int = 200) -> str:
    """`text` from a request, fit for a log line (H5): one line, bounded length.

    Control characters, line separators and backslashes are written as Python escapes
    (``\\n``, ``\\x1b``, ``\\\\``), so no request can start a log line of its own;
    text longer than `limit` is cut and marked with ``…``.
    """
    if len(text) > limit:
        text = text[:limit] + "…"
    return _LOG_UNSAFE.sub(_escape, text)


def quote_param(value: str) -> str:
    """Return `value` as an RFC 7235 quoted-string."""
    _check_quotable(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Challenge:
    """A refusal: HTTP status, RFC 6750 error code, description and the API needed.

    `error` is None only for a request that carried no credentials (RFC 6750 §3.1: the
    challenge then names no error code). `retry_after` is set on 503 answers.
    """

    status: int
    error: str | None = None
    description: str | None = None
    scope: str | None = None
    retry_after: int | None = None

    def to_header(self, realm: str, resource_metadata: str | None = None) -> str:
        """Render the ``WWW-Authenticate`` value for this refusal.

        `resource_metadata` is the RFC 9728 §5.1 metadata URL, when the resource has one.
        """
        parts = [f"Bearer realm={quote_param(realm)}"]
        if self.error is not None:
            parts.append(f"error={quote_param(self.error)}")
            if self.description:
                parts.append(f"error_description={quote_param(self.description)}")
            if self.scope:
                parts.append(f"scope={quote_param(self.scope)}")
        if resource_metadata is not None:
            parts.append(f"resource_metadata={quote_param(resource_metadata)}")
        return ", ".join(parts)

    def to_body(self) -> bytes:
        """Render the JSON body: ``{"error": …, "error_description": …}``."""
        body: dict[str, str] = {
            "error": self.error or "unauthorized",
            "error_description": self.description or "Bearer token required",
        }
        if self.scope:
            body["scope"] = self.scope
        return json.dumps(body, separators=(",", ":")).encode()

    def to_headers(self, realm: str, resource_metadata: str | None = None) -> list[tuple[str, str]]:
        """Return all response headers for this refusal (text, in order)."""
        body_len = len(self.to_body())
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(body_len)),
            ("www-authenticate", self.to_header(realm, resource_metadata)),
            ("cache-control", "no-store"),
        ]
        if self.retry_after is not None:
            headers.append(("retry-after", str(self.retry_after)))
        return headers

    @classmethod
    def from_header(cls, value: str) -> dict[str, str]:
        """Parse a ``WWW-Authenticate: Bearer …`` value into its parameters.

        The inverse of `to_header`, for tests and clients; raises ValueError on input
        that is not a Bearer challenge.
        """
        scheme, _, rest = value.partition(" ")
        if scheme.lower() != "bearer":
            raise ValueError("not a Bearer challenge")
        params: dict[str, str] = {}
        i, n = 0, len(rest)
        while i < n:
            while i < n and rest[i] in " ,":
                i += 1
            if i >= n:
                break
            eq = rest.find("=", i)
            if eq < 0:
                raise ValueError("parameter without value")
            name = rest[i:eq].strip().lower()
            i = eq + 1
            if i < n and rest[i] == '"':
                i += 1
                out = []
                while i < n and rest[i] != '"':
                    if rest[i] == "\\" and i + 1 < n:
                        i += 1
                    out.append(rest[i])
                    i += 1
                if i >= n:
                    raise ValueError("unterminated quoted-string")
                i += 1
                params[name] = "".join(out)
            else:
                end = rest.find(",", i)
                end = n if end < 0 else end
                params[name] = rest[i:end].strip()
                i = end
        return params


MISSING = Challenge(401)
