"""``bearerguard serve``: the auth service under uvicorn, in one process or ``--workers N``.

uvicorn runs with its own proxy-header handling off: it would otherwise trust
``X-Forwarded-For`` from 127.0.0.1 and rewrite the peer address, and tokens would be
bound to whatever address a local client claims. ``--trusted-proxy`` is the one place
proxy trust is configured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from typing import Any

from .._shell import listen, one_line, redact_url, uvicorn_config
from ..errors import BearerGuardError
from .common import CLIError, close_quietly, open_checked

__all__ = ["run", "serve_worker"]

_WORKER_ENV = "BEARERGUARD_SERVE_WORKER"
"""How ``serve --workers N`` hands its options to the worker processes it spawns."""

_WORKER_FACTORY = "bearerguard.cli:serve_worker"
"""uvicorn's import string for `serve_worker` (the public path, kept stable)."""


def _listen(host: str, port: int) -> socket.socket:
    try:
        return listen(host, port)
    except socket.gaierror as exc:
        raise CLIError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    except OSError as exc:
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _service_options(args: argparse.Namespace) -> dict[str, Any]:
    """`create_app`'s options from the ``serve`` arguments (JSON-safe, for workers too)."""
    return {
        "token_ttl": args.token_ttl,
        "trusted_proxies": list(args.trusted_proxy),
        "issuer": args.issuer,
        "close_store": True,
        "rotation_grace": args.rotation_grace,
        "panel_api_url": args.panel_api_url,
        "key_cache_ttl": args.key_cache_ttl,
    }


def _service(url: str, options: dict[str, Any]) -> Any:
    """The auth service over a store opened from `url` (closed again if that fails)."""
    from ..server import create_app

    store = open_checked(url)
    try:
        return create_app(store, **options)
    except BearerGuardError as exc:
        close_quietly(store)
        raise CLIError(one_line(exc)) from None


def serve_worker() -> Any:
    """One worker of ``serve --workers N`` (a uvicorn app factory, run in each process).

    Each worker opens its own store connection and has its own caches.
    """
    spec = json.loads(os.environ[_WORKER_ENV])
    _log_to_stderr(spec["log_level"])
    return _service(spec["store"], spec["options"])


def run(args: argparse.Namespace) -> int:
    """Run ``bearerguard serve`` with the parsed `args`; return the exit status."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if not args.token_ttl > 0:
        raise CLIError("--token-ttl must be a positive number of seconds")
    if args.workers < 1:
        raise CLIError("--workers must be 1 or more")
    options = _service_options(args)
    # Built here even with workers: a bad option or an unreachable store fails at once,
    # with one line, before any process is spawned.
    app = _service(args.store, options)
    try:
        sock = _listen(args.host, args.port)
    except CLIError:
        close_quietly(app.state.bearerguard.store.store)
        raise
    workers = args.workers
    if workers > 1:
        close_quietly(app.state.bearerguard.store.store)
        # Spawned workers inherit the environment; each builds its own app and store.
        os.environ[_WORKER_ENV] = json.dumps(
            {"store": args.store, "options": options, "log_level": args.log_level}
        )
        app = _WORKER_FACTORY
    config = uvicorn_config(
        app, access_log=args.access_log, log_level=args.log_level, workers=workers
    )
    _log_to_stderr(args.log_level)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"bearerguard: auth service on http://{shown}:{port} "
        f"(store {redact_url(args.store)}, token TTL {args.token_ttl:g} s, "
        f"{workers} worker{'s' if workers > 1 else ''})",
        file=sys.stderr,
        flush=True,
    )
    try:
        if workers > 1:
            # SIGTERM/SIGINT to this process: every worker drains and stops.
            Multiprocess(config, sockets=[sock]).run()
            return 0
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


def _log_to_stderr(level: str) -> None:
    """Show the service's own log lines (token fingerprints, never tokens) like uvicorn's."""
    # The service's lines name no thread, process or caller: skip gathering them for
    # every record (the logging HOWTO's "Optimization"; a login logs one line).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    log = logging.getLogger("bearerguard")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level.upper())
