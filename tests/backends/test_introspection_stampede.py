"""G4 over introspection: many concurrent requests, one fresh token, one call (counted
on the server side, by a real socket server). G4 is defined in docs/design.md."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from introspection_support import Harness, ScriptedServer, Tokens, new_token

from bearerguard.backends import IntrospectionBackend


def test_100_concurrent_asgi_requests_make_one_introspection_call(
    scripted: ScriptedServer, tokens: Tokens, make_backend: Callable[..., IntrospectionBackend]
) -> None:
    scripted.mode = "slow"
    scripted.delay = 0.3  # every request arrives while the one call is out
    tok = tokens.add(new_token(), client_id="key_a", scope="dns", ip="127.0.0.1", ttl=300)
    h = Harness("asgi", make_backend(scripted.url), api="dns")
    try:

        async def main() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=h.mw, client=("127.0.0.1", 40000))
            headers = {"Authorization": f"Bearer {tok}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await asyncio.gather(
                    *(c.get("/dns/zones", headers=headers) for _ in range(100))
                )

        responses = h.run(main())
    finally:
        h.close()
    assert [r.status_code for r in responses] == [200] * 100
    assert scripted.requests == 1


def test_50_concurrent_wsgi_requests_make_one_introspection_call(
    scripted: ScriptedServer, tokens: Tokens, make_backend: Callable[..., IntrospectionBackend]
) -> None:
    scripted.mode = "slow"
    scripted.delay = 1.0
    tok = tokens.add(new_token(), client_id="key_a", scope="dns", ip="127.0.0.1", ttl=300)
    h = Harness("wsgi", make_backend(scripted.url), api="dns")
    try:
        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(lambda _: h.get("/dns/zones", tok).status_code, range(50)))
    finally:
        h.close()
    assert statuses == [200] * 50
    assert scripted.requests == 1
