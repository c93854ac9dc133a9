"""The admin API under ``/admin/``: accounts and keys as JSON, for the operator's automation.

::

    GET    /admin/accounts                      [{account, apis, disabled, created_at}]
    POST   /admin/accounts                      {account, apis[, password]} -> 201, password once
    POST   /admin/accounts/{name}/disable       revokes its tokens and panel sessions
    GET    /admin/keys[?account=NAME]           [{key_id, name, account, apis, ...}], paged:
                                                ?limit=N (500, at most 1000), and a
                                                Link rel="next" header with ?after=
    POST   /admin/keys                          {apis[, account, name, introspect, expires_in]}
                                                -> 201 {key_id, secret, ...}, secret once
    POST   /admin/keys/{key_id}/rotate          [{grace}] -> {key_id, secret}
    DELETE /admin/keys/{key_id}                 revokes the key and its tokens

It is protected by bearerguard's own middleware, exactly as a customer protects an API:
`BearerGuardMiddleware` with a `StoreBackend` over the service's own store and
``api="bearerguard:admin"``. A key made with ``bearerguard keys create --admin`` logs in
at ``/login`` like any client; its token (bound to the address that obtained it, with a
sliding expiry) is sent as ``Authorization: Bearer``. No token: 401 with the Bearer
challenge; a token of a key without the admin right: 403 ``insufficient_scope``.

Listings never hold a secret, a secret digest or a password hash; a secret appears only
in the answer that creates it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from .._types import ASGIApp
from ..asgi import BearerGuardMiddleware
from ..backends.store import StoreBackend
from ..stores.accounts import (
    ADMIN_API,
    account_view,
    check_account_name,
    check_apis,
    check_key_name,
    key_view,
    new_account,
)
from ..stores.base import key_cursor, parse_key_cursor
from .forms import BadRequest

if TYPE_CHECKING:
    from .service import _Service

__all__ = ["MAX_PAGE_SIZE", "PAGE_SIZE", "admin_app"]

logger = logging.getLogger("bearerguard.server.admin")

_NO_STORE = {"Cache-Control": "no-store"}

PAGE_SIZE = 500
"""Keys per page of ``GET /admin/keys`` unless ``?limit=`` says otherwise."""
MAX_PAGE_SIZE = 1000


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=_NO_STORE)


def _str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest("invalid_request", f"{what} must be a list of strings")
    return value


class _Admin:
    def __init__(self, service: _Service) -> None:
        self.service = service
        self.store = service.store

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await self.service.read_body(request)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadRequest("invalid_request", "The body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("invalid_request", "The body must be a JSON object")
        return data

    async def list_accounts(self, request: Request) -> Response:
        accounts = await self.store.call_sync("list_accounts")
        return _json([account_view(a) for a in accounts])

    async def create_account(self, request: Request) -> Response:
        data = await self._body(request)
        password = data.get("password")
        if password is not None and (not isinstance(password, str) or len(password) < 8):
            raise BadRequest("invalid_request", "password must be text of 8 characters or more")
        try:
            name = check_account_name(data.get("account", ""))
            apis = check_apis(_str_list(data.get("apis", []), "apis"))
        except ValueError as exc:
            raise BadRequest("invalid_request", str(exc)) from None
        if not apis:
            raise BadRequest("invalid_request", "an account needs at least one API")
        record, password = new_account(name, apis, password=password)
        if not await self.store.call_sync("create_account", record):
            raise BadRequest("invalid_request", "That account already exists", 409)
        logger.info("admin API created account %s", name)
        return _json({"account": name, "password": password, "apis": sorted(apis)}, 201)

    async def disable_account(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not await self.store.call_sync("disable_account", name):
            raise BadRequest("not_found", "No such account", 404)
        logger.info("admin API disabled account %s", name)
        return _json({"account": name, "disabled": True})

    async def list_keys(self, request: Request) -> Response:
        """One page of keys (`PAGE_SIZE`, or ``?limit=`` up to `MAX_PAGE_SIZE`).

        When there may be more, a ``Link: <…?after=CURSOR>; rel="next"`` header (RFC
        8288) names the next page.
        """
        query = request.query_params
        account = query.get("account")
        after = query.get("after")
        try:
            limit = int(query.get("limit", PAGE_SIZE))
            if after is not None:
                parse_key_cursor(after)
        except ValueError:
            raise BadRequest("invalid_request", "Bad limit or after") from None
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise BadRequest("invalid_request", f"limit must be 1 to {MAX_PAGE_SIZE}")
        keys = await self.store.call_sync("list_keys", account, after=after, limit=limit)
        now = self.service.clock()
        response = _json([key_view(k, now) for k in keys])
        if len(keys) == limit:
            params = {"limit": str(limit), "after": key_cursor(keys[-1])}
            if account is not None:
                params["account"] = account
            response.headers["Link"] = f'</admin/keys?{urlencode(params)}>; rel="next"'
        return response

    async def create_key(self, request: Request) -> Response:
        data = await self._body(request)
        account = data.get("account") or ""
        introspect = data.get("introspect", False)
        expires_in = data.get("expires_in")
        try:
            apis = check_apis(_str_list(data.get("apis", []), "apis"))
            name = check_key_name(data.get("name", ""))
            if account:
                check_account_name(account)
        except ValueError as exc:
            raise BadRequest("invalid_request", str(exc)) from None
        if not isinstance(introspect, bool):
            raise BadRequest("invalid_request", "introspect must be true or false")
        if expires_in is not None and (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, (int, float))
            or not 0 < expires_in < 1e10
        ):
            raise BadRequest("invalid_request", "expires_in must be a positive number of seconds")
        if account:
            owner = await self.store.call_sync("get_account", account)
            if owner is None:
                raise BadRequest("invalid_request", "No such account")
            apis = apis or owner.apis
            if not apis <= owner.apis:
                raise BadRequest("invalid_scope", "The account may not grant those APIs")
        if not apis:
            raise BadRequest("invalid_request", "a key needs at least one API")
        now = self.service.clock()
        record, secret = await self.store.call_sync(
            "create_key",
            sorted(apis),
            introspect=introspect,
            account=account,
            name=name,
            expires_at=None if expires_in is None else now + expires_in,
        )
        logger.info("admin API created key %s", record.key_id)
        return _json({**key_view(record, now), "secret": secret}, 201)

    async def rotate_key(self, request: Request) -> Response:
        data = await self._body(request)
        grace = data.get("grace", self.service.rotation_grace)
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < 1e9:
            raise BadRequest("invalid_request", "grace must be a number of seconds, 0 or more")
        key_id = request.path_params["key_id"]
        done = await self.store.call_sync(
            "rotate_key", key_id, grace=float(grace), now=self.service.clock()
        )
        # This worker at once; the others when the store's announcement reaches them
        # (Redis: every worker and replica), within the key cache TTL in any case.
        self.service.keys.drop(key_id)
        if done is None:
            raise BadRequest("not_found", "No such key", 404)
        logger.info("admin API rotated key %s", key_id)
        return _json({"key_id": key_id, "secret": done[1]})

    async def revoke_key(self, request: Request) -> Response:
        key_id = request.path_params["key_id"]
        if not await self.store.call_sync("revoke_key", key_id):
            raise BadRequest("not_found", "No such key", 404)
        logger.info("admin API revoked key %s", key_id)
        return _json({"key_id": key_id, "revoked": True})


def admin_app(service: _Service, *, trusted_proxies: tuple[str, ...]) -> ASGIApp:
    """The ``/admin`` routes behind `BearerGuardMiddleware` over the service's store."""
    admin = _Admin(service)

    # BadRequest and a failing store are answered by the service app's exception
    # handlers (`create_app`), as on /login.
    router = Router(
        routes=[
            Route("/accounts", admin.list_accounts, methods=["GET"]),
            Route("/accounts", admin.create_account, methods=["POST"]),
            Route("/accounts/{name}/disable", admin.disable_account, methods=["POST"]),
            Route("/keys", admin.list_keys, methods=["GET"]),
            Route("/keys", admin.create_key, methods=["POST"]),
            Route("/keys/{key_id}/rotate", admin.rotate_key, methods=["POST"]),
            Route("/keys/{key_id}", admin.revoke_key, methods=["DELETE"]),
        ]
    )
    return BearerGuardMiddleware(
        router,
        backend=StoreBackend(service.store.store, clock=service.clock),
        api=ADMIN_API,
        trusted_proxies=trusted_proxies,
        realm="bearerguard admin",
        clock=service.clock,
    )
