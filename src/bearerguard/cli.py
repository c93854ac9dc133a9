"""The ``bearerguard`` command: run the auth service, manage API keys, run the demo.

::

    bearerguard serve [--host 127.0.0.1] [--port 8000] [--store URL] [--token-ttl S]
                      [--trusted-proxy CIDR ...] [--issuer URL] [--access-log]
                      [--rotation-grace S] [--panel-api-url URL] [--workers N]
                      [--key-cache-ttl S]
    bearerguard keys create --api NAME [--api NAME ...] [--introspect] [--json] [--store URL]
                            [--account NAME] [--name TEXT] [--admin] [--expires-in S]
    bearerguard keys list [--json] [--store URL]
    bearerguard keys revoke KEY_ID [--json] [--store URL]
    bearerguard keys rotate KEY_ID [--grace S] [--json] [--store URL]
    bearerguard accounts create NAME --api NAME [--api NAME ...] [--json] [--password-stdin]
    bearerguard accounts list|disable NAME|set-apis NAME --api NAME ... [--json] [--store URL]
    bearerguard demo ...

``--store`` defaults to ``$BEARERGUARD_STORE``, else ``sqlite:///bearerguard.db``.
Errors the user can fix (bad store URL, unreachable store, port in use) print one line
on stderr and exit with status 2.

``serve`` runs uvicorn with its own proxy-header handling off: uvicorn would otherwise
trust ``X-Forwarded-For`` from 127.0.0.1 and rewrite the peer address, and tokens would
be bound to whatever address a local client claims. ``--trusted-proxy`` is the one
place proxy trust is configured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._shell import DEFAULT_STORE, STORE, listen, one_line, redact_url, uvicorn_config
from .errors import BearerGuardError, ConfigurationError
from .stores import open_store
from .stores.accounts import (
    ADMIN_API,
    AccountStore,
    account_view,
    check_account_name,
    check_apis,
    check_key_name,
    key_view,
    new_account,
)
from .stores.base import TokenStore

__all__ = ["DEFAULT_STORE", "build_parser", "main"]

EXIT_USAGE = 2


class CLIError(Exception):
    """An error reported as one line on stderr, with exit status 2."""


def _default_store() -> str:
    return os.environ.get(STORE) or DEFAULT_STORE


def _open(url: str) -> TokenStore:
    """Open and ping the store, turning every failure into a one-line CLIError."""
    try:
        store = open_store(url)
    except ConfigurationError as exc:
        raise CLIError(one_line(exc, url)) from None
    except Exception as exc:  # a store's constructor that breaks its contract
        raise CLIError(f"cannot open store {redact_url(url)!r}: {one_line(exc, url)}") from None
    try:
        store.ping()
    except Exception as exc:
        _close_quietly(store)
        raise CLIError(f"store {redact_url(url)!r} unavailable: {one_line(exc, url)}") from None
    return store


def _close_quietly(store: TokenStore) -> None:
    # Closing after a failure (or after the work is done): the first error is reported.
    with contextlib.suppress(Exception):
        store.close()


# -- serve ----------------------------------------------------------------------------
def _listen(host: str, port: int) -> socket.socket:
    try:
        return listen(host, port)
    except socket.gaierror as exc:
        raise CLIError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    except OSError as exc:
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


_WORKER_ENV = "BEARERGUARD_SERVE_WORKER"
"""How ``serve --workers N`` hands its options to the worker processes it spawns."""


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
    from .server import create_app

    store = _open(url)
    try:
        return create_app(store, **options)
    except BearerGuardError as exc:
        _close_quietly(store)
        raise CLIError(one_line(exc)) from None


def serve_worker() -> Any:
    """One worker of ``serve --workers N`` (a uvicorn app factory, run in each process).

    Each worker opens its own store connection and has its own caches.
    """
    spec = json.loads(os.environ[_WORKER_ENV])
    _log_to_stderr(spec["log_level"])
    return _service(spec["store"], spec["options"])


def _serve(args: argparse.Namespace) -> int:
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
        _close_quietly(app.state.bearerguard.store.store)
        raise
    workers = args.workers
    if workers > 1:
        _close_quietly(app.state.bearerguard.store.store)
        # Spawned workers inherit the environment; each builds its own app and store.
        os.environ[_WORKER_ENV] = json.dumps(
            {"store": args.store, "options": options, "log_level": args.log_level}
        )
        app = "bearerguard.cli:serve_worker"
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
    log = logging.getLogger("bearerguard")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level.upper())


# -- keys -----------------------------------------------------------------------------
def _keys_create(args: argparse.Namespace) -> int:
    apis = sorted(set(args.api))
    if not all(a and not any(c.isspace() for c in a) for a in apis):
        raise CLIError("API names must be non-empty and contain no spaces")
    if ADMIN_API in apis:
        raise CLIError(f"{ADMIN_API} is the admin right: use --admin")
    if args.admin and args.account:
        raise CLIError("--admin keys belong to the operator, not to an account")
    if not apis and not args.admin and not args.account:
        raise CLIError("give at least one --api")
    try:
        name = check_key_name(args.name)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.expires_in is not None and not args.expires_in > 0:
        raise CLIError("--expires-in must be a positive number of seconds")
    store = _open(args.store)
    try:
        if args.account:
            owner = _account_store(store).get_account(args.account)
            if owner is None:
                raise CLIError(f"no such account: {args.account}")
            apis = apis or sorted(owner.apis)
            if not set(apis) <= owner.apis:
                raise CLIError(
                    f"account {args.account} may grant only: {' '.join(sorted(owner.apis))}"
                )
        if args.admin:
            apis = sorted({*apis, ADMIN_API})
        expires_at = None if args.expires_in is None else time.time() + args.expires_in
        record, secret = store.create_key(
            apis,
            introspect=args.introspect,
            account=args.account or "",
            name=name,
            expires_at=expires_at,
        )
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot create key: {one_line(exc)}") from None
    finally:
        _close_quietly(store)
    if args.json:
        print(
            json.dumps(
                {
                    "key_id": record.key_id,
                    "secret": secret,
                    "apis": sorted(record.apis),
                    "introspect": record.introspect,
                }
            )
        )
    else:
        print(f"Key ID:  {record.key_id}")
        print(f"Secret:  {secret}")
        print(f"APIs:    {' '.join(sorted(record.apis))}")
        if record.introspect:
            print("Rights:  introspect")
        print("The secret is shown only now; store it safely.")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        keys = store.list_keys()
    except Exception as exc:
        raise CLIError(f"cannot list keys: {one_line(exc)}") from None
    finally:
        _close_quietly(store)
    if args.json:
        now = time.time()
        rows = [{**key_view(k, now), "apis": sorted(k.apis)} for k in keys]
        print(json.dumps(rows))
        return 0
    if not keys:
        print("no keys")
        return 0
    print(f"{'KEY ID':<28} {'CREATED (UTC)':<20} {'INTROSPECT':<10} APIS")
    for k in keys:
        created = datetime.datetime.fromtimestamp(k.created_at, datetime.timezone.utc)
        print(
            f"{k.key_id:<28} {created:%Y-%m-%d %H:%M:%S}  "
            f"{'yes' if k.introspect else 'no':<10} {' '.join(sorted(k.apis))}"
        )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        found = store.revoke_key(args.key_id)
    except Exception as exc:
        raise CLIError(f"cannot revoke key: {one_line(exc)}") from None
    finally:
        _close_quietly(store)
    if args.json:
        print(json.dumps({"key_id": args.key_id, "revoked": found}))
    elif found:
        print(f"revoked {args.key_id} and all its tokens")
    else:
        print(f"bearerguard: no such key: {args.key_id}", file=sys.stderr)
    return 0 if found else 1


def _keys_rotate(args: argparse.Namespace) -> int:
    if not args.grace >= 0:
        raise CLIError("--grace must be a number of seconds, 0 or more")
    store = _open(args.store)
    try:
        done = _account_store(store).rotate_key(args.key_id, grace=args.grace)
    except Exception as exc:
        raise CLIError(f"cannot rotate key: {one_line(exc)}") from None
    finally:
        _close_quietly(store)
    if done is None:
        print(f"bearerguard: no such key: {args.key_id}", file=sys.stderr)
        return 1
    _, secret = done
    if args.json:
        print(json.dumps({"key_id": args.key_id, "secret": secret}))
    else:
        print(f"Key ID:  {args.key_id}")
        print(f"Secret:  {secret}")
        print(f"The previous secret keeps working for {args.grace:g} s.")
        print("The secret is shown only now; store it safely.")
    return 0


# -- accounts -------------------------------------------------------------------------
def _account_store(store: TokenStore) -> AccountStore:
    if not isinstance(store, AccountStore):
        raise CLIError("this store does not keep accounts")
    return store


def _account_apis(apis: list[str]) -> list[str]:
    try:
        return sorted(check_apis(apis))
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _accounts_create(args: argparse.Namespace) -> int:
    try:
        name = check_account_name(args.name)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    apis = _account_apis(args.api)
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < 8:
            raise CLIError("the password from stdin must have at least 8 characters")
    record, password_used = new_account(name, apis, password=password)
    store = _open(args.store)
    try:
        created = _account_store(store).create_account(record)
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot create account: {one_line(exc)}") from None
    finally:
        _close_quietly(store)
    if not created:
        raise CLIError(f"account {name} already exists")
    shown = None if args.password_stdin else password_used
    if args.json:
        print(json.dumps({"account": name, "password": shown, "apis": apis}))
    else:
        print(f"Account:  {name}")
        if shown is not None:
            print(f"Password: {shown}")
        print(f"APIs:     {' '.join(apis)}")
        if shown is not None:
            print("The password is shown only now; give it to the customer safely.")
    return 0


def _accounts_list(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        accounts = _account_store(store).list_accounts()
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot list accounts: {one_line(exc)}") from None
    finally:
        _close_quietly(store)
    if args.json:
        print(json.dumps([account_view(a) for a in accounts]))
        return 0
    if not accounts:
        print("no accounts")
        return 0
    print(f"{'ACCOUNT':<24} {'CREATED (UTC)':<20} {'STATUS':<9} APIS")
    for a in accounts:
        created = datetime.datetime.fromtimestamp(a.created_at, datetime.timezone.utc)
        status = "disabled" if a.disabled else "active"
        print(f"{a.name:<24} {created:%Y-%m-%d %H:%M:%S}  {status:<9} {' '.join(sorted(a.apis))}")
    return 0


def _accounts_change(args: argparse.Namespace) -> int:
    apis = _account_apis(args.api) if args.accounts_command == "set-apis" else None
    store = _open(args.store)
    try:
        accounts = _account_store(store)
        if apis is None:
            found = accounts.disable_account(args.name)
        else:
            found = accounts.set_account_apis(args.name, apis)
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot change account: {one_line(exc)}") from None
    finally:
        _close_quietly(store)
    if not found:
        print(f"bearerguard: no such account: {args.name}", file=sys.stderr)
        return 1
    if args.json:
        result: dict[str, object] = {"account": args.name}
        result.update({"disabled": True} if apis is None else {"apis": apis})
        print(json.dumps(result))
    elif apis is None:
        print(f"disabled {args.name}: its tokens and panel sessions are revoked")
    else:
        print(f"{args.name} may grant: {' '.join(apis)}")
    return 0


# -- demo -----------------------------------------------------------------------------
def _load_demo() -> object:
    try:
        return importlib.import_module("bearerguard.demo")
    except ModuleNotFoundError as exc:
        if exc.name == "bearerguard.demo":
            raise CLIError("the demo is not available in this installation") from None
        raise CLIError(f"the demo cannot start: missing module {exc.name}") from None


# -- parser ---------------------------------------------------------------------------
def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="memory://, sqlite:///path.db or redis://host:port/db "
        f"(default: $BEARERGUARD_STORE, else {DEFAULT_STORE})",
    )


def _store_command(
    sub: Any,
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], int],
    *positional: str,
) -> argparse.ArgumentParser:
    """A ``keys``/``accounts`` action: its positional (dest, metavar), --json, --store."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    if positional:
        dest, metavar = positional
        parser.add_argument(dest, metavar=metavar)
    parser.add_argument("--json", action="store_true")
    _add_store(parser)
    parser.set_defaults(func=func)
    return parser


def build_parser(demo: object | None = None) -> argparse.ArgumentParser:
    """The argument parser; `demo` is the loaded demo module, if the demo was asked for."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="bearerguard", description="Bearer-token auth service and key management."
    )
    parser.add_argument("--version", action="version", version=f"bearerguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the auth service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    _add_store(serve)
    serve.add_argument(
        "--token-ttl", type=float, default=300, metavar="S", help="sliding token lifetime"
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a proxy whose X-Forwarded-For is believed (repeatable)",
    )
    serve.add_argument("--issuer", default=None, metavar="URL", help="public base URL")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--rotation-grace",
        type=float,
        default=86400.0,
        metavar="S",
        help="how long a secret rotated in the panel or admin API keeps working (86400)",
    )
    serve.add_argument(
        "--panel-api-url", default=None, metavar="URL", help="the API the panel's curl lines call"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes, each with its own store connection and caches (1)",
    )
    serve.add_argument(
        "--key-cache-ttl",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds a key record is reused between store reads; revoked keys are refused "
        "within this time on every worker (1; 0: off)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(func=_serve)

    keys = sub.add_parser("keys", help="manage API keys")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = _store_command(ksub, "create", "create a key and print its secret once", _keys_create)
    create.add_argument("--api", action="append", default=[], metavar="NAME")
    create.add_argument(
        "--introspect", action="store_true", help="allow this key to call /introspect"
    )
    create.add_argument("--account", default=None, metavar="NAME", help="the key's owner")
    create.add_argument("--name", default="", metavar="TEXT", help="a name for the key")
    create.add_argument("--admin", action="store_true", help="allow this key to call /admin")
    create.add_argument("--expires-in", type=float, default=None, metavar="S")
    _store_command(ksub, "list", "list keys (never their secrets)", _keys_list)
    _store_command(
        ksub, "revoke", "delete a key and every token of it", _keys_revoke, "key_id", "KEY_ID"
    )
    rotate = _store_command(
        ksub, "rotate", "give a key a new secret, printed once", _keys_rotate, "key_id", "KEY_ID"
    )
    rotate.add_argument(
        "--grace", type=float, default=86400.0, metavar="S", help="old secret lives on (86400)"
    )

    accounts = sub.add_parser("accounts", help="manage customer accounts")
    asub = accounts.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)
    acreate = _store_command(
        asub,
        "create",
        "create an account and print its password once",
        _accounts_create,
        "name",
        "NAME",
    )
    acreate.add_argument("--api", action="append", required=True, metavar="NAME")
    acreate.add_argument("--password-stdin", action="store_true")
    _store_command(asub, "list", "list accounts", _accounts_list)
    _store_command(
        asub, "disable", "disable an account, revoking its tokens", _accounts_change, "name", "NAME"
    )
    set_apis = _store_command(
        asub, "set-apis", "set the APIs an account may grant", _accounts_change, "name", "NAME"
    )
    set_apis.add_argument("--api", action="append", required=True, metavar="NAME")

    demo_parser = sub.add_parser("demo", help="auth service plus an example API on localhost")
    add_arguments = getattr(demo, "add_arguments", None)
    if callable(add_arguments):
        add_arguments(demo_parser)
    demo_parser.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        demo = None
        command = next((a for a in args_list if not a.startswith("-")), None)
        if command == "demo":
            # Imported only when asked for: the demo pulls in more than the service.
            demo = _load_demo()
        args = build_parser(demo).parse_args(args_list)
        if args.command != "demo" and getattr(args, "store", "unset") is None:
            args.store = _default_store()
        if args.command == "demo":
            run = getattr(demo, "run", None)
            if not callable(run):
                raise CLIError("the demo module has no run(args)")
            return int(run(args))
        status: int = args.func(args)
        return status
    except CLIError as exc:
        print(f"bearerguard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        # `serve` and `demo` need the server extra (Starlette, uvicorn); say so in one line.
        if exc.name is None or exc.name.partition(".")[0] == "bearerguard":
            raise
        print(
            f"bearerguard: error: this command needs the server extra (no module "
            f"{exc.name!r}): pip install 'bearerguard[server]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
