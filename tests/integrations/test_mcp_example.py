"""examples/mcp_app end to end: uvicorn, a live `bearerguard serve`, the real `mcp` client.

Without a token the MCP client's request is refused with 401 whose challenge names the
RFC 9728 metadata, which names the authorization server; with a token from ``/login``
the client lists the tools and calls one. Tokens come from the live service; the
example reads its SQLite store (``BEARERGUARD_STORE``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth.utils import extract_resource_metadata_from_www_auth
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from bearerguard import Challenge
from helpers import remember_secret
from integration_support import EXAMPLES, ExampleServer, free_port
from live_service import LiveService


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LiveService, ExampleServer, str]]:
    with LiveService() as svc:
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        cmd = [
            sys.executable, "-m", "uvicorn", "app:app",
            "--app-dir", str(EXAMPLES / "mcp_app"),
            "--host", "127.0.0.1", "--port", str(port),
            "--no-proxy-headers",
        ]  # fmt: skip
        server = ExampleServer(
            cmd, port, {"BEARERGUARD_STORE": svc.store_url, "BEARERGUARD_RESOURCE": resource}
        )
        try:
            yield svc, server, resource
        finally:
            server.stop()


def _token(svc: LiveService, apis: list[str]) -> str:
    key = svc.create_key(apis)
    r = httpx.post(
        svc.base_url + "/login", data={"grant_type": "client_credentials"}, auth=key, timeout=10
    )
    assert r.status_code == 200, r.text
    return remember_secret(r.json()["access_token"])


async def _session(url: str, headers: dict[str, str], seen: list[httpx2.Response]) -> list[object]:
    async def record(response: httpx2.Response) -> None:
        seen.append(response)

    async with httpx2.AsyncClient(
        headers=headers, event_hooks={"response": [record]}, timeout=10
    ) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            tools = await client.list_tools()
            who = await client.call_tool("whoami", {})
            zones = await client.call_tool("list_zones", {})
            return [tools, who, zones]


def test_mcp_client_without_token_is_pointed_at_the_metadata(
    served: tuple[LiveService, ExampleServer, str],
) -> None:
    _, server, resource = served
    seen: list[httpx2.Response] = []
    with pytest.RaisesGroup(MCPError, flatten_subgroups=True):
        anyio.run(_session, resource, {}, seen)
    refused = [r for r in seen if r.status_code == 401]
    assert refused, [r.status_code for r in seen]
    # The mcp client's own parser finds the metadata URL in our challenge.
    url = extract_resource_metadata_from_www_auth(refused[0])
    assert url == f"{server.base_url}/.well-known/oauth-protected-resource/mcp"
    assert Challenge.from_header(refused[0].headers["www-authenticate"])["realm"] == "api"
    doc = httpx.get(url).json()
    assert doc["resource"] == resource
    assert doc["bearer_methods_supported"] == ["header"]
    assert doc["authorization_servers"] == []  # the store backend names no issuer


def test_mcp_client_with_token_lists_and_calls_tools(
    served: tuple[LiveService, ExampleServer, str],
) -> None:
    svc, _, resource = served
    token = _token(svc, ["dns"])
    seen: list[httpx2.Response] = []
    tools, who, zones = anyio.run(_session, resource, {"Authorization": f"Bearer {token}"}, seen)
    assert {t.name for t in tools.tools} == {"whoami", "list_zones"}  # type: ignore[attr-defined]
    assert who.structured_content["apis"] == ["dns"]  # type: ignore[attr-defined]
    assert not zones.is_error  # type: ignore[attr-defined]
    assert "example.com" in str(zones.content)  # type: ignore[attr-defined]
    assert all(r.status_code < 400 for r in seen)


def test_mcp_tool_checks_the_api(served: tuple[LiveService, ExampleServer, str]) -> None:
    svc, _, resource = served
    token = _token(svc, ["vps"])
    _, who, zones = anyio.run(_session, resource, {"Authorization": f"Bearer {token}"}, [])
    assert who.structured_content["apis"] == ["vps"]  # type: ignore[attr-defined]
    assert zones.is_error  # type: ignore[attr-defined]
