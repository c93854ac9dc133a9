"""Views: ``request.bearerguard`` is the caller's Identity; `require_api` guards a view."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from bearerguard.django import require_api


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def whoami(request: HttpRequest) -> JsonResponse:
    identity = request.bearerguard  # type: ignore[attr-defined]
    return JsonResponse({"key_id": identity.key_id, "apis": sorted(identity.apis)})


@require_api("dns")
def dns_zones(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"zones": ["example.com", "example.org"]})


@require_api("vps")
async def vps_servers(request: HttpRequest) -> JsonResponse:
    # An async view: under uvicorn it runs on the event loop, under gunicorn Django
    # runs it for the sync handler. require_api works on both kinds.
    return JsonResponse({"servers": [{"name": "web-1", "status": "running"}]})
