"""The auth service's OAuth endpoints: issuing, introspecting and revoking tokens.

`Endpoints` answers these requests over the service's state (`_Service`); `create_app`
routes them beside ``/metrics``, the panel and the admin API:

* ``POST /login`` — OAuth 2.0 client-credentials grant (RFC 6749 §4.4), the key sent as
  HTTP Basic (or ``client_id``/``client_secret`` form fields);
* ``POST /introspect`` — RFC 7662, for keys with the introspection right; an active
  token's answer has ``client_id`` (key id), ``scope`` (its APIs), ``exp``, ``iat``,
  ``token_type`` and the extension members ``ip`` (the bound address) and ``ttl`` (the
  sliding lifetime); a successful introspection counts as a use — when the form carries
  the extension member ``client_ip`` (the address of the request the resource server
  is checking), only if that is the token's own address (H4);
* ``POST /revoke`` — RFC 7009: a key revokes its own tokens, a key with the
  introspection right any token; someone else's token is left alone with the same 200
  (RFC 7009 §2.2 answers 200 for unknown tokens too), so the answer reveals nothing;
* ``GET /.well-known/oauth-authorization-server`` — RFC 8414 metadata;
* ``GET /health`` — liveness: the process answers (never touches the store);
* ``GET /ready`` — readiness: 200 while the store answers, 503 when it does not.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import BackendUnavailable, log_safe
from ..rfc7662 import introspection_answer, introspection_request, whole_seconds
from ..stores.base import TokenRecord, new_token
from ..tokens import fingerprint, token_digest
from .clients import invalid_client
from .forms import BadRequest, parse_resources, parse_scope
from .service import NO_STORE, _Service

__all__ = ["Endpoints"]

logger = logging.getLogger("bearerguard.server")


class Endpoints:
    """The service's own endpoints over `service`; bad input raises `BadRequest`."""

    def __init__(self, service: _Service) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        """The routes of these endpoints (``/metrics``, the panel and the admin API apart)."""
        return [
            Route("/login", self.login, methods=["POST"]),
            Route("/introspect", self.introspect, methods=["POST"]),
            Route("/revoke", self.revoke, methods=["POST"]),
            Route("/.well-known/oauth-authorization-server", self.metadata, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/ready", self.ready, methods=["GET"]),
        ]

    # -- endpoints --------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        """``POST /login``: the client-credentials grant (RFC 6749 §4.4); a new bound token."""
        form = await self.service.read_form(request)
        grant = form.get("grant_type")
        if grant is None:
            raise BadRequest("invalid_request", "Missing grant_type")
        # Authenticate before judging the grant type, so a bad key always reads the
        # same whatever else the request says.
        key = await self.service.clients.authenticate(request, form)
        if grant != "client_credentials":
            raise BadRequest("unsupported_grant_type", "Only client_credentials is supported")
        requested = parse_scope(form.get("scope"))
        apis = key.apis
        if requested is not None:
            if not requested <= key.apis:
                raise BadRequest("invalid_scope", "The key does not grant the requested scope")
            apis = requested
        # RFC 8707 §2: the token is meant for these resources (its audience).
        audience = parse_resources(form.get("resource"))
        ip = self.service.client_ip(request)
        if ip is None:
            raise BadRequest("invalid_request", "Cannot determine the client address")
        token = new_token()
        digest = token_digest(token)
        now = self.service.clock()
        await self.service.store.put_token(
            TokenRecord(
                digest=digest,
                key_id=key.key_id,
                apis=apis,
                bound_ip=ip,
                issued_at=now,
                ttl=self.service.token_ttl,
                expires_at=now + self.service.token_ttl,
                audience=audience,
            )
        )
        self.service.metrics.tokens_issued += 1
        logger.info(
            "issued token %s to key %s at %s", fingerprint(digest), log_safe(key.key_id), ip
        )
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": whole_seconds(self.service.token_ttl),
            "token_type": "bearer",
        }
        if requested is not None:
            # RFC 6749 §5.1: scope is OPTIONAL when identical to the one requested.
            body["scope"] = " ".join(sorted(apis))
        return JSONResponse(body, headers=NO_STORE)

    async def introspect(self, request: Request) -> Response:
        """``POST /introspect``: RFC 7662, for keys with the introspection right."""
        form = await self.service.read_form(request, self.service.token_body)
        key = await self.service.clients.authenticate(request, form)
        if not key.introspect:
            # RFC 7662 §2.1: the endpoint MUST require authorization of the caller.
            raise invalid_client("This key may not introspect tokens")
        try:
            token, client_ip = introspection_request(form)
        except ValueError as exc:
            raise BadRequest("invalid_request", str(exc)) from None
        record = None
        if len(token) <= self.service.max_token_length:
            record = await self.service.store.touch_token(
                token_digest(token), self.service.clock(), client_ip
            )
        self.service.metrics.introspections["inactive" if record is None else "active"] += 1
        return JSONResponse(introspection_answer(record), headers=NO_STORE)

    async def revoke(self, request: Request) -> Response:
        """``POST /revoke``: RFC 7009; 200 whether or not the token was the caller's."""
        form = await self.service.read_form(request, self.service.token_body)
        key = await self.service.clients.authenticate(request, form)
        token = form.get("token")
        if token is None:
            raise BadRequest("invalid_request", "Missing token")
        if len(token) <= self.service.max_token_length:
            digest = token_digest(token)
            record = await self.service.store.get_token(digest, self.service.clock())
            # A key revokes its own tokens; a key with the introspection right (a
            # resource server) may revoke any. Someone else's token is left alone with
            # the same 200, so the answer does not reveal that it exists.
            if record is not None and (record.key_id == key.key_id or key.introspect):
                await self.service.store.revoke_token(digest)
                self.service.metrics.revocations += 1
                logger.info("revoked token %s (by key %s)", fingerprint(digest), key.key_id)
        # RFC 7009 §2.2: 200 also for invalid or unknown tokens.
        return Response(status_code=200, headers=NO_STORE)

    async def metadata(self, request: Request) -> Response:
        """``GET /.well-known/oauth-authorization-server``: RFC 8414 metadata."""
        # Without an issuer the URLs follow the request's Host: no-store, so no cache
        # keeps what one client's Host header made of them (H7).
        issuer = self.service.issuer or str(request.base_url).rstrip("/")
        auth_methods = ["client_secret_basic", "client_secret_post"]
        return JSONResponse(
            {
                "issuer": issuer,
                "token_endpoint": issuer + "/login",
                "introspection_endpoint": issuer + "/introspect",
                "revocation_endpoint": issuer + "/revoke",
                "grant_types_supported": ["client_credentials"],
                # RFC 8707: /login takes resource; RFC 6750 §2.1: tokens go in a header.
                # (resource_indicators_supported is not IANA-registered; it says so.)
                "resource_indicators_supported": True,
                "response_types_supported": [],
                "token_endpoint_auth_methods_supported": auth_methods,
                "introspection_endpoint_auth_methods_supported": auth_methods,
                "revocation_endpoint_auth_methods_supported": auth_methods,
            },
            headers=NO_STORE,
        )

    async def health(self, request: Request) -> Response:
        """Liveness: the process serves requests."""
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """Readiness: the store answers."""
        try:
            await self.service.store.ping()
        except BackendUnavailable:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})
