"""What every command shares: the one-line error (`CLIError`) and opening the store.

A store is opened from its URL and pinged before a command uses it; every failure
becomes a `CLIError`, printed as one line on stderr with exit status 2, and a URL is
shown only redacted.
"""

from __future__ import annotations

import contextlib
import os

from .._shell import DEFAULT_STORE, STORE, one_line, redact_url
from ..errors import ConfigurationError
from ..stores import open_store
from ..stores.accounts import AccountStore
from ..stores.base import TokenStore

__all__ = ["CLIError", "account_store", "close_quietly", "default_store", "open_checked"]


class CLIError(Exception):
    """An error reported as one line on stderr, with exit status 2."""


def default_store() -> str:
    """The store URL when ``--store`` is not given: ``$BEARERGUARD_STORE`` or the default."""
    return os.environ.get(STORE) or DEFAULT_STORE


def open_checked(url: str) -> TokenStore:
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
        close_quietly(store)
        raise CLIError(f"store {redact_url(url)!r} unavailable: {one_line(exc, url)}") from None
    return store


def close_quietly(store: TokenStore) -> None:
    """Close `store`, ignoring errors: after a failure, the first error is the one reported."""
    with contextlib.suppress(Exception):
        store.close()


def account_store(store: TokenStore) -> AccountStore:
    """`store` as an `AccountStore`, or a CLIError if it keeps no accounts."""
    if not isinstance(store, AccountStore):
        raise CLIError("this store does not keep accounts")
    return store
