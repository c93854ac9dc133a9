"""JWTBackend's keys against a real issuer: discovery, rotation, floods, outages.

Both faces run every scenario (`face` fixture): `lookup` in threads, `alookup` on an
event loop. The backend's clock is injected, so "15 seconds later" takes no time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapter_harness import Harness
from bearerguard import BackendUnavailable, Challenge, TokenInfo
from bearerguard.backends.jwt import JWTBackend
from helpers import FakeClock
from jwt_issuer import AUDIENCE, JWTIssuer, new_key
from live_service import free_port

Lookup = Callable[[JWTBackend, list[str]], list[object]]


def _sync(backend: JWTBackend, tokens: list[str]) -> list[object]:
    def one(token: str) -> object:
        try:
            return backend.lookup(token)
        except BackendUnavailable as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, tokens))


def _async(backend: JWTBackend, tokens: list[str]) -> list[object]:
    async def run() -> list[object]:
        results = await asyncio.gather(
            *(backend.alookup(t) for t in tokens), return_exceptions=True
        )
        await asyncio.sleep(0.05)  # let a background refresh task land
        for task in list(backend._tasks):
            await task
        return list(results)

    return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> Lookup:
    return _sync if request.param == "sync" else _async


@pytest.fixture
def idp() -> Iterator[JWTIssuer]:
    with JWTIssuer() as issuer:
        yield issuer


def _backend(idp: JWTIssuer, clock: FakeClock, **options: object) -> JWTBackend:
    clock.now = idp.claims()["iat"]
    return JWTBackend(idp.issuer, AUDIENCE, clock=clock, **options)  # type: ignore[arg-type]


def test_discovery_falls_back_from_rfc8414_to_oidc(
    idp: JWTIssuer, clock: FakeClock, face: Lookup
) -> None:
    backend = _backend(idp, clock)
    [info] = face(backend, [idp.sign()])
    assert isinstance(info, TokenInfo)
    assert idp.hits["/.well-known/oauth-authorization-server"] == 1
    assert idp.hits["/.well-known/openid-configuration"] == 1
    assert idp.fetches() == 1


def test_rfc8414_metadata_is_used_when_present(clock: FakeClock, face: Lookup) -> None:
    with JWTIssuer(rfc8414=True) as idp:
        backend = _backend(idp, clock)
        assert isinstance(face(backend, [idp.sign()])[0], TokenInfo)
        assert idp.hits["/.well-known/openid-configuration"] == 0


def test_concurrent_first_requests_fetch_the_keys_once(
    idp: JWTIssuer, clock: FakeClock, face: Lookup
) -> None:
    backend = _backend(idp, clock)
    results = face(backend, [idp.sign() for _ in range(30)])
    assert all(isinstance(r, TokenInfo) for r in results)
    assert idp.fetches() == 1


def test_rotation_picks_up_a_new_key_without_restart(
    idp: JWTIssuer, clock: FakeClock, face: Lookup
) -> None:
    backend = _backend(idp, clock)
    assert isinstance(face(backend, [idp.sign()])[0], TokenInfo)
    idp.rotate("EC", "ec-2")
    clock.advance(20)  # past the refetch interval since the first fetch
    [info] = face(backend, [idp.sign(idp.claims(exp=int(clock.now) + 300))])
    assert isinstance(info, TokenInfo)
    assert idp.fetches() == 2


def test_a_flood_of_made_up_kids_costs_one_fetch_per_interval(
    idp: JWTIssuer, clock: FakeClock, face: Lookup
) -> None:
    backend = _backend(idp, clock)
    face(backend, [idp.sign()])
    assert idp.fetches() == 1
    junk = [idp.sign(key=new_key("EC", f"made-up-{i}")) for i in range(3)] * 40
    for _ in range(4):  # a minute of flooding, 15 s at a time
        clock.advance(15)
        assert face(backend, junk) == [None] * len(junk)
    assert idp.fetches() == 1 + 4
    # ... and yet a key the issuer really added is found within the interval.
    idp.rotate("RSA", "rsa-new")
    token = idp.sign(idp.claims(exp=int(clock.now) + 300))
    assert face(backend, [token]) == [None]  # the flood just spent this interval's fetch
    clock.advance(15)
    assert isinstance(face(backend, [token])[0], TokenInfo)


def test_issuer_down_at_start_then_up(clock: FakeClock, face: Lookup) -> None:
    idp = JWTIssuer()  # not started: nothing listens on its port
    backend = _backend(idp, clock, retry_interval=5)
    token = idp.sign()
    results = face(backend, [token] * 5)
    assert all(isinstance(r, BackendUnavailable) for r in results)
    idp.start()
    try:
        # Within the retry interval the backend does not try again (no hammering).
        assert isinstance(face(backend, [token])[0], BackendUnavailable)
        assert idp.fetches() == 0
        clock.advance(5)
        assert isinstance(face(backend, [token])[0], TokenInfo)
    finally:
        idp.stop()


def test_issuer_down_with_keys_cached_keeps_serving(
    idp: JWTIssuer, clock: FakeClock, face: Lookup
) -> None:
    backend = _backend(idp, clock)
    assert isinstance(face(backend, [idp.sign()])[0], TokenInfo)
    idp.stop()
    clock.advance(400)  # the keys' max-age (300 s) is over; refreshes fail
    for _ in range(3):
        token = idp.sign(idp.claims(exp=int(clock.now) + 300))
        assert isinstance(face(backend, [token])[0], TokenInfo)
        clock.advance(10)


def test_keys_are_refreshed_in_the_background_before_they_expire(
    idp: JWTIssuer, clock: FakeClock, face: Lookup
) -> None:
    backend = _backend(idp, clock)
    face(backend, [idp.sign()])
    assert idp.fetches() == 1
    clock.advance(0.8 * 300 + 1)
    old = idp.keys[0]
    idp.keys.remove(old)  # the issuer retires a key: after the refresh it is gone
    token = idp.sign(idp.claims(exp=int(clock.now) + 300), key=old)
    assert isinstance(face(backend, [token])[0], TokenInfo)  # not blocked by the refresh
    for _ in range(200):
        if backend.ring.generation == 2:
            break
        threading.Event().wait(0.01)
    assert idp.fetches() == 2
    assert face(backend, [token]) == [None]


def test_issuer_down_answers_503_through_the_middleware(clock: FakeClock) -> None:
    idp = JWTIssuer()
    for kind in ("asgi", "wsgi"):
        h = Harness(kind, JWTBackend(idp.issuer, AUDIENCE))
        try:
            r = h.get("/whoami", {"Authorization": f"Bearer {idp.sign()}"})
            assert r.status_code == 503
            assert "retry-after" in r.headers
            params = Challenge.from_header(r.headers["www-authenticate"])
            assert params["error"] == "temporarily_unavailable"
        finally:
            h.close()


def test_jwks_errors_are_unavailable_not_crashes(
    idp: JWTIssuer, clock: FakeClock, face: Lookup
) -> None:
    idp.jwks_status = 500
    backend = _backend(idp, clock)
    assert isinstance(face(backend, [idp.sign()])[0], BackendUnavailable)


@pytest.mark.parametrize(
    "options",
    [
        {"issuer": "not a url"},
        {"audience": ""},
        {"jwks_url": "ftp://x"},
        {"algorithms": ("HS256",)},
        {"algorithms": ("none",)},
        {"refetch_interval": 120},
    ],
)
def test_bad_configuration_fails_at_construction(options: dict[str, object]) -> None:
    from bearerguard import ConfigurationError

    args: dict[str, object] = {"issuer": f"http://127.0.0.1:{free_port()}", "audience": AUDIENCE}
    args.update(options)
    with pytest.raises(ConfigurationError):
        JWTBackend(**args)  # type: ignore[arg-type]


def test_a_cancelled_fetch_never_leaves_the_ring_waiting(clock: FakeClock) -> None:
    """An `alookup` cancelled mid-fetch marks the fetch failed: the next one does not
    fetch again before `retry_interval` (one connection), it answers 503 at once."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def hold() -> None:  # accept and never answer: the fetch stays in flight
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=hold, daemon=True).start()
    port = listener.getsockname()[1]
    backend = JWTBackend(
        f"http://127.0.0.1:{port}", AUDIENCE, f"http://127.0.0.1:{port}/jwks", clock=clock
    )

    async def run() -> BaseException | None:
        token = JWTIssuer().sign()
        task = asyncio.ensure_future(backend.alookup(token))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if accepted:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        try:
            await asyncio.wait_for(backend.alookup(token), 1.0)
        except BackendUnavailable as exc:
            return exc
        finally:
            await backend.aclose()
        return None

    try:
        outcome = asyncio.run(run())
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    assert isinstance(outcome, BackendUnavailable)
    assert "yet" in str(outcome)
    assert len(accepted) == 1
