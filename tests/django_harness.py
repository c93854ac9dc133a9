"""A real Django project in the test process, under Django's own WSGI and ASGI handlers.

`DjangoHarness` has the interface of `adapter_harness.Harness`, so the request-contract
table (tests/adapters/test_contract.py) runs through ``bearerguard.django`` as it runs
through the other adapters: the full Django request stack (``WSGIHandler`` /
``ASGIHandler``, the middleware chain, URL routing, views) behind httpx's transports.
This module is also the project's ``ROOT_URLCONF``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bearerguard-tests-not-secret",
        ALLOWED_HOSTS=["testserver", "127.0.0.1", "localhost"],
        ROOT_URLCONF="django_harness",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        MIDDLEWARE=["bearerguard.django.BearerGuardMiddleware"],
        DATABASES={},
        USE_TZ=True,
        BEARERGUARD={},
    )
    django.setup()

from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from adapter_harness import AppCalls, Harness
from bearerguard import StoreBackend
from bearerguard.django import (
    BearerGuardAuthentication,
    BearerGuardMiddleware,
    HasAPI,
    require_api,
)
from bearerguard.stores import MemoryStore

T = TypeVar("T")

# Which harness a request belongs to, by the middleware's Guard (views count their runs).
_CALLS: dict[int, AppCalls] = {}


def _count(request: HttpRequest) -> None:
    calls = _CALLS.get(id(request.META.get("bearerguard.guard")))
    if calls is not None:
        calls.count += 1


def health(request: HttpRequest) -> JsonResponse:
    _count(request)
    return JsonResponse({"status": "ok"})


def whoami(request: HttpRequest) -> JsonResponse:
    _count(request)
    ident = request.bearerguard  # type: ignore[attr-defined]
    return JsonResponse(
        {
            "key_id": ident.key_id,
            "apis": sorted(ident.apis),
            "client_ip": ident.client_ip,
            "user": ident.display_name,
            "scopes": ident.scopes,
        }
    )


def stream(request: HttpRequest) -> StreamingHttpResponse:
    _count(request)
    if isinstance(request, ASGIRequest):

        async def achunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"chunk{i};".encode()

        return StreamingHttpResponse(achunks(), content_type="text/plain")

    def chunks() -> Iterator[bytes]:
        for i in range(3):
            yield f"chunk{i};".encode()

    return StreamingHttpResponse(chunks(), content_type="text/plain")


@require_api("dns")
def dns_zones(request: HttpRequest) -> JsonResponse:
    _count(request)
    return JsonResponse({"zones": ["example.com"]})


@require_api("vps")
async def vps_servers(request: HttpRequest) -> JsonResponse:
    _count(request)
    return JsonResponse({"servers": ["web-1"], "user": str(getattr(request, "user", None))})


class DRFZones(APIView):
    authentication_classes = (BearerGuardAuthentication,)
    permission_classes = (HasAPI("dns"),)

    def get(self, request: Request) -> Response:
        _count(request._request)
        return Response({"key_id": request.user.key_id, "apis": request.auth.scopes})


class DRFMe(APIView):
    authentication_classes = (BearerGuardAuthentication,)
    permission_classes = (IsAuthenticated,)

    def get(self, request: Request) -> Response:
        _count(request._request)
        return Response({"user": str(request.user)})


urlpatterns = [
    path("health", health),
    path("whoami", whoami),
    path("stream", stream),
    path("dns/zones", dns_zones),
    path("vps/servers", vps_servers),
    path("drf/zones", DRFZones.as_view()),
    path("public/drf/zones", DRFZones.as_view()),
    path("public/drf/me", DRFMe.as_view()),
    path("drf/me", DRFMe.as_view()),
]


def memory_backend() -> StoreBackend:
    """A backend factory for ``BEARERGUARD["BACKEND"]`` given as a dotted path."""
    return StoreBackend(MemoryStore())


def _options(backend: object, options: dict[str, Any]) -> dict[str, Any]:
    conf = {k.upper(): v for k, v in options.items()}
    if backend is not None:  # None: the middleware falls back to from_env()
        conf["BACKEND"] = backend
    return conf


class DjangoHarness(Harness):
    """The project under ``WSGIHandler`` (`kind` "wsgi") or ``ASGIHandler`` ("asgi").

    `options` are the middleware's, as lower-case keyword options (they go into
    ``settings.BEARERGUARD`` upper-cased, with the backend object as ``BACKEND``).
    `app` is Django's handler, `middleware` bearerguard's Django middleware in it.
    """

    def __init__(self, kind: str, backend: object, **options: Any) -> None:
        self.kind = kind
        self.calls = AppCalls()
        self._loop: asyncio.AbstractEventLoop | None = None
        old = settings.BEARERGUARD
        settings.BEARERGUARD = _options(backend, options)
        try:
            if kind == "asgi":
                self.app = ASGIHandler()
                self._loop = asyncio.new_event_loop()
            else:
                self.app = WSGIHandler()
        finally:
            settings.BEARERGUARD = old
        # The chain is our middleware inside Django's exception-to-response wrapper.
        self.middleware: BearerGuardMiddleware = self.app._middleware_chain.__wrapped__
        assert isinstance(self.middleware, BearerGuardMiddleware)
        assert self.middleware.is_async == (kind == "asgi")
        _CALLS[id(self.middleware.guard)] = self.calls

    def close(self) -> None:
        _CALLS.pop(id(self.middleware.guard), None)
        super().close()


def factory(make: Callable[..., T]) -> Iterator[Callable[..., T]]:
    """For fixtures: `make` that remembers what it made and closes it all at the end."""
    made: list[T] = []

    def tracked(*args: Any, **kwargs: Any) -> T:
        made.append(make(*args, **kwargs))
        return made[-1]

    yield tracked
    for item in made:
        item.close()  # type: ignore[attr-defined]


@pytest.fixture(name="django_harness", params=["wsgi", "asgi"], ids=["django-wsgi", "django-asgi"])
def django_harness_fixture(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., DjangoHarness]]:
    """`django_harness`: make `DjangoHarness` objects of one kind (each test runs per kind)."""
    yield from factory(functools.partial(DjangoHarness, request.param))
