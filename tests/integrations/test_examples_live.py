"""Both examples as real servers (uvicorn, gunicorn) against a live `bearerguard serve`.

Every route of docs/design.md "Examples", over both backends the environment can select
(the shared SQLite store, and RFC 7662 introspection at the live service), plus the
real peer address: a token is only good from the address that obtained it, whatever
``X-Forwarded-For`` claims.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from integration_support import (
    ExampleServer,
    RawWebSocket,
    assert_challenge,
    bearer,
    gunicorn_example,
    uvicorn_example,
)
from live_service import LiveService


@dataclass
class Keys:
    dns_vps: tuple[str, str]
    dns: tuple[str, str]
    vps: tuple[str, str]
    resource_server: tuple[str, str]


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveService, Keys]]:
    with LiveService() as svc:
        keys = Keys(
            dns_vps=svc.create_key(["dns", "vps"]),
            dns=svc.create_key(["dns"]),
            vps=svc.create_key(["vps"]),
            resource_server=svc.create_key(["introspection"], introspect=True),
        )
        yield svc, keys


def env_for(mode: str, svc: LiveService, keys: Keys) -> dict[str, str]:
    if mode == "store":
        return {"BEARERGUARD_STORE": svc.store_url}
    key_id, secret = keys.resource_server
    return {
        "BEARERGUARD_INTROSPECTION_URL": svc.base_url + "/introspect",
        "BEARERGUARD_CLIENT_ID": key_id,
        "BEARERGUARD_CLIENT_SECRET": secret,
    }


SERVERS: dict[str, Callable[[dict[str, str]], ExampleServer]] = {
    "starlette-uvicorn": uvicorn_example,
    "flask-gunicorn": gunicorn_example,
}


@pytest.fixture(params=[(s, m) for s in SERVERS for m in ("store", "introspection")], ids=str)
def example(
    request: pytest.FixtureRequest, live: tuple[LiveService, Keys]
) -> Iterator[tuple[str, ExampleServer, LiveService, Keys]]:
    name, mode = request.param
    svc, keys = live
    server = SERVERS[name](env_for(mode, svc, keys))
    try:
        yield name, server, svc, keys
    finally:
        server.stop()


def test_every_route(example: tuple[str, ExampleServer, LiveService, Keys]) -> None:
    _, server, svc, keys = example
    both = svc.token(*keys.dns_vps)
    dns = svc.token(*keys.dns)
    vps = svc.token(*keys.vps)
    with httpx.Client(base_url=server.base_url, timeout=15) as c:
        r = c.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}

        r = c.get("/whoami", headers=bearer(both))
        assert r.status_code == 200, r.text
        assert r.json() == {"key_id": keys.dns_vps[0], "apis": ["dns", "vps"]}
        r = c.get("/whoami", headers=bearer(vps))
        assert r.json() == {"key_id": keys.vps[0], "apis": ["vps"]}
        assert_challenge(c.get("/whoami"), 401, None)
        assert_challenge(c.get("/whoami", headers=bearer("not-a-token")), 401, "invalid_token")
        assert_challenge(
            c.get("/whoami", headers={"Authorization": "Bearer two words"}), 400, "invalid_request"
        )

        for path, api, allowed, refused in [
            ("/dns/zones", "dns", dns, vps),
            ("/vps/servers", "vps", vps, dns),
        ]:
            assert c.get(path, headers=bearer(allowed)).status_code == 200
            assert c.get(path, headers=bearer(both)).status_code == 200
            assert_challenge(
                c.get(path, headers=bearer(refused)), 403, "insufficient_scope", scope=api
            )
            assert_challenge(c.get(path), 401, None)


def test_token_is_bound_to_the_real_peer_address(
    example: tuple[str, ExampleServer, LiveService, Keys],
) -> None:
    _, server, svc, keys = example
    # Obtained from 127.0.0.2, used from 127.0.0.1 claiming 127.0.0.2 in X-Forwarded-For:
    # the server must not believe the header (uvicorn's default would), so: refused.
    token = svc.token(*keys.dns, "127.0.0.2")
    with httpx.Client(base_url=server.base_url, timeout=15) as c:
        r = c.get("/whoami", headers={**bearer(token), "X-Forwarded-For": "127.0.0.2"})
        assert_challenge(r, 401, "invalid_token")
    with httpx.Client(
        base_url=server.base_url,
        timeout=15,
        transport=httpx.HTTPTransport(local_address="127.0.0.2"),
    ) as c:
        assert c.get("/whoami", headers=bearer(token)).json()["key_id"] == keys.dns[0]


def test_websocket_route_on_uvicorn(live: tuple[LiveService, Keys]) -> None:
    svc, keys = live
    token = svc.token(*keys.vps)
    server = uvicorn_example(env_for("store", svc, keys))
    try:
        with RawWebSocket(server.port, "/ws", bearer(token)) as ws:
            assert ws.status == 101
            assert ws.frame() == (0x1, keys.vps[0].encode())
            opcode, payload = ws.frame()
            assert opcode == 0x8  # close, normal closure
            assert int.from_bytes(payload[:2], "big") == 1000
        for headers in ({}, bearer("not-a-token")):
            with RawWebSocket(server.port, "/ws", headers) as ws:
                # refused before accept: no upgrade, a 4xx answer
                assert ws.status != 101
                assert 400 <= ws.status < 500
    finally:
        server.stop()
