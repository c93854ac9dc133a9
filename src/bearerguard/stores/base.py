"""Records and the interface every store implements (memory, SQLite, Redis).

The auth service writes keys and tokens through a store; the middleware's
`StoreBackend` reads tokens through the same interface. Rules every store keeps:

* tokens are kept only as SHA-256 digests (`token_digest`), key secrets only as
  SHA-256 digests compared with `hmac.compare_digest`;
* `touch_token` is lookup-and-extend in one atomic step: it returns the record with
  ``expires_at = now + ttl`` (sliding expiry), or None for a missing or expired token;
  given a `client_ip`, it extends only when that is the token's bound address (H4: a
  request refused for its address keeps nothing alive) and otherwise returns the
  record as it is;
* `revoke_key` removes the key and every token of it, and announces an `Invalidation`
  to subscribers (other processes too, where the store can: Redis pub/sub);
* every I/O failure is raised as `StoreUnavailable`, never as the client library's own error.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, TypedDict, runtime_checkable

from ..errors import BackendUnavailable
from ..tokens import SECRET_PREFIX, TOKEN_PREFIX, Invalidation, TokenInfo, generate, sha256

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "AsyncTokenStore",
    "KeyOptions",
    "KeyRecord",
    "LocalSubscribers",
    "StoreUnavailable",
    "TokenRecord",
    "TokenStore",
    "digest_secret",
    "key_cursor",
    "new_key",
    "new_key_id",
    "new_secret",
    "new_token",
    "page_of",
    "parse_key_cursor",
    "rotated",
    "verify_secret",
]


class StoreUnavailable(BackendUnavailable):
    """The store could not be reached or answered with an error."""


def new_key_id() -> str:
    """A fresh Key ID: public, unique, 96 random bits."""
    return "key_" + secrets.token_hex(12)


def new_secret() -> str:
    """A fresh key secret: ``bgs_`` + 256 random bits + checksum (`tokens.generate`).

    Secrets of the older shape (43 plain base64url characters) stay valid: only their
    digest is stored, whatever their shape.
    """
    return generate(SECRET_PREFIX)


def new_token() -> str:
    """A fresh access token: ``bgt_`` + 256 random bits + checksum, RFC 6750 b64token."""
    return generate(TOKEN_PREFIX)


class KeyOptions(TypedDict, total=False):
    """The keyword options of `new_key` and of every store's `create_key`.

    `introspect` grants the right to call ``/introspect``; `now` is the creation time
    (default: the clock); `account` the owner ("" for the operator); `name` free text;
    `expires_at` an optional wall-clock time after which the key's secrets stop working.
    """

    introspect: bool
    now: float | None
    account: str
    name: str
    expires_at: float | None


def new_key(apis: Iterable[str], **options: Unpack[KeyOptions]) -> tuple[KeyRecord, str]:
    """A fresh key record and its secret (the caller stores the record, shows the secret).

    Raises TypeError for an option `KeyOptions` does not name (as a keyword would).
    """
    unknown = options.keys() - KeyOptions.__optional_keys__
    if unknown:
        raise TypeError(f"create_key() got unexpected keyword arguments: {sorted(unknown)}")
    secret = new_secret()
    now = options.get("now")
    record = KeyRecord(
        key_id=new_key_id(),
        apis=frozenset(apis),
        introspect=options.get("introspect", False),
        created_at=time.time() if now is None else now,
        secret_digest=digest_secret(secret),
        account=options.get("account", ""),
        name=options.get("name", ""),
        expires_at=options.get("expires_at"),
    )
    return record, secret


def rotated(record: KeyRecord, grace: float, now: float) -> tuple[KeyRecord, str]:
    """`record` with a fresh secret; the current one stays valid until ``now + grace``."""
    secret = new_secret()
    return (
        replace(
            record,
            secret_digest=digest_secret(secret),
            old_secret_digest=record.secret_digest if grace > 0 else "",
            old_secret_until=now + grace if grace > 0 else 0.0,
        ),
        secret,
    )


def digest_secret(secret: str) -> str:
    """SHA-256 hex digest of a key secret (secrets are 256-bit random, so no KDF)."""
    return sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def verify_secret(record: KeyRecord | None, secret: str, now: float | None = None) -> bool:
    """Constant-time check of `secret` against a key record (False for no record).

    During a rotation's grace period the previous secret is good too; after the key's
    expiry (if it has one) no secret is.
    """
    now = time.time() if now is None else now
    candidate = digest_secret(secret)
    # Compare even when the key does not exist, and with both slots whether or not a
    # rotation is under way, so timing does not reveal which key ids are real.
    expected = record.secret_digest if record is not None else "0" * 64
    previous = record.old_secret_digest if record is not None else ""
    current_ok = hmac.compare_digest(candidate, expected)
    previous_ok = hmac.compare_digest(candidate, previous or "1" * 64)
    if record is None:
        return False
    if record.expires_at is not None and now >= record.expires_at:
        return False
    return current_ok or (previous_ok and bool(previous) and now < record.old_secret_until)


def key_cursor(record: KeyRecord) -> str:
    """The paging cursor after `record` in (created_at, key_id) order."""
    return f"{record.created_at!r}~{record.key_id}"


def parse_key_cursor(cursor: str) -> tuple[float, str]:
    """(created_at, key_id) from `key_cursor`; ValueError for anything else."""
    created, sep, key_id = cursor.partition("~")
    value = float(created)
    if not sep or not key_id or len(key_id) > 128 or value != value:
        raise ValueError("bad cursor")
    return value, key_id


def page_of(keys: Iterable[KeyRecord], after: str | None, limit: int | None) -> list[KeyRecord]:
    """`keys` sorted by (created_at, key_id), from after `after`, at most `limit`."""
    ordered = sorted(keys, key=lambda k: (k.created_at, k.key_id))
    if after is not None:
        mark = parse_key_cursor(after)
        ordered = [k for k in ordered if (k.created_at, k.key_id) > mark]
    return ordered if limit is None else ordered[:limit]


class LocalSubscribers:
    """Revocation subscribers within this process; `announce` calls each in turn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Invalidation], None]] = []

    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Add `callback`; return the function that removes it."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def announce(self, event: Invalidation) -> None:
        """Call every subscriber with `event` (outside the lock)."""
        with self._lock:
            callbacks = list(self._callbacks)
        for cb in callbacks:
            cb(event)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key: its id, the APIs it may use, whether it may call /introspect."""

    key_id: str
    apis: frozenset[str]
    introspect: bool = False
    created_at: float = 0.0
    secret_digest: str = field(default="", repr=False)
    # The customer control panel's fields (stores/accounts.py): owner ("" = operator),
    # name, optional expiry, last login, and the previous secret during a rotation.
    account: str = ""
    name: str = ""
    expires_at: float | None = None
    last_used_at: float | None = None
    old_secret_digest: str = field(default="", repr=False)
    old_secret_until: float = 0.0

    def status(self, now: float) -> str:
        """``active``, ``expired``, or ``rotating`` (the previous secret still works)."""
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.old_secret_digest and now < self.old_secret_until:
            return "rotating"
        return "active"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An issued token as stored: digest, owner, APIs, bound address and timing."""

    digest: str
    key_id: str
    apis: frozenset[str]
    bound_ip: str
    issued_at: float
    ttl: float
    expires_at: float
    audience: tuple[str, ...] = ()
    """RFC 8707: the resources the token was requested for (empty: none named)."""

    def touched(self, now: float) -> TokenRecord:
        """This record after a use at `now` (sliding expiry)."""
        # The constructor, not dataclasses.replace: a lookup runs this (memory store).
        return TokenRecord(
            self.digest,
            self.key_id,
            self.apis,
            self.bound_ip,
            self.issued_at,
            self.ttl,
            now + self.ttl,
            self.audience,
        )

    def counts_from(self, client_ip: str | None) -> bool:
        """Whether a use from `client_ip` extends the token (None: address unknown, yes)."""
        return client_ip is None or client_ip == self.bound_ip

    def to_info(self) -> TokenInfo:
        return TokenInfo(
            key_id=self.key_id,
            apis=self.apis,
            bound_ip=self.bound_ip,
            expires_at=self.expires_at,
            ttl=self.ttl,
            audience=frozenset(self.audience),
        )


@runtime_checkable
class TokenStore(Protocol):
    """The sync face of a store."""

    url: str

    def create_key(
        self, apis: Iterable[str], **options: Unpack[KeyOptions]
    ) -> tuple[KeyRecord, str]:
        """Create a key; return its record and its secret (shown once, never stored)."""
        ...

    def get_key(self, key_id: str) -> KeyRecord | None: ...

    def list_keys(
        self, account: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[KeyRecord]:
        """Keys in (created_at, key_id) order, optionally only `account`'s.

        `after` is `key_cursor` of the last key of the previous page; `limit` caps the page.
        """
        ...

    def revoke_key(self, key_id: str) -> bool:
        """Delete the key and all its tokens, announce it; False if there was no key."""
        ...

    def put_token(self, record: TokenRecord) -> None:
        """Store a newly issued token."""
        ...

    def touch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        """Atomically look a token up and extend its expiry to ``now + ttl``.

        With `client_ip`, extend only when it is the token's bound address.
        """
        ...

    def get_token(self, digest: str, now: float) -> TokenRecord | None:
        """Look a token up without counting it as a use."""
        ...

    def revoke_token(self, digest: str) -> bool:
        """Delete one token and announce it; False if there was no such token."""
        ...

    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Call `callback` for every revocation; return a function that unsubscribes."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncTokenStore(Protocol):
    """The async face of a store: the same operations, prefixed with ``a``."""

    async def acreate_key(
        self, apis: Iterable[str], **options: Unpack[KeyOptions]
    ) -> tuple[KeyRecord, str]: ...

    async def aget_key(self, key_id: str) -> KeyRecord | None: ...

    async def alist_keys(self, account: str | None = None) -> list[KeyRecord]: ...

    async def arevoke_key(self, key_id: str) -> bool: ...

    async def aput_token(self, record: TokenRecord) -> None: ...

    async def atouch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None: ...

    async def aget_token(self, digest: str, now: float) -> TokenRecord | None: ...

    async def arevoke_token(self, digest: str) -> bool: ...

    async def aping(self) -> None: ...

    async def aclose(self) -> None: ...
