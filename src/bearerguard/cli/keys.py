"""``bearerguard keys``: create, list, revoke and rotate API keys in the store.

A secret is printed once, when it is made; listings never show one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

from .._shell import one_line
from ..stores.accounts import ADMIN_API, check_key_name, key_view
from .common import CLIError, account_store, close_quietly, open_checked

__all__ = ["create_key", "list_keys", "revoke_key", "rotate_key"]


def create_key(args: argparse.Namespace) -> int:
    """``keys create``: make a key and print its secret once; return the exit status."""
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
    store = open_checked(args.store)
    try:
        if args.account:
            owner = account_store(store).get_account(args.account)
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
        close_quietly(store)
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


def list_keys(args: argparse.Namespace) -> int:
    """``keys list``: print the keys (never their secrets); return the exit status."""
    store = open_checked(args.store)
    try:
        keys = store.list_keys()
    except Exception as exc:
        raise CLIError(f"cannot list keys: {one_line(exc)}") from None
    finally:
        close_quietly(store)
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


def revoke_key(args: argparse.Namespace) -> int:
    """``keys revoke``: delete a key and its tokens; 1 if there was no such key."""
    store = open_checked(args.store)
    try:
        found = store.revoke_key(args.key_id)
    except Exception as exc:
        raise CLIError(f"cannot revoke key: {one_line(exc)}") from None
    finally:
        close_quietly(store)
    if args.json:
        print(json.dumps({"key_id": args.key_id, "revoked": found}))
    elif found:
        print(f"revoked {args.key_id} and all its tokens")
    else:
        print(f"bearerguard: no such key: {args.key_id}", file=sys.stderr)
    return 0 if found else 1


def rotate_key(args: argparse.Namespace) -> int:
    """``keys rotate``: give a key a new secret, printed once; 1 if no such key."""
    if not args.grace >= 0:
        raise CLIError("--grace must be a number of seconds, 0 or more")
    store = open_checked(args.store)
    try:
        done = account_store(store).rotate_key(args.key_id, grace=args.grace)
    except Exception as exc:
        raise CLIError(f"cannot rotate key: {one_line(exc)}") from None
    finally:
        close_quietly(store)
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
