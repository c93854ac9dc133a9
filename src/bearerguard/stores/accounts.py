"""Accounts (the customers) and panel sessions: records and the rules every store keeps.

An account has a name, an argon2id password hash, the APIs its keys may grant, and a
disabled flag. A panel session is kept server-side, in the store, under the SHA-256
digest of its id (the cookie holds the id, the store only its digest), with the CSRF
token of its forms and an absolute expiry.

argon2-cffi (the ``server`` extra) is imported only when a password is hashed or
checked: resource servers that read the store need no part of it.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigurationError
from .base import KeyRecord

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .base import KeyOptions

__all__ = [
    "ADMIN_API",
    "MAX_KEY_NAME",
    "AccountRecord",
    "AccountStore",
    "SessionRecord",
    "account_view",
    "check_account_name",
    "check_apis",
    "check_key_name",
    "hash_password",
    "key_view",
    "new_account",
    "new_password",
    "verify_password",
]

ADMIN_API = "bearerguard:admin"
"""The API that a key made with ``keys create --admin`` carries: the right to call /admin."""

MAX_KEY_NAME = 100
"""Longest key name, in characters (docs/design.md: free text up to 100 characters)."""

_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_API_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_account_name(name: str) -> str:
    """`name` if it is a valid account name (1-64 of ``A-Za-z0-9._-``), else ValueError."""
    if not isinstance(name, str) or not _ACCOUNT_NAME.fullmatch(name):
        raise ValueError("account names are 1-64 letters, digits, '.', '_' or '-'")
    return name


def check_apis(apis: Iterable[str], *, allow_admin: bool = False) -> frozenset[str]:
    """The set of API names, each 1-64 of ``A-Za-z0-9._-``; ValueError otherwise.

    The admin right is not an API a customer can be given: only `allow_admin` lets
    `ADMIN_API` through.
    """
    result = frozenset(apis)
    for api in result:
        if api == ADMIN_API and allow_admin:
            continue
        if not isinstance(api, str) or not _API_NAME.fullmatch(api):
            raise ValueError("API names are 1-64 letters, digits, '.', '_' or '-'")
    return result


def check_key_name(name: str) -> str:
    """`name` stripped, if it is printable text of at most `MAX_KEY_NAME` characters."""
    if not isinstance(name, str):
        raise ValueError("a key name is text")
    name = name.strip()
    if len(name) > MAX_KEY_NAME:
        raise ValueError(f"a key name has at most {MAX_KEY_NAME} characters")
    if not name.isprintable():
        raise ValueError("a key name cannot hold control characters")
    return name


# -- passwords ---------------------------------------------------------------------------
_hasher_lock = threading.Lock()
_hasher: Any = None
_dummy_hash: str | None = None


def _password_hasher() -> Any:
    global _hasher
    with _hasher_lock:
        if _hasher is None:
            try:
                from argon2 import PasswordHasher
            except ImportError:
                raise ConfigurationError(
                    "account passwords need argon2-cffi: pip install 'bearerguard[server]'"
                ) from None
            _hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        return _hasher


def new_password() -> str:
    """A fresh one-time password: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of `password`."""
    hashed: str = _password_hasher().hash(password)
    return hashed


def verify_password(record: AccountRecord | None, password: str) -> bool:
    """Check `password` against the account's argon2id hash (False for no account).

    A missing account is checked against a dummy hash, so the answer takes as long
    whether or not the account exists. A disabled account never passes.
    """
    global _dummy_hash
    from argon2.exceptions import Argon2Error, InvalidHashError

    hasher = _password_hasher()
    if _dummy_hash is None:
        _dummy_hash = hasher.hash(new_password())
    stored = record.password_hash if record is not None else _dummy_hash
    try:
        ok = bool(hasher.verify(stored, password))
    except (Argon2Error, InvalidHashError):
        ok = False
    return ok and record is not None and not record.disabled


# -- records -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A customer account: name, the APIs its keys may grant, whether it is disabled."""

    name: str
    apis: frozenset[str]
    created_at: float = 0.0
    disabled: bool = False
    password_hash: str = field(default="", repr=False)


def new_account(
    name: str, apis: Iterable[str], *, password: str | None = None, now: float | None = None
) -> tuple[AccountRecord, str]:
    """A fresh account record and its password (generated unless given)."""
    password = new_password() if password is None else password
    record = AccountRecord(
        name=check_account_name(name),
        apis=check_apis(apis),
        created_at=time.time() if now is None else now,
        password_hash=hash_password(password),
    )
    return record, password


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A signed-in panel session, stored under the digest of its id."""

    digest: str
    account: str
    csrf: str = field(repr=False)
    created_at: float
    expires_at: float


@runtime_checkable
class AccountStore(Protocol):
    """What the panel and the admin API need of a store, beyond `TokenStore` (sync)."""

    def create_account(self, record: AccountRecord) -> bool:
        """Store a new account; False if the name is taken."""
        ...

    def get_account(self, name: str) -> AccountRecord | None: ...

    def list_accounts(self) -> list[AccountRecord]: ...

    def set_account_apis(self, name: str, apis: Iterable[str]) -> bool:
        """Change the APIs the account's new keys may grant; False if there is no account."""
        ...

    def disable_account(self, name: str) -> bool:
        """Disable the account, revoke every token of its keys, end its sessions.

        Announces a key invalidation for each of its keys; False if there is no account.
        """
        ...

    def create_key(
        self, apis: Iterable[str], **options: Unpack[KeyOptions]
    ) -> tuple[KeyRecord, str]: ...

    def list_keys(self, account: str | None = None) -> list[KeyRecord]: ...

    def rotate_key(
        self, key_id: str, *, grace: float, now: float | None = None
    ) -> tuple[KeyRecord, str] | None:
        """Give the key a new secret; the old one stays valid `grace` seconds more.

        Announces ``Invalidation("secret", key_id)`` (key caches drop the record; tokens
        stay valid); None, and no announcement, if there is no such key.
        """
        ...

    def put_session(self, record: SessionRecord) -> None: ...

    def get_session(self, digest: str, now: float) -> SessionRecord | None: ...

    def delete_session(self, digest: str) -> None: ...


# -- public views (the CLI's and the admin API's JSON: never a secret or a hash) ---------
def key_view(record: KeyRecord, now: float) -> dict[str, Any]:
    """What may be shown of a key: no secret, no digest."""
    return {
        "key_id": record.key_id,
        "name": record.name,
        "account": record.account,
        "apis": sorted(a for a in record.apis if a != ADMIN_API),
        "admin": ADMIN_API in record.apis,
        "introspect": record.introspect,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "expires_at": record.expires_at,
        "status": record.status(now),
    }


def account_view(record: AccountRecord) -> dict[str, Any]:
    """What may be shown of an account: no password hash."""
    return {
        "account": record.name,
        "apis": sorted(record.apis),
        "disabled": record.disabled,
        "created_at": record.created_at,
    }
