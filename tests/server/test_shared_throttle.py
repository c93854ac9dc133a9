"""Issue 15, shared limits: the H3 login throttle and the panel's sign-in throttle kept
in Redis, so replicas enforce one limit; the same rules as the per-process throttle."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from bearerguard.server import create_app
from bearerguard.server.throttle import (
    LoginThrottle,
    SharedLoginThrottle,
    Throttle,
    default_throttle,
)
from bearerguard.stores import MemoryStore, StoreUnavailable
from bearerguard.stores.accounts import new_account
from bearerguard.stores.redis import RedisStore
from helpers import FakeClock, remember_secret
from live_service import LiveService
from redis_server import RedisServer, free_port

# -- one table of rules, both throttles -----------------------------------------------
Guess = Callable[..., "int | None"]


@pytest.fixture(params=["process", "redis"])
def make_throttle(
    request: pytest.FixtureRequest, clock: FakeClock
) -> Iterator[Callable[..., Guess]]:
    """`make(**options)` builds a throttle; calling the result records one wrong guess."""
    loop = asyncio.new_event_loop()

    def make(**options: Any) -> Guess:
        throttle: Throttle
        if request.param == "process":
            throttle = LoginThrottle(clock=clock, **options)
        else:
            store = request.getfixturevalue("redis_store")
            throttle = SharedLoginThrottle(store, clock=clock, **options)

        def guess(key_id: str, source: str, known: bool = True) -> int | None:
            return loop.run_until_complete(throttle.awrong_guess(key_id, source, known=known))

        return guess

    yield make
    # The store (requested later, torn down first) has closed its client on this loop.
    loop.close()


def test_wrong_guesses_per_key_id_slide_out_of_the_window(
    make_throttle: Callable[..., Guess], clock: FakeClock
) -> None:
    t = make_throttle(max_failures=5, window=60)
    for i in range(4):
        assert t("key_aa", f"198.51.100.{i}") is None
    clock.advance(30)
    assert t("key_aa", "198.51.100.9") is None  # the fifth
    # From a fresh address: the key id is throttled, until its oldest failure is 60 s old.
    assert t("key_aa", "203.0.113.1") == 30
    clock.advance(29)
    assert t("key_aa", "203.0.113.2") == 1
    clock.advance(2)  # the first four are older than 60 s now
    assert t("key_aa", "203.0.113.3") is None
    # The two throttled guesses were not counted: three more fit, then 29 s to wait.
    for i in range(3):
        assert t("key_aa", f"203.0.113.{10 + i}") is None
    assert t("key_aa", "203.0.113.20") == 29


def test_made_up_key_ids_count_only_against_their_source(
    make_throttle: Callable[..., Guess], clock: FakeClock
) -> None:
    t = make_throttle(max_failures=3, window=60)
    for i in range(6):
        assert t("key_ff", f"198.51.100.{10 + i}", known=False) is None
    # The id never entered the key-id table: a known guess from elsewhere is heard.
    assert t("key_ff", "203.0.113.7") is None


def test_ipv6_sources_are_grouped_by_their_64(
    make_throttle: Callable[..., Guess], clock: FakeClock
) -> None:
    t = make_throttle(max_failures=3, window=60)
    for i in range(3):
        assert t(f"key_{i}", f"2001:db8:1:2::{i + 1}", known=False) is None
    assert t("key_9", "2001:db8:1:2:ffff::1", known=False) is not None
    assert t("key_9", "2001:db8:1:3::1", known=False) is None


def test_shared_keys_are_one_per_subject_with_a_hash_tag(redis_store: RedisStore) -> None:
    t = SharedLoginThrottle(redis_store, table="login")

    async def one_guess() -> int | None:
        try:
            return await t.awrong_guess("key_ab", "192.0.2.1", known=True)
        finally:
            await redis_store.aclose()

    assert asyncio.run(one_guess()) is None
    client = redis.Redis.from_url(redis_store.url)
    try:
        names = sorted(k.decode() for k in client.scan_iter("bearerguard:throttle:*"))
        assert len(names) == 2
        for name in names:
            tag = name[name.index("{") + 1 : name.index("}")]
            assert len(tag) == 32 and name.endswith("}")
            assert 0 < client.pttl(name) <= 60_000  # expires on its own
    finally:
        client.close()


def test_default_throttle_is_shared_only_for_redis(redis_store: RedisStore) -> None:
    assert isinstance(default_throttle(redis_store), SharedLoginThrottle)
    assert isinstance(default_throttle(MemoryStore()), LoginThrottle)


# -- Redis failing: wrong guesses get 503, the right secret still passes -------------
def test_the_right_secret_passes_while_the_throttle_redis_is_down() -> None:
    store = MemoryStore()
    key, secret = store.create_key(["dns"])
    remember_secret(secret)
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    app = create_app(store, login_throttle=SharedLoginThrottle(dead))

    async def run() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.5", 5000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
                form = {"grant_type": "client_credentials"}
                right = await c.post("/login", data=form, auth=(key.key_id, secret))
                wrong = await c.post("/login", data=form, auth=(key.key_id, "bgs_wrong"))
            with pytest.raises(StoreUnavailable):
                await SharedLoginThrottle(dead).awrong_guess("key_1", "192.0.2.1")
        finally:
            await dead.aclose()
        return right.status_code, wrong.status_code

    assert asyncio.run(run()) == (200, 503)


# -- two real replicas on one Redis ---------------------------------------------------
@pytest.fixture(scope="module")
def replicas(redis_server: RedisServer) -> Iterator[tuple[LiveService, LiveService]]:
    # The tests choose their source address with X-Forwarded-For from 127.0.0.1.
    args = ["--trusted-proxy", "127.0.0.1"]
    with (
        LiveService(redis_server.url, extra_args=args) as a,
        LiveService(redis_server.url, extra_args=args) as b,
    ):
        yield a, b


def login(svc: LiveService, key_id: str, secret: str, source: str) -> httpx.Response:
    return httpx.post(
        svc.base_url + "/login",
        data={"grant_type": "client_credentials"},
        auth=(key_id, secret),
        headers={"X-Forwarded-For": source},
    )


def test_two_replicas_enforce_one_login_limit_per_key_id(
    replicas: tuple[LiveService, LiveService],
) -> None:
    a, b = replicas
    key_id, secret = a.create_key(["dns"])
    # Five wrong secrets spread over both replicas, each from a fresh address.
    for i in range(5):
        r = login((a, b)[i % 2], key_id, "bgs_wrong", f"198.51.100.{i + 1}")
        assert r.status_code == 401, r.text
    for i, svc in enumerate((b, a)):
        r = login(svc, key_id, "bgs_wrong", f"198.51.100.{20 + i}")
        assert r.status_code == 429
        assert r.json()["error"] == "invalid_client"
        assert 1 <= int(r.headers["retry-after"]) <= 60
    # The right secret is never locked out, at either replica, from any address.
    for svc in (a, b):
        for source in ("198.51.100.1", "203.0.113.50"):
            assert login(svc, key_id, secret, source).status_code == 200


def test_two_replicas_enforce_one_limit_per_source(
    replicas: tuple[LiveService, LiveService],
) -> None:
    a, b = replicas
    key_id, secret = a.create_key(["dns"])
    for i in range(5):
        made_up = f"key_{i:04x}dead"
        r = login((a, b)[i % 2], made_up, "bgs_wrong", f"2001:db8:77:1::{i + 1}")
        assert r.status_code == 401
    # The same /64, at either replica: slowed; another /64 is not.
    assert login(a, "key_beef", "bgs_wrong", "2001:db8:77:1::99").status_code == 429
    assert login(b, "key_beef", "bgs_wrong", "2001:db8:77:1:1::1").status_code == 429
    assert login(b, "key_beef", "bgs_wrong", "2001:db8:77:2::1").status_code == 401
    # The right secret from the throttled /64 passes.
    assert login(b, key_id, secret, "2001:db8:77:1::5").status_code == 200


def test_two_replicas_enforce_one_panel_sign_in_limit(
    replicas: tuple[LiveService, LiveService], redis_server: RedisServer
) -> None:
    a, b = replicas
    record, password = new_account("sharedthrottle", ("dns",))
    remember_secret(password)
    store = RedisStore(redis_server.url)
    try:
        assert store.create_account(record)
    finally:
        store.close()

    def attempt(svc: LiveService, secret: str, source: str) -> httpx.Response:
        # The sign-in form's CSRF token (double-submit cookie), then the form.
        with httpx.Client(base_url=svc.base_url, headers={"X-Forwarded-For": source}) as c:
            found = re.search(r'name="csrf" value="([^"]+)"', c.get("/panel/signin").text)
            assert found is not None
            form = {"csrf": found.group(1), "account": "sharedthrottle", "password": secret}
            return c.post("/panel/signin", data=form)

    for i in range(5):
        r = attempt((a, b)[i % 2], "wrong password", f"192.0.2.{i + 1}")
        assert r.status_code == 401
    for i, svc in enumerate((b, a)):
        r = attempt(svc, "still wrong", f"192.0.2.{30 + i}")
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
    for svc in (a, b):
        assert attempt(svc, password, "192.0.2.77").status_code == 303
