"""Store URLs for Sentinel, Cluster and TLS: parsing, the clients made, no password echoed."""

from __future__ import annotations

import time

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from bearerguard._shell import redact_url
from bearerguard.errors import ConfigurationError
from bearerguard.stores import StoreUnavailable, open_store
from bearerguard.stores.redis import RedisStore
from bearerguard.stores.redis.connect import Target, parse_url
from helpers import remember_secret
from live_service import run_cli
from redis_server import free_port

PASSWORD = remember_secret("pw-Zq8-never-shown")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379/0", Target("redis://h:6379/0", "single")),
        ("rediss://h:6380/1", Target("rediss://h:6380/1", "single", tls=True)),
        (
            "redis+sentinel://a:26379,b:26380/main",
            Target("", "sentinel", (("a", 26379), ("b", 26380)), service="main"),
        ),
        (
            "redis+sentinel://a,[::1]:5/main/3",
            Target("", "sentinel", (("a", 26379), ("::1", 5)), service="main", db=3),
        ),
        (
            f"rediss+sentinel://u:{PASSWORD}@a:1/m?ssl_ca_certs=/ca.pem",
            Target("", "sentinel", (("a", 1),), "m", 0, "u", PASSWORD, True, "/ca.pem"),
        ),
        (
            "redis+cluster://a:7000,b:7001,c",
            Target("", "cluster", (("a", 7000), ("b", 7001), ("c", 6379))),
        ),
        (
            f"rediss+cluster://:{PASSWORD}@a:7000/0",
            Target("", "cluster", (("a", 7000),), password=PASSWORD, tls=True),
        ),
    ],
)
def test_store_urls_parse(url: str, expected: Target) -> None:
    got = parse_url(url)
    fields = ("kind", "nodes", "service", "db", "username", "password", "tls", "ca_certs")
    assert {f: getattr(got, f) for f in fields} == {f: getattr(expected, f) for f in fields}


@pytest.mark.parametrize(
    "url",
    [
        f"redis+sentinel://u:{PASSWORD}@a:1",  # no service
        f"redis+sentinel://u:{PASSWORD}@a:1/m/x",  # db not a number
        f"redis+sentinel://u:{PASSWORD}@a:1/m/0/extra",
        f"redis+cluster://u:{PASSWORD}@a:1/2",  # cluster has db 0 only
        f"redis+cluster://u:{PASSWORD}@",  # no node
        f"redis+cluster://u:{PASSWORD}@a:notaport",
        f"redis+cluster://u:{PASSWORD}@a:70000",
        f"redis+cluster://u:{PASSWORD}@a:1?foo=bar",
        f"redis+cluster://u:{PASSWORD}@" + ",".join(["a:1"] * 33),
        f"redis+mystery://u:{PASSWORD}@a:1",
        f"redis://u:{PASSWORD}@:6379/x",
    ],
)
def test_bad_store_urls_are_one_line_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    assert PASSWORD not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_redaction_covers_the_multi_host_forms() -> None:
    url = f"redis+sentinel://admin:{PASSWORD}@a:1,b:2/main/0"
    assert redact_url(url) == "redis+sentinel://admin:***@a:1,b:2/main/0"


def test_sentinel_and_tls_clients_are_made_without_io() -> None:
    # Nothing listens there: made, not connected; each call then fails as StoreUnavailable.
    port = free_port()
    store = open_store(f"redis+sentinel://u:{PASSWORD}@127.0.0.1:{port}/main/2")
    assert isinstance(store, RedisStore)
    pool = store._client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["password"] == PASSWORD
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.ping()
    # Fast, so /ready answers while no Sentinel does (redis-py's default backs off ~9 s).
    assert time.monotonic() - started < 3.0
    assert PASSWORD not in str(caught.value)
    store.close()
    tls = open_store(f"rediss://127.0.0.1:{port}/0")
    assert isinstance(tls, RedisStore)
    assert tls._client.connection_pool.connection_class is redis.SSLConnection
    tls.close()


@pytest.mark.parametrize(
    "form",
    ["redis+sentinel://u:{pw}@127.0.0.1:{port}/main", "redis+cluster://u:{pw}@127.0.0.1:{port}"],
)
def test_cli_names_an_unreachable_store_without_its_password(form: str) -> None:
    url = form.format(pw=PASSWORD, port=free_port())
    done = run_cli(["keys", "list", "--store", url])
    assert done.returncode != 0
    assert "unavailable" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    assert "***" in done.stderr
