"""An MCP server (the `mcp` package's streamable HTTP app) guarded by bearerguard.

MCP requires resource servers to publish RFC 9728 metadata and to check the token's
audience (RFC 8707). Here that is two middleware options: with ``BEARERGUARD_RESOURCE``
set, an MCP client without a token gets 401 with ``resource_metadata="…"`` in the
challenge, reads ``/.well-known/oauth-protected-resource/mcp`` and learns which
authorization server to ask. Configured from the environment like the other examples
(see ``bearerguard.config.from_env``)::

    BEARERGUARD_RESOURCE=http://127.0.0.1:8001/mcp        # this server's MCP endpoint
    BEARERGUARD_STORE=sqlite:///bearerguard.db            # tokens of `bearerguard serve`
    # or introspection (BEARERGUARD_INTROSPECTION_URL, _CLIENT_ID, _CLIENT_SECRET),
    # or an identity provider's JWTs: BEARERGUARD_JWT_ISSUER (+ BEARERGUARD_AUDIENCE)

Run it from the repository root with ``uvicorn --app-dir examples/mcp_app app:app
--port 8001``. Routes: ``GET /health`` (public), ``/mcp`` (MCP over streamable HTTP;
tools ``whoami`` and ``list_zones``, the latter needs the API ``dns``).
"""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse

from bearerguard import BearerGuardMiddleware
from bearerguard.config import from_env

settings = from_env()
server = MCPServer("bearerguard-example")


def _identity(ctx: Context) -> object:
    # The middleware put the caller's Identity into the ASGI scope.
    request = ctx.request_context.request
    return None if request is None else request.scope.get("bearerguard")


@server.tool()
def whoami(ctx: Context) -> dict[str, object]:
    """The API key behind this session's token and the APIs it may use."""
    ident = _identity(ctx)
    return {
        "key_id": getattr(ident, "key_id", None),
        "apis": sorted(getattr(ident, "apis", ())),
    }


@server.tool()
def list_zones(ctx: Context) -> list[str]:
    """The DNS zones (needs the API ``dns``)."""
    ident = _identity(ctx)
    if "dns" not in getattr(ident, "apis", ()):
        raise PermissionError("this API key may not use the dns API")
    return ["example.com", "example.org"]


@server.custom_route("/health", methods=["GET"])
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = BearerGuardMiddleware(
    server.streamable_http_app(streamable_http_path="/mcp"),
    backend=settings.backend,
    public_paths=["/health"],
    **settings.options,
)
