"""The customer control panel under ``/panel/``: server-rendered, no JavaScript needed.

Customers (accounts made with ``bearerguard accounts create``) sign in with their
account name and password, and manage their API keys: create one (named, with any of
the APIs their account may grant), see the key id and the secret once, with the auth
service documentation's curl + jq lines filled in; rotate a key's secret (the old one
keeps working for the service's rotation grace period); revoke a key after a
confirmation step.

This module holds the routes and what each page does; `session` holds cookies,
sessions, CSRF tokens and forms, and `render` the templates and the headers every answer
carries.

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
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from ..._types import ASGIApp
from ...errors import BackendUnavailable
from ...stores.accounts import AccountRecord, SessionRecord, check_key_name, verify_password
from ..forms import BadRequest
from ..throttle import default_throttle
from .render import CSP as CSP
from .render import HERE as HERE
from .render import Pages
from .render import curl_lines as curl_lines
from .session import SESSION_COOKIE, SESSION_LIFETIME, Forbidden, Sessions, SignedOut, form_field
from .session import SIGNIN_COOKIE as SIGNIN_COOKIE

if TYPE_CHECKING:
    from ..service import _Service

__all__ = ["SESSION_COOKIE", "SESSION_LIFETIME", "panel_app"]

logger = logging.getLogger("bearerguard.server.panel")

# Password checks (argon2id: tens of MiB each) run a few at a time.
_PASSWORD_CHECKS = 4


class _Panel:
    def __init__(self, service: _Service, *, secure_cookies: bool, api_url: str | None) -> None:
        self.service = service
        self.store = service.store
        self.api_url = api_url
        self.pages = Pages()
        self.sessions = Sessions(service.store, service.read_body, secure_cookies=secure_cookies)
        self.throttle = default_throttle(service.store.store, table="panel")
        self._checks = asyncio.Semaphore(_PASSWORD_CHECKS)

    def service_url(self, request: Request) -> str:
        if self.service.issuer:
            return self.service.issuer
        return f"{request.url.scheme}://{request.url.netloc}"

    # -- pages ------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        try:
            await self.sessions.current(request)
        except SignedOut:
            return self.pages.redirect("/signin")
        return self.pages.redirect("/keys")

    async def signin_page(
        self, request: Request, *, error: str = "", status: int = 200
    ) -> Response:
        token = secrets.token_urlsafe(32)
        response = self.pages.render(
            "signin.html",
            status=status,
            csrf=token,
            error=error,
            account_name=request.query_params.get("account", "")[:64],
        )
        self.sessions.set_cookie(response, SIGNIN_COOKIE, token, 3600)
        return response

    async def signin(self, request: Request) -> Response:
        form = await self.sessions.signin_form(request)
        name = form_field(form, "account").strip()[:64]
        password = form_field(form, "password")[:1024]
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
        response = self.pages.redirect("/keys")
        # A new session id at every sign-in; any session this browser had ends.
        await self.sessions.start(request, account, response)
        logger.info("panel sign-in of account %s", account.name)
        return response

    async def signout(self, request: Request) -> Response:
        session, _account, _form = await self.sessions.checked(request)
        response = self.pages.redirect("/signin")
        await self.sessions.end(session, response)
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
        return self.pages.render(
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
        session, account = await self.sessions.current(request)
        notice = "The key was revoked." if request.query_params.get("revoked") else ""
        return await self._keys_page(session, account, notice=notice)

    async def create(self, request: Request) -> Response:
        session, account, form = await self.sessions.checked(request)
        apis = {v for k, v in form if k == "api"}
        try:
            name = check_key_name(form_field(form, "name"))
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
        session = await self.sessions.new_csrf(session)
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
        return self.pages.render(
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
        session, account, _form = await self.sessions.checked(request)
        key = await self._own_key(account, request.path_params["key_id"])
        done = await self.store.call_sync(
            "rotate_key", key.key_id, grace=self.service.rotation_grace, now=time.time()
        )
        # This worker at once; the others as the store announces it, or within the TTL.
        self.service.keys.drop(key.key_id)
        if done is None:
            raise BadRequest("not_found", "No such key", 404)
        session = await self.sessions.new_csrf(session)
        logger.info("panel: account %s rotated key %s", account.name, key.key_id)
        return self._secret_page(request, session, account, done[0], done[1], created=False)

    async def revoke_page(self, request: Request) -> Response:
        session, account = await self.sessions.current(request)
        key = await self._own_key(account, request.path_params["key_id"])
        return self.pages.render("revoke.html", account=account, csrf=session.csrf, key=key)

    async def revoke(self, request: Request) -> Response:
        _session, account, _form = await self.sessions.checked(request)
        key = await self._own_key(account, request.path_params["key_id"])
        await self.store.call_sync("revoke_key", key.key_id)
        logger.info("panel: account %s revoked key %s", account.name, key.key_id)
        return self.pages.redirect("/keys?revoked=1")

    # -- errors -----------------------------------------------------------------------
    def guarded(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except SignedOut:
                return self.pages.redirect("/signin")
            except Forbidden:
                return self.pages.error_page(
                    403,
                    "This form has expired",
                    "It was sent already, or without its security token, so nothing was "
                    "changed. A secret is shown only once: go back to your keys and, if "
                    "you need to, rotate the key's secret.",
                )
            except BadRequest as exc:
                return self.pages.error_page(exc.status, "That did not work", exc.description)
            except BackendUnavailable:
                response = self.pages.error_page(
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
            Route("/static/panel.css", panel.pages.stylesheet, methods=["GET"]),
        ]
    )
