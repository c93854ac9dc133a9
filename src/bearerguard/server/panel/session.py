"""Who is signed in: the panel's cookies, server-side sessions, CSRF tokens and forms.

Sessions live server-side in the store (so they work across replicas), under the
SHA-256 digest of a 256-bit session id; the cookie holds only that id and is
``HttpOnly``, ``SameSite=Strict``, ``Path=/panel``, and ``Secure`` when asked. `start`
always makes a new session (fixation is impossible). Every form POST carries a CSRF
token (the session's, or before sign-in a double-submit cookie): `checked` raises
`Forbidden` when it is missing or wrong.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from ...stores.accounts import AccountRecord, SessionRecord
from ...tokens import token_digest
from ..forms import BadRequest

if TYPE_CHECKING:
    from ..store import ServiceStore

__all__ = [
    "SESSION_COOKIE",
    "SESSION_LIFETIME",
    "SIGNIN_COOKIE",
    "Forbidden",
    "Form",
    "Sessions",
    "SignedOut",
    "form_field",
    "parse_form",
    "same",
]

SESSION_COOKIE = "bg_session"
SIGNIN_COOKIE = "bg_signin"
SESSION_LIFETIME = 8 * 3600.0
"""Seconds a panel session lasts after sign-in."""

_MAX_FORM_FIELDS = 64
_MAX_SESSION_ID = 128

Form = list[tuple[str, str]]


class Forbidden(Exception):
    """A POST without a valid CSRF token (403, nothing changed)."""


class SignedOut(Exception):
    """No valid session: back to the sign-in page."""


def parse_form(body: bytes) -> Form:
    """A urlencoded form body as (name, value) pairs; BadRequest when it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("invalid_request", "The form is not UTF-8") from None
    try:
        return parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=_MAX_FORM_FIELDS
        )
    except ValueError:
        raise BadRequest("invalid_request", "Too many form fields") from None


def form_field(form: Form, name: str) -> str:
    """The one value of field `name` ("" when absent); BadRequest when it repeats."""
    values = [v for k, v in form if k == name]
    if len(values) > 1:
        raise BadRequest("invalid_request", f"More than one {name} field")
    return values[0] if values else ""


def same(a: str, b: str) -> bool:
    """Whether two non-empty tokens are equal, in constant time."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


class Sessions:
    """The panel's sessions in `store`, and the cookies that name them."""

    def __init__(
        self,
        store: ServiceStore,
        read_body: Callable[[Request], Awaitable[bytes]],
        *,
        secure_cookies: bool,
    ) -> None:
        self.store = store
        self.read_body = read_body
        self.secure = secure_cookies

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/panel",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name, path="/panel", secure=self.secure, httponly=True, samesite="strict"
        )

    async def current(self, request: Request) -> tuple[SessionRecord, AccountRecord]:
        """The request's session and its account; SignedOut when there is none."""
        sid = request.cookies.get(SESSION_COOKIE, "")
        if not sid or len(sid) > _MAX_SESSION_ID:
            raise SignedOut
        session = await self.store.call_sync("get_session", token_digest(sid), time.time())
        if session is None:
            raise SignedOut
        account = await self.store.call_sync("get_account", session.account)
        if account is None or account.disabled:
            await self.store.call_sync("delete_session", session.digest)
            raise SignedOut
        return session, account

    async def form(self, request: Request) -> Form:
        return parse_form(await self.read_body(request))

    async def checked(self, request: Request) -> tuple[SessionRecord, AccountRecord, Form]:
        """Session, account and form of a POST whose CSRF token is right (else 403)."""
        session, account = await self.current(request)
        form = await self.form(request)
        if not same(form_field(form, "csrf"), session.csrf):
            raise Forbidden
        return session, account, form

    async def signin_form(self, request: Request) -> Form:
        """The form of a sign-in POST whose double-submit CSRF cookie matches (else 403)."""
        form = await self.form(request)
        if not same(form_field(form, "csrf"), request.cookies.get(SIGNIN_COOKIE, "")):
            raise Forbidden
        return form

    async def new_csrf(self, session: SessionRecord) -> SessionRecord:
        fresh = replace(session, csrf=secrets.token_urlsafe(32))
        await self.store.call_sync("put_session", fresh)
        return fresh

    async def start(self, request: Request, account: AccountRecord, response: Response) -> None:
        """A new session for `account`, set on `response`; any this browser had ends."""
        old = request.cookies.get(SESSION_COOKIE, "")
        if old and len(old) <= _MAX_SESSION_ID:
            await self.store.call_sync("delete_session", token_digest(old))
        sid = secrets.token_urlsafe(32)
        now = time.time()
        await self.store.call_sync(
            "put_session",
            SessionRecord(
                digest=token_digest(sid),
                account=account.name,
                csrf=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            ),
        )
        self.set_cookie(response, SESSION_COOKIE, sid, int(SESSION_LIFETIME))
        self.clear_cookie(response, SIGNIN_COOKIE)

    async def end(self, session: SessionRecord, response: Response) -> None:
        await self.store.call_sync("delete_session", session.digest)
        self.clear_cookie(response, SESSION_COOKIE)
