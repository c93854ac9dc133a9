"""`from_env` with the JWT issuer, JWKS, audience and resource variables (docs/jwt.md)."""

from __future__ import annotations

import pytest

from bearerguard import ChainBackend, ConfigurationError, StoreBackend
from bearerguard.backends.introspection import IntrospectionBackend
from bearerguard.backends.jwt import JWTBackend
from bearerguard.config import from_env
from helpers import remember_secret

ISSUER = "https://idp.example.test/realms/api"
API = "https://api.example.test"
INTRO = {
    "BEARERGUARD_INTROSPECTION_URL": "http://127.0.0.1:8000/introspect",
    "BEARERGUARD_CLIENT_ID": "key_rs",
    "BEARERGUARD_CLIENT_SECRET": remember_secret("s3cret-for-jwt-config-tests"),
}


def test_issuer_alone_is_jwt_alone_with_the_resource_as_audience() -> None:
    settings = from_env({"BEARERGUARD_JWT_ISSUER": ISSUER, "BEARERGUARD_RESOURCE": API})
    assert isinstance(settings.backend, JWTBackend)
    assert settings.backend.audience == API
    assert settings.backend.jwks_url is None
    meta = settings.options["resource_metadata"]
    assert meta.document()["authorization_servers"] == [ISSUER]
    assert "audience" not in settings.options


def test_issuer_and_store_make_a_chain_jwt_first() -> None:
    env = {
        "BEARERGUARD_JWT_ISSUER": ISSUER,
        "BEARERGUARD_JWKS_URL": ISSUER + "/certs",
        "BEARERGUARD_AUDIENCE": API,
        "BEARERGUARD_STORE": "memory://",
    }
    settings = from_env(env)
    backend = settings.backend
    assert isinstance(backend, ChainBackend)
    jwt, store = backend.backends
    assert isinstance(jwt, JWTBackend) and jwt.jwks_url == ISSUER + "/certs"
    assert isinstance(store, StoreBackend)
    assert settings.options["audience"] == API
    assert "resource_metadata" not in settings.options
    settings.close()


def test_issuer_and_introspection_both_named_in_the_metadata() -> None:
    env = {**INTRO, "BEARERGUARD_JWT_ISSUER": ISSUER, "BEARERGUARD_RESOURCE": API + "/v1"}
    settings = from_env(env)
    assert isinstance(settings.backend, ChainBackend)
    assert isinstance(settings.backend.backends[1], IntrospectionBackend)
    doc = settings.options["resource_metadata"].document()
    assert doc["resource"] == API + "/v1"
    assert doc["authorization_servers"] == [ISSUER, "http://127.0.0.1:8000"]
    settings.close()


def test_audience_applies_to_any_backend() -> None:
    settings = from_env({"BEARERGUARD_STORE": "memory://", "BEARERGUARD_AUDIENCE": API})
    assert isinstance(settings.backend, StoreBackend)
    assert settings.options["audience"] == API
    settings.close()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"BEARERGUARD_JWKS_URL": ISSUER + "/certs"}, "BEARERGUARD_JWT_ISSUER"),
        ({"BEARERGUARD_JWT_ISSUER": ISSUER}, "BEARERGUARD_AUDIENCE"),
        (
            {"BEARERGUARD_JWT_ISSUER": "ftp://x", "BEARERGUARD_AUDIENCE": API},
            "BEARERGUARD_JWT_ISSUER",
        ),
        ({"BEARERGUARD_STORE": "memory://", "BEARERGUARD_RESOURCE": "/mcp"}, "RESOURCE"),
    ],
)
def test_bad_combinations_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        from_env(env)
