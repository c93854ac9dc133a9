"""The customer control panel under ``/panel/``: server-rendered, no JavaScript needed.

Customers (accounts made with ``bearerguard accounts create``) sign in with their
account name and password, and manage their API keys: create one (named, with any of
the APIs their account may grant), see the key id and the secret once, with the auth
service documentation's curl + jq lines filled in; rotate a key's secret (the old one
keeps working for the service's rotation grace period); revoke a key after a
confirmation step.

Security (docs/design.md, "Accounts, keys and the control panel"):

* sessions live server-side in the store (so they work across replicas), under the
  SHA-256 digest of a 256-bit session id; the cookie holds only that id and is
  ``HttpOnly``, ``SameSite=Strict``, ``Path=/panel``, and ``Secure`` when the service is
  served over https. Signing in always starts a new session (fixation is impossible);
  signing out or disabling the account ends it;
* every form POST carries a CSRF token (the session's, or before sign-in a double-submit
  cookie); a missing or wrong one gets 403 and changes nothing. The token changes after
  each create or rotate, so resending that form (a reload) cannot show or mint a
  secret again;
* every answer has a Content-Security-Policy without inline script and with
  ``frame-ancestors 'none'``, ``nosniff``, ``no-referrer`` and ``no-store``;
* sign-in is throttled like ``/login`` (per account name and per source address, shared
  through Redis when the store is Redis, `default_throttle`): the right password is
  always accepted, wrong guesses beyond the limit get 429;
* templates are autoescaped (Jinja2), so key names and every other text are escaped;
* a new secret is rendered into the one answer that creates it and kept nowhere else:
  not in a cookie, not in the session, not in a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from ..._types import ASGIApp
from ...errors import BackendUnavailable
from ...stores.accounts import (
    AccountRecord,
    SessionRecord,
    check_key_name,
    verify_password,
)
from ...tokens import token_digest
from ..forms import BadRequest
from ..throttle import default_throttle

if TYPE_CHECKING:
    from ..app import _Service

__all__ = ["SESSION_COOKIE", "SESSION_LIFETIME", "panel_app"]

logger = logging.getLogger("bearerguard.server.panel")

HERE = Path(__file__).parent
SESSION_COOKIE = "bg_session"
SIGNIN_COOKIE = "bg_signin"
SESSION_LIFETIME = 8 * 3600.0
"""Seconds a panel session lasts after sign-in."""

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_MAX_FORM_FIELDS = 64
# Password checks (argon2id: tens of MiB each) run a few at a time.
_PASSWORD_CHECKS = 4


class _Forbidden(Exception):
    """A POST without a valid CSRF token (403, nothing changed)."""


class _SignedOut(Exception):
    """No valid session: back to the sign-in page."""


def _parse_form(body: bytes) -> list[tuple[str, str]]:
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


def _field(form: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in form if k == name]
    if len(values) > 1:
        raise BadRequest("invalid_request", f"More than one {name} field")
    return values[0] if values else ""


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def curl_lines(key_id: str, secret: str, service_url: str, api_url: str | None) -> str:
    """The documentation's curl + jq lines, filled in, ready to paste into a shell."""
    target = shlex.quote(api_url) if api_url else '"$API_URL"'
    return "\n".join(
        [
            f"KEY_ID={shlex.quote(key_id)}",
            f"SECRET={shlex.quote(secret)}",
            "TOKEN=$(curl -s -d grant_type=client_credentials "
            f'-u "$KEY_ID:$SECRET" {shlex.quote(service_url + "/login")} | jq -r .access_token)',
            f'curl -s -H "Authorization: Bearer $TOKEN" {target}',
        ]
    )


def _when(value: float | None) -> str:
    if value is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value))


class _Panel:
    def __init__(self, service: _Service, *, secure_cookies: bool, api_url: str | None) -> None:
        self.service = service
        self.store = service.store
        self.secure = secure_cookies
        self.api_url = api_url
        self.throttle = default_throttle(service.store.store, table="panel")
        self._checks = asyncio.Semaphore(_PASSWORD_CHECKS)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            auto_reload=False,
        )
        self.env.filters["when"] = _when

    # -- rendering --------------------------------------------------------------------
    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def _redirect(self, path: str) -> Response:
        return RedirectResponse("/panel" + path, status_code=303, headers=_HEADERS)

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/panel",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def _clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name, path="/panel", secure=self.secure, httponly=True, samesite="strict"
        )

    def service_url(self, request: Request) -> str:
        if self.service.issuer:
            return self.service.issuer
        return f"{request.url.scheme}://{request.url.netloc}"

    # -- sessions ---------------------------------------------------------------------
    async def _session(self, request: Request) -> tuple[SessionRecord, AccountRecord]:
        sid = request.cookies.get(SESSION_COOKIE, "")
        if not sid or len(sid) > 128:
            raise _SignedOut
        session = await self.store.call_sync("get_session", token_digest(sid), time.time())
        if session is None:
            raise _SignedOut
        account = await self.store.call_sync("get_account", session.account)
        if account is None or account.disabled:
            await self.store.call_sync("delete_session", session.digest)
            raise _SignedOut
        return session, account

    async def _form(self, request: Request) -> list[tuple[str, str]]:
        return _parse_form(await self.service.read_body(request))

    async def _checked(
        self, request: Request
    ) -> tuple[SessionRecord, AccountRecord, list[tuple[str, str]]]:
        """Session, account and form of a POST whose CSRF token is right (else 403)."""
        session, account = await self._session(request)
        form = await self._form(request)
        if not _same(_field(form, "csrf"), session.csrf):
            raise _Forbidden
        return session, account, form

    async def _new_csrf(self, session: SessionRecord) -> SessionRecord:
        fresh = replace(session, csrf=secrets.token_urlsafe(32))
        await self.store.call_sync("put_session", fresh)
        return fresh

    # -- pages ------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        try:
            await self._session(request)
        except _SignedOut:
            return self._redirect("/signin")
        return self._redirect("/keys")

    async def signin_page(
        self, request: Request, *, error: str = "", status: int = 200
    ) -> Response:
        token = secrets.token_urlsafe(32)
        response = self.render(
            "signin.html",
            status=status,
            csrf=token,
            error=error,
            account_name=request.query_params.get("account", "")[:64],
        )
        self._set_cookie(response, SIGNIN_COOKIE, token, 3600)
        return response

    async def signin(self, request: Request) -> Response:
        form = await self._form(request)
        if not _same(_field(form, "csrf"), request.cookies.get(SIGNIN_COOKIE, "")):
            raise _Forbidden
        name = _field(form, "account").strip()[:64]
        password = _field(form, "password")[:1024]
        account = await self.store.call_sync("get_account", name) if name else None
        async with self._checks:
            # H3: the right password is always accepted, even while the name is throttled.
            ok = await asyncio.to_thread(verify_password, account, password)
        source = self.service.client_ip(request)
        if not ok:
            wait = await self.throttle.awrong_guess(name, source, known=account is not None)
            if wait is not None:
                self.service.metrics.throttled += 1
                response = await self.signin_page(
                    request, error="Too many failed attempts; try again later.", status=429
                )
                response.headers["Retry-After"] = str(wait)
                return response
            logger.info("failed panel sign-in from %s", source or "?")
            return await self.signin_page(
                request, error="Wrong account name or password.", status=401
            )
        assert account is not None
        # A new session id at every sign-in; any session this browser had ends.
        old = request.cookies.get(SESSION_COOKIE, "")
        if old and len(old) <= 128:
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
        logger.info("panel sign-in of account %s", account.name)
        response = self._redirect("/keys")
        self._set_cookie(response, SESSION_COOKIE, sid, int(SESSION_LIFETIME))
        self._clear_cookie(response, SIGNIN_COOKIE)
        return response

    async def signout(self, request: Request) -> Response:
        session, _account, _form = await self._checked(request)
        await self.store.call_sync("delete_session", session.digest)
        response = self._redirect("/signin")
        self._clear_cookie(response, SESSION_COOKIE)
        return response

    async def _keys_page(
        self,
        session: SessionRecord,
        account: AccountRecord,
        *,
        error: str = "",
        status: int = 200,
        notice: str = "",
    ) -> Response:
        keys = await self.store.call_sync("list_keys", account.name)
        now = time.time()
        return self.render(
            "keys.html",
            status=status,
            account=account,
            csrf=session.csrf,
            apis=sorted(account.apis),
            keys=[(k, k.status(now)) for k in reversed(keys)],
            error=error,
            notice=notice,
        )

    async def keys(self, request: Request) -> Response:
        session, account = await self._session(request)
        notice = "The key was revoked." if request.query_params.get("revoked") else ""
        return await self._keys_page(session, account, notice=notice)

    async def create(self, request: Request) -> Response:
        session, account, form = await self._checked(request)
        apis = {v for k, v in form if k == "api"}
        try:
            name = check_key_name(_field(form, "name"))
        except ValueError as exc:
            return await self._keys_page(session, account, error=str(exc), status=400)
        if not apis <= account.apis:
            # A tampered form: refuse it whole, create nothing.
            return await self._keys_page(
                session, account, error="Your account may not grant that API.", status=400
            )
        if not apis:
            return await self._keys_page(
                session, account, error="Choose at least one API.", status=400
            )
        record, secret = await self.store.call_sync(
            "create_key", sorted(apis), account=account.name, name=name
        )
        session = await self._new_csrf(session)
        logger.info("panel: account %s created key %s", account.name, record.key_id)
        return self._secret_page(request, session, account, record, secret, created=True)

    def _secret_page(
        self,
        request: Request,
        session: SessionRecord,
        account: AccountRecord,
        record: Any,
        secret: str,
        *,
        created: bool,
    ) -> Response:
        return self.render(
            "secret.html",
            account=account,
            csrf=session.csrf,
            key=record,
            secret=secret,
            created=created,
            grace=self.service.rotation_grace,
            lines=curl_lines(record.key_id, secret, self.service_url(request), self.api_url),
        )

    async def _own_key(self, account: AccountRecord, key_id: str) -> Any:
        key = await self.store.get_key(key_id) if len(key_id) <= 128 else None
        if key is None or key.account != account.name:
            # Someone else's key reads exactly like a missing one.
            raise BadRequest("not_found", "No such key", 404)
        return key

    async def rotate(self, request: Request) -> Response:
        session, account, _form = await self._checked(request)
        key = await self._own_key(account, request.path_params["key_id"])
        done = await self.store.call_sync(
            "rotate_key", key.key_id, grace=self.service.rotation_grace, now=time.time()
        )
        self.service.keys.drop(key.key_id)  # this worker at once; others within the TTL
        if done is None:
            raise BadRequest("not_found", "No such key", 404)
        session = await self._new_csrf(session)
        logger.info("panel: account %s rotated key %s", account.name, key.key_id)
        return self._secret_page(request, session, account, done[0], done[1], created=False)

    async def revoke_page(self, request: Request) -> Response:
        session, account = await self._session(request)
        key = await self._own_key(account, request.path_params["key_id"])
        return self.render("revoke.html", account=account, csrf=session.csrf, key=key)

    async def revoke(self, request: Request) -> Response:
        _session, account, _form = await self._checked(request)
        key = await self._own_key(account, request.path_params["key_id"])
        await self.store.call_sync("revoke_key", key.key_id)
        logger.info("panel: account %s revoked key %s", account.name, key.key_id)
        return self._redirect("/keys?revoked=1")

    async def stylesheet(self, request: Request) -> Response:
        return FileResponse(
            HERE / "static" / "panel.css",
            media_type="text/css",
            headers={**_HEADERS, "Cache-Control": "public, max-age=3600"},
        )

    # -- errors -----------------------------------------------------------------------
    def error_page(self, status: int, title: str, text: str) -> Response:
        return self.render("error.html", status=status, title=title, text=text)

    def guarded(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except _SignedOut:
                return self._redirect("/signin")
            except _Forbidden:
                return self.error_page(
                    403,
                    "This form has expired",
                    "It was sent already, or without its security token, so nothing was "
                    "changed. A secret is shown only once: go back to your keys and, if "
                    "you need to, rotate the key's secret.",
                )
            except BadRequest as exc:
                return self.error_page(exc.status, "That did not work", exc.description)
            except BackendUnavailable:
                response = self.error_page(
                    503, "Temporarily unavailable", "Please try again in a moment."
                )
                response.headers["Retry-After"] = "5"
                return response

        return endpoint


def panel_app(
    service: _Service, *, secure_cookies: bool = False, api_url: str | None = None
) -> ASGIApp:
    """The panel's routes, to be mounted at ``/panel``."""
    panel = _Panel(service, secure_cookies=secure_cookies, api_url=api_url)
    g = panel.guarded
    return Router(
        routes=[
            Route("/", g(panel.index), methods=["GET"]),
            Route("/signin", g(panel.signin_page), methods=["GET"]),
            Route("/signin", g(panel.signin), methods=["POST"]),
            Route("/signout", g(panel.signout), methods=["POST"]),
            Route("/keys", g(panel.keys), methods=["GET"]),
            Route("/keys", g(panel.create), methods=["POST"]),
            Route("/keys/{key_id}/rotate", g(panel.rotate), methods=["POST"]),
            Route("/keys/{key_id}/revoke", g(panel.revoke_page), methods=["GET"]),
            Route("/keys/{key_id}/revoke", g(panel.revoke), methods=["POST"]),
            Route("/static/panel.css", panel.stylesheet, methods=["GET"]),
        ]
    )
