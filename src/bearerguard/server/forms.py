"""Strict reading of what a client sends to the auth service: bodies, forms, Basic auth.

`read_body` and `read_form` are the only I/O: they take the body off the request with
a size limit, a time limit and a limit on the headers. The rest are pure functions
that limit the number and size of fields. Every refusal is a `BadRequest` carrying the RFC
6749 §5.2 error code and a short description, never the offending value (it may be a
secret).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes, urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from ..errors import RequestError

__all__ = [
    "MAX_AUTHORIZATION_LENGTH",
    "MAX_FIELDS",
    "MAX_HEADER_BYTES",
    "BadRequest",
    "ClientCredentials",
    "check_form_content_type",
    "client_credentials",
    "parse_basic",
    "parse_form",
    "parse_resources",
    "parse_scope",
    "read_body",
    "read_form",
    "too_long",
]

MAX_FIELDS = 16
"""At most this many ``name=value`` pairs in a form."""

MAX_AUTHORIZATION_LENGTH = 1024
"""Longest ``Authorization`` header value accepted (key ids and secrets are short)."""

MAX_HEADER_BYTES = 16384
"""Largest total of request header names and values on the POST endpoints (431)."""

MAX_CLIENT_ID_LENGTH = 128
MAX_SECRET_LENGTH = 256

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 7617 §2 / RFC 7235 §2.1: credentials = auth-scheme 1*SP token68
_BASIC = re.compile(r"[Bb][Aa][Ss][Ii][Cc] +([A-Za-z0-9+/]+=*) *")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadRequest(RequestError):
    """A request the service refuses: RFC 6749 §5.2 error code and description.

    A plain exception (not a frozen dataclass): frameworks set attributes such as
    ``__traceback__`` on exceptions they pass through.
    """

    def __init__(
        self, error: str, description: str, status: int = 400, retry_after: int | None = None
    ) -> None:
        super().__init__(error, description)
        self.error = error
        self.description = description
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """A key id and secret as presented by a client (the secret is never printed)."""

    key_id: str
    secret: str = field(repr=False)


def check_form_content_type(value: str | None) -> None:
    """Accept only ``application/x-www-form-urlencoded`` (charset, if any, UTF-8).

    RFC 6749 §4.4.2, RFC 7662 §2.1, RFC 7009 §2.1: parameters are sent in the
    form-encoded entity-body.
    """
    if value == "application/x-www-form-urlencoded":
        return  # as nearly every client sends it
    wrong = BadRequest("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
    if value is None:
        raise wrong
    media, *params = (p.strip() for p in value.split(";"))
    if media.lower() != "application/x-www-form-urlencoded":
        raise wrong
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise BadRequest("invalid_request", "Only the UTF-8 charset is supported")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all.

    Headers beyond `MAX_HEADER_BYTES` get 431. A body not received within `timeout`
    seconds gets 408: a client sending a byte at a time must not hold a request open
    for ever (uvicorn sets no such deadline).
    """
    _, lengths = _framing(request.scope["headers"])
    _check_length(lengths, limit)
    return await _bounded_body(request.receive, limit, timeout)


def _framing(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bytes | None, list[bytes]]:
    """One pass over the raw headers: 431 beyond `MAX_HEADER_BYTES`; else the first
    ``Content-Type`` (None if there is none) and every ``Content-Length``."""
    size = 0
    content_type: bytes | None = None
    lengths: list[bytes] = []
    for name, value in headers:  # ASGI header names are lower case
        size += len(name) + len(value)
        if name == b"content-length":
            lengths.append(value)
        elif name == b"content-type" and content_type is None:
            content_type = value
    if size > MAX_HEADER_BYTES:
        raise BadRequest("invalid_request", "Request headers too large", 431)
    return content_type, lengths


def _check_length(lengths: list[bytes], limit: int) -> None:
    if len(lengths) > 1:
        raise BadRequest("invalid_request", "More than one Content-Length header")
    if lengths:
        if not lengths[0].isdigit():
            raise BadRequest("invalid_request", "Bad Content-Length")
        if int(lengths[0]) > limit:
            raise BadRequest("invalid_request", "Request body too large", 413)


async def _bounded_body(receive: Receive, limit: int, timeout: float) -> bytes:
    try:
        if _timeout is not None:
            # A deadline on this task: no second task per request, as wait_for makes
            # on Python 3.10 and 3.11 (the auth service's endpoints all read a body).
            async with _timeout(timeout):
                return await _collect_body(receive, limit)
        return await asyncio.wait_for(_collect_body(receive, limit), timeout)
    except asyncio.TimeoutError:
        raise BadRequest("invalid_request", "Request body not received in time", 408) from None


_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


async def _collect_body(receive: Receive, limit: int) -> bytes:
    # The ASGI messages themselves, as Starlette's Request.stream reads them, without
    # an async generator around each.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnect()
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest("invalid_request", "Request body too large", 413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_form(
    request: Request, limit: int, timeout: float, *, repeatable: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The form of a POST: `read_body`'s limits, `check_form_content_type`, `parse_form`."""
    content_type, lengths = _framing(request.scope["headers"])
    check_form_content_type(None if content_type is None else content_type.decode("latin-1"))
    _check_length(lengths, limit)
    body = await _bounded_body(request.receive, limit, timeout)
    return parse_form(body, repeatable=repeatable)


def _decode_component(raw: bytes) -> str:
    # application/x-www-form-urlencoded: "+" is a space, then percent-decoding, then UTF-8.
    # Callers pass ASCII only: without "%" or "+" there is nothing to decode.
    if b"%" not in raw and b"+" not in raw:
        return raw.decode("ascii")
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("invalid_request", "Form data is not valid UTF-8") from None


def parse_form(
    body: bytes, *, max_fields: int = MAX_FIELDS, repeatable: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Parse an ``application/x-www-form-urlencoded`` body strictly.

    RFC 6749 §3.1: parameters sent without a value are treated as omitted, and
    "request and response parameters MUST NOT be included more than once" — a repeated
    name is `invalid_request`, except names in `repeatable` (RFC 8707 ``resource``),
    whose values are joined with a newline (never part of a value: control characters
    are refused). Raises BadRequest for too many fields, bytes outside
    ASCII, invalid UTF-8 after percent-decoding, or control characters.
    """
    if not body.strip():
        return {}
    if not body.isascii():
        raise BadRequest("invalid_request", "Form data must be ASCII (percent-encode the rest)")
    pairs = [p for p in body.split(b"&") if p]
    if len(pairs) > max_fields:
        raise BadRequest("invalid_request", "Too many form parameters")
    form: dict[str, str] = {}
    seen: set[str] = set()
    for pair in pairs:
        raw_name, _, raw_value = pair.partition(b"=")
        name = _decode_component(raw_name)
        value = _decode_component(raw_value)
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise BadRequest("invalid_request", "Form data contains control characters")
        if name in seen and name not in repeatable:
            raise BadRequest("invalid_request", f"Parameter {_safe(name)} given more than once")
        seen.add(name)
        if value:
            form[name] = form[name] + "\n" + value if name in form else value
    return form


def _safe(name: str) -> str:
    # Parameter names are echoed in descriptions; keep them short and printable ASCII
    # (RFC 6749 §5.2 limits error_description to %x20-21 / %x23-5B / %x5D-7E).
    cleaned = "".join(c for c in name[:32] if 0x20 <= ord(c) <= 0x7E and c not in '"\\')
    return repr(cleaned)


def _percent_decode(text: str) -> str:
    # RFC 6749 §2.3.1: client id and secret are encoded with the form-urlencoded
    # algorithm before they are used as the Basic user-id and password.
    return _decode_component(text.encode("ascii", "strict"))


def parse_basic(values: Sequence[str]) -> ClientCredentials | None:
    """Return the credentials of ``Authorization: Basic …``, None when there are none.

    `values` holds every ``Authorization`` header. Another scheme counts as none.
    Raises BadRequest for two headers, an over-long or malformed Basic header, bad
    base64, or an empty key id.
    """
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest("invalid_request", "More than one Authorization header")
    value = values[0]
    if len(value) > MAX_AUTHORIZATION_LENGTH:
        raise BadRequest("invalid_request", "Authorization header too long")
    scheme = value.strip().split(" ", 1)[0].lower()
    if scheme != "basic":
        return None
    m = _BASIC.fullmatch(value.strip())
    if m is None:
        raise BadRequest("invalid_request", "Malformed Basic credentials")
    try:
        decoded = base64.b64decode(m.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("invalid_request", "Malformed Basic credentials") from None
    if not decoded.isascii() or b":" not in decoded:
        # Percent-encoded credentials (RFC 6749 §2.3.1) are ASCII.
        raise BadRequest("invalid_request", "Malformed Basic credentials")
    user, _, password = decoded.decode("ascii").partition(":")
    return _checked(_percent_decode(user), _percent_decode(password))


def _checked(key_id: str, secret: str) -> ClientCredentials:
    if not key_id:
        raise BadRequest("invalid_request", "Empty client id")
    return ClientCredentials(key_id, secret)


def client_credentials(
    authorization: Sequence[str], form: Mapping[str, str]
) -> ClientCredentials | None:
    """The client's credentials from Basic auth or ``client_id``/``client_secret``.

    RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
    request" — both at once is `invalid_request`. Returns None for no credentials.
    """
    basic = parse_basic(authorization)
    in_form = "client_id" in form or "client_secret" in form
    if basic is not None and in_form:
        raise BadRequest("invalid_request", "More than one client authentication method")
    if basic is not None:
        return basic
    if not in_form:
        return None
    if "client_id" not in form:
        raise BadRequest("invalid_request", "client_secret without client_id")
    return _checked(form["client_id"], form.get("client_secret", ""))


def parse_scope(value: str | None) -> frozenset[str] | None:
    """The API names of a ``scope`` parameter, None when it was not given.

    RFC 6749 §3.3: a space-delimited list of scope-tokens. Anything else is
    `invalid_scope` ("invalid, unknown, malformed").
    """
    if value is None:
        return None
    names = value.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(n) for n in names):
        raise BadRequest("invalid_scope", "Malformed scope")
    return frozenset(names)


MAX_RESOURCES = 8
MAX_RESOURCE_LENGTH = 512


def parse_resources(value: str | None) -> tuple[str, ...]:
    """The RFC 8707 ``resource`` values of a form (see `parse_form`), sorted; () if none.

    RFC 8707 §2: each "MUST be an absolute URI" and "MUST NOT include a fragment
    component"; anything else is ``invalid_target``. At most `MAX_RESOURCES` of at
    most `MAX_RESOURCE_LENGTH` characters each.
    """
    if value is None:
        return ()
    names = value.split("\n")
    bad = BadRequest("invalid_target", "The resource must be an absolute URI without a fragment")
    if len(names) > MAX_RESOURCES:
        raise BadRequest("invalid_target", "Too many resource parameters")
    for name in names:
        if len(name) > MAX_RESOURCE_LENGTH or not name.isprintable() or " " in name:
            raise bad
        try:
            parts = urlsplit(name)
        except ValueError:
            raise bad from None
        if not parts.scheme or not (parts.netloc or parts.path) or "#" in name:
            raise bad
    return tuple(sorted(set(names)))


def too_long(creds: ClientCredentials) -> bool:
    """Whether credentials are longer than any real key id or secret could be."""
    return len(creds.key_id) > MAX_CLIENT_ID_LENGTH or len(creds.secret) > MAX_SECRET_LENGTH
