"""Bounded load through both examples, under uvicorn and under gunicorn with workers.

N client threads send requests with a mix of tokens (valid, wrong API, bound to another
address, revoked, unknown, none, malformed); every answer is checked against the status
that is right for its token. Throughput and backend calls per request are recorded,
not asserted.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import pytest
from reliability_support import (
    Hammer,
    Planned,
    bearer,
    gunicorn_workers,
    record,
    revoke,
    scaled,
    token_for,
)

from bearerguard.stores import open_store
from helpers import remember_secret
from integration_support import ExampleServer, uvicorn_example
from live_service import LiveService

_INTROSPECT_LINE = re.compile(r'"POST /introspect HTTP/1\.1" 200')

SERVERS: dict[str, Callable[[dict[str, str]], ExampleServer]] = {
    "uvicorn-starlette": uvicorn_example,
    "gunicorn-flask-2-workers": gunicorn_workers,
}


@pytest.mark.parametrize("backend", ["introspection", "sqlite-store"])
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_load_zero_wrong_answers(server: str, backend: str) -> None:
    with LiveService(extra_args=["--access-log"]) as svc:
        store = open_store(svc.store_url)
        try:
            dns, dns_secret = store.create_key(["dns"])
            vps, vps_secret = store.create_key(["vps"])
            rs, rs_secret = store.create_key(["dns"], introspect=True)
        finally:
            store.close()
        for s in (dns_secret, vps_secret, rs_secret):
            remember_secret(s)
        m = scaled(8, 64)  # valid tokens
        valid = [token_for(svc.base_url, dns.key_id, dns_secret) for _ in range(m)]
        wrong_api = token_for(svc.base_url, vps.key_id, vps_secret)
        # Obtained from 127.0.0.2: bound to that address, refused from 127.0.0.1.
        other_ip = token_for(svc.base_url, dns.key_id, dns_secret, source="127.0.0.2")
        revoked = token_for(svc.base_url, dns.key_id, dns_secret)
        assert revoke(svc.base_url, dns.key_id, dns_secret, revoked).status_code == 200
        unknown = [remember_secret(secrets.token_urlsafe(32)) for _ in range(m)]
        plan = [
            Planned(f"valid{i}", "/dns/zones", bearer(t), frozenset({200}))
            for i, t in enumerate(valid)
        ]
        plan += [
            Planned(f"unknown{i}", "/dns/zones", bearer(t), frozenset({401}))
            for i, t in enumerate(unknown)
        ]
        plan += [
            Planned("whoami", "/whoami", bearer(valid[0]), frozenset({200})),
            Planned("wrong_api", "/dns/zones", bearer(wrong_api), frozenset({403})),
            Planned("vps_ok", "/vps/servers", bearer(wrong_api), frozenset({200})),
            Planned("wrong_ip", "/dns/zones", bearer(other_ip), frozenset({401})),
            Planned("right_ip", "/dns/zones", bearer(other_ip), frozenset({200}), "127.0.0.2"),
            Planned("revoked", "/dns/zones", bearer(revoked), frozenset({401})),
            Planned("none", "/dns/zones", {}, frozenset({401})),
            Planned(
                "basic", "/dns/zones", {"Authorization": "Basic Zm9vOmJhcg=="}, frozenset({401})
            ),
            Planned("malformed", "/dns/zones", {"Authorization": "Bearer ab cd"}, frozenset({400})),
            Planned("health", "/health", {}, frozenset({200})),
        ]
        if backend == "introspection":
            env = {
                "BEARERGUARD_INTROSPECTION_URL": svc.base_url + "/introspect",
                "BEARERGUARD_CLIENT_ID": rs.key_id,
                "BEARERGUARD_CLIENT_SECRET": rs_secret,
            }
        else:
            env = {"BEARERGUARD_STORE": svc.store_url}
        app = SERVERS[server](env)
        try:
            clients = scaled(8, 16)
            result = Hammer(app.base_url, plan, clients=clients).run(scaled(2000, 40000))
        finally:
            app.stop()
    wrong = result.wrong(plan)
    assert not wrong, wrong[:10]
    calls = len(_INTROSPECT_LINE.findall(svc.output)) if backend == "introspection" else None
    record(
        f"load.{server}.{backend}",
        requests=result.total,
        clients=clients,
        tokens=len(plan),
        seconds=round(result.elapsed, 2),
        rps=round(result.total / result.elapsed),
        backend_calls=calls,
        backend_calls_per_request=None if calls is None else round(calls / result.total, 4),
        wrong=len(wrong),
    )
