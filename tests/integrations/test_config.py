"""`bearerguard.config.from_env`: which backend the BEARERGUARD_* variables select."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bearerguard import ConfigurationError, StoreBackend
from bearerguard.backends.introspection import IntrospectionBackend
from bearerguard.config import DEFAULT_STORE, from_env
from bearerguard.ratelimit import RateLimit
from bearerguard.stores import MemoryStore
from bearerguard.stores.sqlite import SQLiteStore
from helpers import remember_secret

INTRO = {
    "BEARERGUARD_INTROSPECTION_URL": "http://127.0.0.1:8000/introspect",
    "BEARERGUARD_CLIENT_ID": "key_rs",
    "BEARERGUARD_CLIENT_SECRET": "s3cret-for-config-tests",
}
remember_secret(INTRO["BEARERGUARD_CLIENT_SECRET"])


def test_introspection_selected_by_all_three() -> None:
    settings = from_env({**INTRO, "BEARERGUARD_STORE": "memory://"})
    try:
        assert isinstance(settings.backend, IntrospectionBackend)
        assert settings.backend.url == INTRO["BEARERGUARD_INTROSPECTION_URL"]
        assert settings.source == "introspection http://127.0.0.1:8000/introspect"
        assert INTRO["BEARERGUARD_CLIENT_SECRET"] not in repr(settings)
    finally:
        settings.close()


@pytest.mark.parametrize("missing", sorted(INTRO))
def test_partial_introspection_is_an_error(missing: str) -> None:
    env = {k: v for k, v in INTRO.items() if k != missing}
    with pytest.raises(ConfigurationError) as info:
        from_env(env)
    assert missing in str(info.value)
    assert INTRO["BEARERGUARD_CLIENT_SECRET"] not in str(info.value)


def test_empty_variables_count_as_unset() -> None:
    env = dict.fromkeys(INTRO, "") | {"BEARERGUARD_STORE": "memory://"}
    settings = from_env(env)
    assert isinstance(settings.backend, StoreBackend)
    assert isinstance(settings.backend.store, MemoryStore)


def test_bad_introspection_url_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="BEARERGUARD_INTROSPECTION_URL"):
        from_env({**INTRO, "BEARERGUARD_INTROSPECTION_URL": "ftp://nowhere"})


def test_store_url_selects_store_backend(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    settings = from_env({"BEARERGUARD_STORE": url})
    try:
        assert isinstance(settings.backend, StoreBackend)
        assert isinstance(settings.backend.store, SQLiteStore)
        assert (tmp_path / "x.db").exists()
        assert settings.options == {"trusted_proxies": ()}
    finally:
        settings.close()


def test_default_store_is_sqlite_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_STORE == "sqlite:///bearerguard.db"
    settings = from_env({})
    try:
        assert isinstance(settings.backend.store, SQLiteStore)
        assert (tmp_path / "bearerguard.db").exists()
    finally:
        settings.close()


def test_bad_store_url_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="BEARERGUARD_STORE"):
        from_env({"BEARERGUARD_STORE": "postgres://db/x"})


def test_redis_password_is_not_in_source() -> None:
    pw = remember_secret("redis-pass-for-config-test")
    try:
        settings = from_env({"BEARERGUARD_STORE": f"redis://:{pw}@127.0.0.1:1/0"})
    except ConfigurationError as exc:  # no Redis on port 1: the error must not quote it
        assert pw not in str(exc)
    else:
        try:
            assert pw not in settings.source
        finally:
            settings.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("10.0.0.1", ("10.0.0.1",)),
        (" 10.0.0.1 , 10.1.0.0/16,,::1 ", ("10.0.0.1", "10.1.0.0/16", "::1")),
    ],
)
def test_trusted_proxies(value: str, expected: tuple[str, ...]) -> None:
    settings = from_env({"BEARERGUARD_STORE": "memory://", "BEARERGUARD_TRUSTED_PROXIES": value})
    assert settings.trusted_proxies == expected
    assert settings.options["trusted_proxies"] == expected


def test_bad_trusted_proxy_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="BEARERGUARD_TRUSTED_PROXIES"):
        from_env({"BEARERGUARD_STORE": "memory://", "BEARERGUARD_TRUSTED_PROXIES": "a.b.c.d"})


def test_token_format_from_the_environment() -> None:
    """Issue 12: BEARERGUARD_TOKEN_FORMAT, for a resource server that introspects."""
    from bearerguard import BearerGuardMiddleware

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    env = {"BEARERGUARD_STORE": "memory://"}
    cases = [({}, "bearerguard"), ({"BEARERGUARD_TOKEN_FORMAT": "any"}, None)]
    intro = {
        "BEARERGUARD_INTROSPECTION_URL": "http://127.0.0.1:9/introspect",
        "BEARERGUARD_CLIENT_ID": "key_1",
        "BEARERGUARD_CLIENT_SECRET": remember_secret("s" * 43),
    }
    cases += [({**intro, "BEARERGUARD_STORE": ""}, None)]
    cases += [({**intro, "BEARERGUARD_TOKEN_FORMAT": "BearerGuard"}, "bearerguard")]
    for extra, expected in cases:
        settings = from_env({**env, **extra})
        try:
            mw = BearerGuardMiddleware(app, backend=settings.backend, **settings.options)
            assert mw.guard.token_format == expected, extra
        finally:
            settings.close()
    with pytest.raises(ConfigurationError, match="BEARERGUARD_TOKEN_FORMAT"):
        from_env({**env, "BEARERGUARD_TOKEN_FORMAT": "jwt"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("10", (10.0, 10)), ("0.5, 3", (0.5, 3)), (" 2,1 ", (2.0, 1))],
)
def test_rate_limit_from_the_environment(value: str, expected: tuple[float, int] | None) -> None:
    settings = from_env({"BEARERGUARD_STORE": "memory://", "BEARERGUARD_RATE_LIMIT": value})
    try:
        limit = settings.options.get("rate_limit")
        if expected is None:
            assert limit is None and "rate_limit" not in settings.options
        else:
            assert isinstance(limit, RateLimit)
            assert (limit.rate, limit.burst) == expected
    finally:
        settings.close()


@pytest.mark.parametrize("value", ["fast", "0", "-1", "10,x", "10,-2", "nan", "inf", "1,2,3"])
def test_bad_rate_limit_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigurationError, match="BEARERGUARD_RATE_LIMIT must be RATE or"):
        from_env({"BEARERGUARD_STORE": "memory://", "BEARERGUARD_RATE_LIMIT": value})


def test_the_rate_limit_variable_limits_the_middleware() -> None:
    # The documented use, `BearerGuardMiddleware(app, backend=…, **settings.options)`,
    # carries the variable into a real limiter: the second request of a burst of 1 is 429.
    import asyncio

    from bearerguard import BearerGuardMiddleware
    from helpers import issue
    from integration_support import bearer

    env = {"BEARERGUARD_STORE": "memory://", "BEARERGUARD_RATE_LIMIT": "0.01,1"}
    settings = from_env(env)
    assert isinstance(settings.backend, StoreBackend)
    token = issue(settings.backend.store).token

    async def app(scope: object, receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def status_of(mw: Any) -> int:
        seen: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen.append(message["status"])

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        headers = [(k.lower().encode(), v.encode()) for k, v in bearer(token).items()]
        scope = {"type": "http", "path": "/", "headers": headers, "client": ("127.0.0.1", 1)}
        await mw(scope, receive, send)
        return seen[0]

    try:
        mw = BearerGuardMiddleware(app, backend=settings.backend, **settings.options)
        assert [asyncio.run(status_of(mw)) for _ in range(2)] == [200, 429]
    finally:
        settings.close()
