"""What the command line, the demo and `config.from_env` share: names, messages, sockets.

One copy of each: the ``BEARERGUARD_*`` variable names, the default store, the store-URL
redaction (a store URL's password is never echoed), the one-line error message, the
listening socket and the uvicorn settings (docs/design.md R11: ``proxy_headers`` off).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

DEFAULT_STORE = "sqlite:///bearerguard.db"

INTROSPECTION_URL = "BEARERGUARD_INTROSPECTION_URL"
CLIENT_ID = "BEARERGUARD_CLIENT_ID"
CLIENT_SECRET = "BEARERGUARD_CLIENT_SECRET"  # noqa: S105  (a variable name)
STORE = "BEARERGUARD_STORE"
TRUSTED_PROXIES = "BEARERGUARD_TRUSTED_PROXIES"
JWT_ISSUER = "BEARERGUARD_JWT_ISSUER"
JWKS_URL = "BEARERGUARD_JWKS_URL"
AUDIENCE = "BEARERGUARD_AUDIENCE"
RESOURCE = "BEARERGUARD_RESOURCE"
TOKEN_FORMAT = "BEARERGUARD_TOKEN_FORMAT"  # noqa: S105  (a variable name)
RATE_LIMIT = "BEARERGUARD_RATE_LIMIT"


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """(scheme, userinfo, rest after the last ``@``), or None when there is no userinfo."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    # A path (sqlite:////a@b.db) is not userinfo. The last "@" counts, and "/", "?" or
    # "#" inside an unencoded password do not hide it (urlsplit would miss those).
    if not (sep and at) or userinfo.startswith("/"):
        return None
    return scheme, userinfo, tail


def redact_url(url: str) -> str:
    """`url` with any password replaced by ``***`` (store URLs may carry one)."""
    parts = _userinfo(url)
    if parts is None or ":" not in parts[1]:
        return url
    scheme, userinfo, tail = parts
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{tail}"


def one_line(exc: BaseException, url: str | None = None) -> str:
    """`exc` as one short line; with `url`, its password is blanked wherever it appears."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if url is not None:
        # A store's own message may quote its URL, password included.
        text = text.replace(url, redact_url(url))
        parts = _userinfo(url)
        password = parts[1].partition(":")[2] if parts is not None else ""
        if password:
            text = text.replace(password, "***")
    return text[:300]


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, so "address in use" is a clean error.

    Raises `OSError` (`socket.gaierror` when `host` does not resolve).
    """
    if not 0 <= port <= 65535:
        raise OSError(errno.EINVAL, "not a port number")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Not SO_REUSEPORT: a second server on the same port must fail, not share it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(app: Any, *, access_log: bool, log_level: str, workers: int = 1) -> Any:
    """The uvicorn settings of every server bearerguard runs itself.

    With `workers` above 1, `app` is the import string of an app factory.
    """
    import uvicorn

    return uvicorn.Config(
        app,
        # docs/design.md R11: never let uvicorn rewrite the peer address from
        # X-Forwarded-For, or tokens would be bound to whatever a local client claims;
        # trusted proxies are configured with --trusted-proxy only.
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        access_log=access_log,
        lifespan="on",
        log_level=log_level,
        workers=workers,
        factory=workers > 1,
    )
