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

This module is the parser and the dispatch. Each command is in a module of its own:
`bearerguard.cli.serve` (the auth service under uvicorn), `bearerguard.cli.keys`,
`bearerguard.cli.accounts`, and `bearerguard.cli.common` (the one-line error and
opening the store), which they share.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._shell import DEFAULT_STORE
from . import accounts, keys, serve
from .common import CLIError, default_store
from .serve import serve_worker

__all__ = ["CLIError", "DEFAULT_STORE", "build_parser", "main", "serve_worker"]

EXIT_USAGE = 2


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
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="bearerguard", description="Bearer-token auth service and key management."
    )
    parser.add_argument("--version", action="version", version=f"bearerguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve_parser = sub.add_parser("serve", help="run the auth service")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    _add_store(serve_parser)
    serve_parser.add_argument(
        "--token-ttl", type=float, default=300, metavar="S", help="sliding token lifetime"
    )
    serve_parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a proxy whose X-Forwarded-For is believed (repeatable)",
    )
    serve_parser.add_argument("--issuer", default=None, metavar="URL", help="public base URL")
    serve_parser.add_argument("--access-log", action="store_true", help="log every request")
    serve_parser.add_argument(
        "--rotation-grace",
        type=float,
        default=86400.0,
        metavar="S",
        help="how long a secret rotated in the panel or admin API keeps working (86400)",
    )
    serve_parser.add_argument(
        "--panel-api-url", default=None, metavar="URL", help="the API the panel's curl lines call"
    )
    serve_parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes, each with its own store connection and caches (1)",
    )
    serve_parser.add_argument(
        "--key-cache-ttl",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds a key record is reused between store reads; revoked keys are refused "
        "within this time on every worker (1; 0: off)",
    )
    serve_parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve_parser.set_defaults(func=serve.run)

    keys_parser = sub.add_parser("keys", help="manage API keys")
    ksub = keys_parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = _store_command(
        ksub, "create", "create a key and print its secret once", keys.create_key
    )
    create.add_argument("--api", action="append", default=[], metavar="NAME")
    create.add_argument(
        "--introspect", action="store_true", help="allow this key to call /introspect"
    )
    create.add_argument("--account", default=None, metavar="NAME", help="the key's owner")
    create.add_argument("--name", default="", metavar="TEXT", help="a name for the key")
    create.add_argument("--admin", action="store_true", help="allow this key to call /admin")
    create.add_argument("--expires-in", type=float, default=None, metavar="S")
    _store_command(ksub, "list", "list keys (never their secrets)", keys.list_keys)
    _store_command(
        ksub, "revoke", "delete a key and every token of it", keys.revoke_key, "key_id", "KEY_ID"
    )
    rotate = _store_command(
        ksub, "rotate", "give a key a new secret, printed once", keys.rotate_key, "key_id", "KEY_ID"
    )
    rotate.add_argument(
        "--grace", type=float, default=86400.0, metavar="S", help="old secret lives on (86400)"
    )

    accounts_parser = sub.add_parser("accounts", help="manage customer accounts")
    asub = accounts_parser.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)
    acreate = _store_command(
        asub,
        "create",
        "create an account and print its password once",
        accounts.create_account,
        "name",
        "NAME",
    )
    acreate.add_argument("--api", action="append", required=True, metavar="NAME")
    acreate.add_argument("--password-stdin", action="store_true")
    _store_command(asub, "list", "list accounts", accounts.list_accounts)
    _store_command(
        asub,
        "disable",
        "disable an account, revoking its tokens",
        accounts.change_account,
        "name",
        "NAME",
    )
    set_apis = _store_command(
        asub,
        "set-apis",
        "set the APIs an account may grant",
        accounts.change_account,
        "name",
        "NAME",
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
            args.store = default_store()
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
