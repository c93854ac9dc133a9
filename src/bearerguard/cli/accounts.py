"""``bearerguard accounts``: create, list, disable customer accounts and set their APIs."""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from .._shell import one_line
from ..stores.accounts import account_view, check_account_name, check_apis, new_account
from .common import CLIError, account_store, close_quietly, open_checked

__all__ = ["change_account", "create_account", "list_accounts"]


def _account_apis(apis: list[str]) -> list[str]:
    try:
        return sorted(check_apis(apis))
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def create_account(args: argparse.Namespace) -> int:
    """``accounts create``: make an account, its password printed once unless given."""
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
    store = open_checked(args.store)
    try:
        created = account_store(store).create_account(record)
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot create account: {one_line(exc)}") from None
    finally:
        close_quietly(store)
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


def list_accounts(args: argparse.Namespace) -> int:
    """``accounts list``: print the accounts; return the exit status."""
    store = open_checked(args.store)
    try:
        accounts = account_store(store).list_accounts()
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot list accounts: {one_line(exc)}") from None
    finally:
        close_quietly(store)
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


def change_account(args: argparse.Namespace) -> int:
    """``accounts disable`` and ``set-apis``: 1 if there was no such account."""
    apis = _account_apis(args.api) if args.accounts_command == "set-apis" else None
    store = open_checked(args.store)
    try:
        accounts = account_store(store)
        if apis is None:
            found = accounts.disable_account(args.name)
        else:
            found = accounts.set_account_apis(args.name, apis)
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(f"cannot change account: {one_line(exc)}") from None
    finally:
        close_quietly(store)
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
