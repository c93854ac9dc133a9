"""``bearerguard.django`` beyond the contract table: views, settings, Django REST framework.

Each test runs the test project of django_harness under Django's WSGI handler (sync
middleware chain) and its ASGI handler (async chain).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from bearerguard import StoreBackend
from bearerguard.django import APIKeyUser, require_api
from bearerguard.stores import MemoryStore
from django_harness import DjangoHarness, django_harness_fixture
from helpers import issue
from integration_support import assert_challenge, bearer

Make = Callable[..., DjangoHarness]
__all__ = ["django_harness_fixture"]  # the `django_harness` fixture, used below


def test_require_api_on_sync_and_async_views(django_harness: Make, store: MemoryStore) -> None:
    dns = issue(store, ("dns",))
    vps = issue(store, ("vps",))
    h = django_harness(StoreBackend(store))
    assert h.get("/dns/zones", bearer(dns.token)).json() == {"zones": ["example.com"]}
    assert_challenge(h.get("/dns/zones", bearer(vps.token)), 403, "insufficient_scope", scope="dns")
    assert_challenge(
        h.get("/vps/servers", bearer(dns.token)), 403, "insufficient_scope", scope="vps"
    )
    assert h.get("/vps/servers", bearer(vps.token)).status_code == 200
    assert h.calls.count == 2


def test_require_api_refuses_a_public_path_without_identity(
    django_harness: Make, store: MemoryStore
) -> None:
    h = django_harness(StoreBackend(store), public_paths=["/dns/*"], realm="zones")
    r = h.get("/dns/zones")
    assert_challenge(r, 401, None, realm="zones")
    assert r.headers["www-authenticate"] == 'Bearer realm="zones"'
    assert h.calls.count == 0


def test_request_user_only_when_asked(django_harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("vps",))
    off = django_harness(StoreBackend(store))
    assert off.get("/vps/servers", bearer(tok.token)).json()["user"] != tok.key_id
    on = django_harness(StoreBackend(store), user=True)
    assert on.get("/vps/servers", bearer(tok.token)).json()["user"] == tok.key_id


def test_drf_allows_with_the_api(django_harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("dns", "vps"))
    h = django_harness(StoreBackend(store))
    r = h.get("/drf/zones", bearer(tok.token))
    assert r.status_code == 200, r.text
    assert r.json() == {"key_id": tok.key_id, "apis": ["dns", "vps"]}
    assert h.get("/drf/me", bearer(tok.token)).json() == {"user": tok.key_id}


def test_drf_has_api_is_403_insufficient_scope(django_harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("vps",))
    h = django_harness(StoreBackend(store))
    r = h.get("/drf/zones", bearer(tok.token))
    assert_challenge(r, 403, "insufficient_scope", scope="dns")
    assert r.json()["scope"] == "dns"
    assert h.calls.count == 0


def test_drf_without_identity_is_401_not_403(django_harness: Make, store: MemoryStore) -> None:
    # On a public path the middleware lets the request through without an identity;
    # DRF must answer 401 with a Bearer challenge, not its default 403.
    h = django_harness(StoreBackend(store), public_paths=["/public/*"])
    r = h.get("/public/drf/me")  # IsAuthenticated: DRF's own NotAuthenticated
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'
    assert_challenge(h.get("/public/drf/zones"), 401, None)  # HasAPI: bearerguard's answer
    assert h.calls.count == 0


def test_drf_never_sees_a_bad_token(django_harness: Make, store: MemoryStore) -> None:
    h = django_harness(StoreBackend(store))
    assert_challenge(h.get("/drf/zones", bearer("not-a-token")), 401, "invalid_token")
    assert_challenge(h.get("/drf/zones"), 401, None)


def test_backend_from_a_dotted_path(django_harness: Make) -> None:
    h = django_harness("django_harness.memory_backend", public_paths=["/health"])  # a factory
    assert isinstance(h.middleware.adapter.backend, StoreBackend)
    assert h.get("/health").json() == {"status": "ok"}
    assert_challenge(h.get("/whoami", bearer("unknown")), 401, "invalid_token")


def test_backend_from_the_environment(
    django_harness: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEARERGUARD_STORE", "memory://")
    monkeypatch.setenv("BEARERGUARD_TRUSTED_PROXIES", "10.0.0.0/8")
    h = django_harness(None)
    assert isinstance(h.middleware.adapter.backend, StoreBackend)
    assert h.guard.resolver.enabled
    assert_challenge(h.get("/whoami"), 401, None)


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_bad_settings_fail_when_django_loads_the_middleware(kind: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="BEARERGUARD"):
        DjangoHarness(kind, StoreBackend(MemoryStore()), no_such_option=1)
    with pytest.raises(ImproperlyConfigured, match="BEARERGUARD"):
        DjangoHarness(kind, StoreBackend(MemoryStore()), public_paths=["no-slash"])


def test_require_api_without_the_middleware_is_a_configuration_error() -> None:
    @require_api("dns")
    def view(request: Any) -> Any:
        raise AssertionError("must not run")

    with pytest.raises(ImproperlyConfigured, match="MIDDLEWARE"):
        view(RequestFactory().get("/dns/zones"))


def test_api_key_user_has_no_django_permissions(store: MemoryStore) -> None:
    from bearerguard.tokens import Identity, TokenInfo

    info = TokenInfo("k1", frozenset({"dns"}))
    user = APIKeyUser(Identity("k1", info.apis, "127.0.0.1", info))
    assert user.is_authenticated and not user.is_anonymous
    assert (user.username, user.pk, str(user)) == ("k1", "k1", "k1")
    assert not user.has_perm("auth.add_user")
    assert not user.has_module_perms("auth")


def test_rate_limit_setting_gives_429_with_the_fields(
    django_harness: Make, store: MemoryStore
) -> None:
    tok = issue(store, ("dns",))
    h = django_harness(StoreBackend(store), rate_limit=(0.01, 2))
    allowed = [h.get("/dns/zones", bearer(tok.token)) for _ in range(2)]
    assert [r.status_code for r in allowed] == [200, 200]
    assert [r.headers["ratelimit"] for r in allowed] == [
        '"per-key";r=1;t=100',
        '"per-key";r=0;t=200',
    ]
    r = h.get("/dns/zones", bearer(tok.token))
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert r.headers["retry-after"] == "100"
    assert r.headers["ratelimit"] == '"per-key";r=0;t=100'
    assert r.headers["ratelimit-policy"] == '"per-key";q=2;w=200'
    assert h.calls.count == 2
