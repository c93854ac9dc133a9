"""Django REST framework classes, exported by `bearerguard.django` (imported on first use).

They read what `bearerguard.django.BearerGuardMiddleware` decided; the middleware must
run (it has already refused bad tokens before DRF sees the request).
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .django import GUARD_KEY, APIKeyUser, challenge_for
from .errors import MISSING, Challenge, quote_param
from .flow import Guard
from .tokens import Identity

__all__ = ["BearerGuardAuthentication", "ChallengeError", "HasAPI"]


class ChallengeError(APIException):
    """A bearerguard refusal as a DRF exception: the same status, body and challenge.

    DRF's exception handler sends ``exc.auth_header`` as ``WWW-Authenticate`` and
    ``exc.wait`` as ``Retry-After``; the body is the challenge's JSON object.
    """

    def __init__(self, challenge: Challenge, realm: str) -> None:
        super().__init__(detail=json.loads(challenge.to_body()))
        self.status_code = challenge.status
        self.auth_header = challenge.to_header(realm)
        if challenge.retry_after is not None:
            self.wait = challenge.retry_after


class BearerGuardAuthentication(BaseAuthentication):
    """DRF authentication from the bearerguard middleware's decision.

    ``request.user`` becomes an `APIKeyUser`, ``request.auth`` the `Identity`. A request
    without one (a public path) is unauthenticated, and DRF answers it 401 with
    ``WWW-Authenticate: Bearer realm="…"`` (from `authenticate_header`), not 403.
    """

    def authenticate(self, request: Request) -> tuple[APIKeyUser, Identity] | None:
        # Raises ImproperlyConfigured when the middleware did not run: fail loudly.
        challenge_for(request._request, None)
        identity = getattr(request._request, "bearerguard", None)
        if not isinstance(identity, Identity):
            return None
        return APIKeyUser(identity), identity

    def authenticate_header(self, request: Request) -> str:
        guard = request._request.META.get(GUARD_KEY)
        return MISSING.to_header(guard.realm if isinstance(guard, Guard) else "api")


class HasAPI(BasePermission):
    """DRF permission: the key must have API `api` (``permission_classes = [HasAPI("dns")]``).

    Refuses with bearerguard's own answers: 403 ``insufficient_scope`` with
    ``scope="<api>"``, or 401 without an identity. DRF instantiates permission classes,
    so an instance returns itself when called.
    """

    def __init__(self, api: str) -> None:
        quote_param(api)
        self.api = api

    def __call__(self) -> HasAPI:
        return self

    def has_permission(self, request: Request, view: Any) -> bool:
        challenge, realm = challenge_for(request._request, self.api)
        if challenge is not None:
            raise ChallengeError(challenge, realm)
        return True
