"""What the stores on this machine (memory, SQLite) share, written once.

`KeyMaker` is `create_key` with `new_key`'s parameters; `LocalStore` adds revocations
and rotations announced within this process and the async face, derived from the sync one
(`stores._faces.by_store`). A store defines only how it keeps records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Concatenate, ParamSpec

from ..tokens import Invalidation
from ._faces import by_store, inline
from .base import KeyRecord, LocalSubscribers, TokenStore, new_key

__all__ = ["KeyMaker", "LocalStore"]

P = ParamSpec("P")


def _then_store(
    make: Callable[P, tuple[KeyRecord, str]],
) -> Callable[Concatenate[KeyMaker, P], tuple[KeyRecord, str]]:
    # `create_key` with `new_key`'s parameters, written once: mypy sees that signature.
    def create_key(self: KeyMaker, /, *args: P.args, **kwargs: P.kwargs) -> tuple[KeyRecord, str]:
        """Create a key; return its record and its secret (shown once, never stored)."""
        record, secret = make(*args, **kwargs)
        self._add_key(record)
        return record, secret

    create_key.__qualname__ = "KeyMaker.create_key"
    return create_key


class KeyMaker:
    """`create_key` for a store: a fresh record and secret (`new_key`), kept by `_add_key`.

    The parameters are `new_key`'s (``apis, *, introspect, now, account, name,
    expires_at``); a store defines only how a new record is written.
    """

    def _add_key(self, record: KeyRecord) -> None:
        raise NotImplementedError

    create_key = _then_store(new_key)


class LocalStore(KeyMaker):
    """What the stores on this machine share (memory, SQLite): `create_key`
    (`KeyMaker`), revocations and rotations announced to subscribers in this process
    only, and the async face, derived from the sync one (`stores._faces`): each call
    runs inline, or in a worker thread when the store sets ``blocking`` (its calls wait
    on I/O).
    """

    blocking: ClassVar[bool] = False

    def __init__(self) -> None:
        self._subscribers = LocalSubscribers()

    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Call `callback` for revocations and rotations made through this store object,
        in the calling thread (other processes sharing a file are not told)."""
        return self._subscribers.subscribe(callback)

    # -- the async face, derived: the same calls by name (a subclass's own methods) ---
    acreate_key = by_store(KeyMaker.create_key)
    aget_key = by_store(TokenStore.get_key)
    alist_keys = by_store(TokenStore.list_keys)
    arevoke_key = by_store(TokenStore.revoke_key)
    aput_token = by_store(TokenStore.put_token)
    atouch_token = by_store(TokenStore.touch_token)
    aget_token = by_store(TokenStore.get_token)
    arevoke_token = by_store(TokenStore.revoke_token)
    aping = by_store(TokenStore.ping)
    # Closing flags the store and closes connections: never worth a thread.
    aclose = inline(TokenStore.close)
