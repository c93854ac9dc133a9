"""``bearerguard demo``: the auth service and a protected API on localhost, one command.

Starts, in one process on one event loop, two uvicorn servers on 127.0.0.1:

- the auth service (what ``bearerguard serve`` runs) on ``--auth-port`` (8000), and
- the Starlette example (``examples/starlette_app/app.py``) on ``--api-port`` (8001),
  configured as its README says: ``BEARERGUARD_STORE`` pointing at the same store,

over an embedded SQLite store (``--store``, default ``sqlite:///bearerguard-demo.db``;
``$BEARERGUARD_STORE`` is deliberately not used: the demo must not write demo keys into
a real store). A demo key with APIs ``dns`` and ``vps`` is created on start and the
curl + jq lines of the auth service's documentation are printed, ready to paste. On
exit the demo key is revoked, tokens and all, so runs do not pile up valid keys.
Ctrl-C (SIGINT) or SIGTERM stops both servers cleanly (exit status 0). A port already
in use is one line on stderr and exit status 2.

Neither server rewrites the peer address from ``X-Forwarded-For`` (uvicorn's
``proxy_headers`` is off): tokens are bound to the address curl really connects from.

The CLI calls `add_arguments` to fill the ``demo`` sub-parser and `run` to run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib.util
import os
import shlex
import signal
import socket
import sys
from collections.abc import Generator
from pathlib import Path
from types import ModuleType
from typing import Any

from ._shell import (
    CLIENT_ID,
    CLIENT_SECRET,
    INTROSPECTION_URL,
    STORE,
    TRUSTED_PROXIES,
    listen,
    one_line,
    redact_url,
    uvicorn_config,
)
from .errors import BearerGuardError

__all__ = ["DEMO_APIS", "DEMO_STORE", "add_arguments", "run"]

DEMO_STORE = "sqlite:///bearerguard-demo.db"
DEMO_APIS = ("dns", "vps")
HOST = "127.0.0.1"
EXIT_USAGE = 2

_EXAMPLE = Path("examples") / "starlette_app" / "app.py"


class DemoError(Exception):
    """Reported as one line on stderr, exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to `parser` (the ``demo`` sub-parser)."""
    parser.add_argument(
        "--auth-port", type=int, default=8000, metavar="PORT", help="auth service port (8000)"
    )
    parser.add_argument(
        "--api-port", type=int, default=8001, metavar="PORT", help="example API port (8001)"
    )
    parser.add_argument(
        "--store",
        default=DEMO_STORE,
        metavar="URL",
        help=f"store of the demo (default {DEMO_STORE}; $BEARERGUARD_STORE is not used)",
    )
    parser.add_argument(
        "--token-ttl", type=float, default=300, metavar="S", help="sliding token lifetime (300)"
    )
    parser.add_argument(
        "--example",
        default=None,
        metavar="PATH",
        help=f"the example app file (default: {_EXAMPLE} of the source checkout)",
    )


def _listen(port: int, what: str, flag: str) -> socket.socket:
    if not 0 <= port <= 65535:
        raise DemoError(f"{flag} {port}: not a port number")
    try:
        return listen(HOST, port)
    except OSError as exc:
        in_use = exc.errno == errno.EADDRINUSE
        reason = "is already in use" if in_use else f"cannot be used: {exc.strerror}"
        raise DemoError(
            f"port {port} for the {what} {reason} (choose another with {flag} PORT)"
        ) from None


def _find_example(path: str | None) -> Path:
    if path is not None:
        candidates = [Path(path)]
    else:
        # A source checkout (editable install) has examples/ two levels above src/.
        candidates = [Path.cwd() / _EXAMPLE, Path(__file__).resolve().parents[2] / _EXAMPLE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DemoError(
        f"cannot find {_EXAMPLE}: run the demo from a source checkout or pass --example PATH"
    )


def _load_example(path: Path, store_url: str) -> ModuleType:
    """Import the example app configured as its README says (``BEARERGUARD_STORE``)."""
    # The demo always runs over its own store: whatever the shell says about
    # introspection or proxies is not for the demo.
    for name in (INTROSPECTION_URL, CLIENT_ID, CLIENT_SECRET, TRUSTED_PROXIES):
        os.environ.pop(name, None)
    os.environ[STORE] = store_url
    spec = importlib.util.spec_from_file_location("bearerguard_demo_example", path)
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BearerGuardError as exc:
        raise DemoError(f"the example app cannot start: {one_line(exc)}") from None
    if not callable(getattr(module, "app", None)):
        raise DemoError(f"{path} has no ASGI app named 'app'")
    return module


def instructions(key_id: str, secret: str, auth_url: str, api_url: str) -> str:
    """The lines a newcomer pastes (the auth service documentation's curl + jq flow)."""
    return "\n".join(
        [
            f"KEY_ID={shlex.quote(key_id)}",
            f"SECRET={shlex.quote(secret)}",
            "TOKEN=$(curl -s -d grant_type=client_credentials "
            f'-u "$KEY_ID:$SECRET" {auth_url}/login | jq -r .access_token)',
            f'curl -s -H "Authorization: Bearer $TOKEN" {api_url}/whoami',
        ]
    )


def _demo_account(store: Any) -> tuple[str, str]:
    """A fresh demo account (``demo-…``) that may grant the demo APIs, and its password."""
    import secrets

    from .stores.accounts import new_account

    record, password = new_account(f"demo-{secrets.token_hex(3)}", DEMO_APIS)
    store.create_account(record)
    return record.name, password


def _server_class() -> type[Any]:
    import uvicorn

    class _Server(uvicorn.Server):
        # Two servers share one process: the demo handles SIGINT/SIGTERM itself and
        # tells both to stop (uvicorn's own handling would re-raise the signal).
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    return _Server


def _config(app: Any) -> Any:
    return uvicorn_config(app, access_log=False, log_level="warning")


async def _serve(servers: list[Any], sockets: list[socket.socket], banner: str) -> bool:
    loop = asyncio.get_running_loop()

    def stop(*_: object) -> None:
        for server in servers:
            server.should_exit = True

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            signal.signal(sig, stop)
    tasks = [
        asyncio.ensure_future(server.serve(sockets=[sock]))
        for server, sock in zip(servers, sockets, strict=True)
    ]
    try:
        while not all(s.started for s in servers) and not any(t.done() for t in tasks):
            await asyncio.sleep(0.05)
        if all(s.started for s in servers):
            print(banner, flush=True)
        else:
            stop()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()  # one server ended (a failure, or a signal): end the other too
        await asyncio.gather(*tasks, return_exceptions=True)
        return all(s.started for s in servers) and all(
            t.exception() is None for t in tasks if not t.cancelled()
        )
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    """Run the demo until SIGINT/SIGTERM; return the exit status (0 after a clean stop)."""
    try:
        return _run(args)
    except DemoError as exc:
        print(f"bearerguard demo: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from .server import create_app
    from .stores import open_store

    if not args.token_ttl > 0:
        raise DemoError("--token-ttl must be a positive number of seconds")
    example = _find_example(args.example)
    sockets: list[socket.socket] = []
    store: Any = None
    demo_key: str | None = None
    demo_account: str | None = None
    try:
        sockets.append(_listen(args.auth_port, "auth service", "--auth-port"))
        sockets.append(_listen(args.api_port, "example API", "--api-port"))
        try:
            store = open_store(args.store)
            store.ping()
        except BearerGuardError as exc:
            raise DemoError(
                f"store {redact_url(args.store)!r}: {one_line(exc, args.store)}"
            ) from None
        module = _load_example(example, args.store)
        record, secret = store.create_key(list(DEMO_APIS))
        demo_key = record.key_id
        account, password = _demo_account(store)
        demo_account = account
        auth_port = sockets[0].getsockname()[1]
        api_port = sockets[1].getsockname()[1]
        auth_url = f"http://{HOST}:{auth_port}"
        api_url = f"http://{HOST}:{api_port}"
        # The store stays ours: on exit the demo key is revoked and the demo account
        # disabled (with their tokens), so runs do not pile up valid keys; then the store
        # is closed.
        auth_app = create_app(store, token_ttl=args.token_ttl, panel_api_url=api_url + "/whoami")
        banner = "\n".join(
            [
                "bearerguard demo is running:",
                f"  auth service  {auth_url}   (bearerguard serve, store {redact_url(args.store)})",
                f"  example API   {api_url}   ({example})",
                f"Demo key with APIs {' and '.join(DEMO_APIS)} (the secret is shown only now).",
                "Paste these lines into another terminal (they need curl and jq):",
                "",
                instructions(record.key_id, secret, auth_url, api_url),
                "",
                f"Also try {api_url}/dns/zones, {api_url}/vps/servers and {api_url}/health.",
                "",
                f"Customer control panel: {auth_url}/panel/",
                f"  account {account}, password {password} (shown only now)",
                "Press Ctrl-C to stop.",
            ]
        )
        server_cls = _server_class()
        servers = [server_cls(_config(auth_app)), server_cls(_config(module.app))]
        ok = asyncio.run(_serve(servers, sockets, banner))
        print("bearerguard demo: stopped.", flush=True)
        return 0 if ok else 1
    finally:
        for sock in sockets:
            sock.close()
        if store is not None:
            if demo_key is not None:
                try:
                    store.revoke_key(demo_key)
                    print(f"bearerguard demo: demo key {demo_key} revoked.", flush=True)
                except Exception as exc:
                    print(
                        f"bearerguard demo: could not revoke demo key {demo_key}: {one_line(exc)}",
                        file=sys.stderr,
                        flush=True,
                    )
            if demo_account is not None:
                with contextlib.suppress(Exception):
                    store.disable_account(demo_account)
            with contextlib.suppress(Exception):
                store.close()
