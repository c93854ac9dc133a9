"""The HTTP plumbing under `IntrospectionBackend`, shared by its sync and async faces.

Which failures may be retried (connect failures, one stale keep-alive) and the backoff
before a retry; the trace hook that tells whether a request opened a new connection; a
bounded read of the answer; the proxy the environment names. No state, no waiting.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Literal, NamedTuple

import httpx

from ..errors import BackendUnavailable

_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
# What a keep-alive connection closed by the server under us looks like: the request
# goes out on a dead socket, and reading (or writing) it fails.
_STALE_ERRORS = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def backoff_delay(attempt: int, base: float, cap: float, rnd: float) -> float:
    """Full-jitter backoff before retry `attempt` (1, 2, ...): rnd * min(cap, base * 2^(n-1))."""
    return rnd * min(cap, base * 2.0 ** (attempt - 1))


def classify_failure(
    exc: Exception, *, new_connection: bool
) -> Literal["connect", "stale", "fail"]:
    """Which failures may be retried: connect failures, and one stale keep-alive."""
    if isinstance(exc, _CONNECT_ERRORS):
        return "connect"
    if isinstance(exc, _STALE_ERRORS) and not new_connection:
        return "stale"
    return "fail"


def retry_delay(
    kind: str, attempt: int, stale_retried: bool, retries: int, rnd: float, time_left: float
) -> float:
    """Seconds to wait before retrying a failure of `kind`, or -1 to give up.

    A stale keep-alive is retried once, at once; connect failures up to `retries` times
    with full-jitter backoff (50 ms doubling, at most 500 ms) that must end in `time_left`.
    """
    if kind == "stale":
        return -1.0 if stale_retried else 0.0
    if kind != "connect" or attempt > retries:
        return -1.0
    delay = backoff_delay(attempt, 0.05, 0.5, rnd)
    return -1.0 if delay >= time_left else delay


class ConnTrace:
    """httpcore trace hook: did this request open a new connection?"""

    __slots__ = ("new_connection",)

    def __init__(self) -> None:
        self.new_connection = False

    def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        if name.startswith("connection.connect_tcp"):
            self.new_connection = True

    async def acall(self, name: str, info: Mapping[str, Any]) -> None:
        self(name, info)


class TooLarge(Exception):
    """The answer is longer than the backend's `max_response_bytes`."""


class Answer(NamedTuple):
    """An attempt that got an answer (any status)."""

    status: int
    content_type: str
    body: bytes


class Failed(NamedTuple):
    """An attempt that failed, and whether it had opened a new connection."""

    exc: Exception
    new_connection: bool


Reply = Answer | Failed


def read_limited(chunks: Iterator[bytes], limit: int) -> bytes:
    """The body, or TooLarge past `limit` bytes (read no further)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise TooLarge
    return bytes(buf)


async def aread_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Async `read_limited`."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise TooLarge
    return bytes(buf)


def env_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for `url` (``HTTPS_PROXY``, ``NO_PROXY``, ...)."""
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(url.host):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


def unavailable(exc: Exception) -> BackendUnavailable:
    """A failed request as BackendUnavailable (httpx messages name the host, never a body)."""
    if isinstance(exc, TooLarge):
        return BackendUnavailable("introspection answer too large")
    if isinstance(exc, httpx.TimeoutException):
        return BackendUnavailable(f"introspection timed out ({type(exc).__name__})")
    return BackendUnavailable(f"introspection failed: {type(exc).__name__}: {exc}")
