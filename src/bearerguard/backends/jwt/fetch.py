"""Fetching the issuer's keys, sans I/O: where the metadata is, and the steps of a fetch.

`discover` finds the JWKS URL through the issuer's RFC 8414 or OpenID Connect metadata;
`fetch_jwks` fetches the JWKS and how long it may be kept. Both are generators that
yield a `Get` and are sent back its `Answer`; the backend's sync and async faces drive
them with their own HTTP client.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ...errors import BackendUnavailable

__all__ = [
    "Answer",
    "Get",
    "answer_of",
    "discover",
    "fetch_jwks",
    "is_absolute_url",
    "max_age",
    "metadata_urls",
]


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where the issuer's metadata may be, in the order tried.

    RFC 8414 §3.1 inserts ``/.well-known/oauth-authorization-server`` between host and
    path; OpenID Connect Discovery 1.0 §4 appends ``/.well-known/openid-configuration``.
    """
    url = httpx.URL(issuer)
    path = url.path.rstrip("/")
    origin = str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/")
    return (
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    )


def max_age(cache_control: str, default: float, low: float, high: float) -> float:
    """Seconds from a ``Cache-Control`` header's ``max-age``, clamped to [low, high]."""
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return min(high, max(low, float(value.strip())))
    return default


@dataclass(frozen=True, slots=True)
class Get:
    """A GET the fetch flow needs answered."""

    url: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to a `Get`: what the fetch flow reads of an HTTP response."""

    status: int
    content_type: str
    cache_control: str
    body: bytes = field(repr=False)


def _json(answer: Answer, what: str) -> Any:
    if answer.status != 200:
        raise BackendUnavailable(f"{what} answered HTTP {answer.status}")
    try:
        return json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BackendUnavailable(f"{what} is not JSON") from exc


def is_absolute_url(url: object) -> bool:
    """Whether `url` is an absolute http(s) URL with a host."""
    if not isinstance(url, str):
        return False
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def discover(issuer: str) -> Generator[Get, Answer, str]:
    """Find the JWKS URL through the issuer's metadata (RFC 8414, then OIDC Discovery)."""
    for candidate in metadata_urls(issuer):
        answer = yield Get(candidate)
        if answer.status == 404:
            continue
        doc = _json(answer, "issuer metadata")
        # RFC 8414 §3.3: the issuer in the metadata MUST be identical.
        if not isinstance(doc, dict) or doc.get("issuer") != issuer:
            raise BackendUnavailable("issuer metadata names another issuer")
        if not is_absolute_url(doc.get("jwks_uri")):
            raise BackendUnavailable("issuer metadata has no jwks_uri")
        url: str = doc["jwks_uri"]
        return url
    raise BackendUnavailable("the issuer publishes no metadata")


def fetch_jwks(url: str, default_max_age: float) -> Generator[Get, Answer, tuple[Any, float]]:
    """Fetch the JWKS at `url`: the parsed JSON and how many seconds it may be kept."""
    answer = yield Get(url)
    jwks = _json(answer, "JWKS")
    return jwks, max_age(answer.cache_control, default_max_age, 60.0, 86400.0)


def answer_of(r: httpx.Response, body: bytes) -> Answer:
    """The `Answer` of a response whose (bounded) body has been read."""
    return Answer(
        r.status_code,
        r.headers.get("content-type", ""),
        r.headers.get("cache-control", ""),
        body,
    )
