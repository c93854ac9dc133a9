"""Redis key names and the invalidation channel: plain functions of a prefix, and `Layout`.

The layout they name is described in `bearerguard.stores.redis`. On Redis Cluster every
name except a token's or a session's carries the hash tag ``{<prefix>}``, so keys,
accounts and their indexes share one slot (each script's keys are in one slot), while
token and session records, named by their digest, spread over all slots.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_PREFIX",
    "Layout",
    "account_key",
    "account_keys_key",
    "account_sessions_key",
    "accounts_index_key",
    "apikey_key",
    "invalidation_channel",
    "key_tokens_key",
    "keys_index_key",
    "session_key",
    "token_record_key",
]

DEFAULT_PREFIX = "bearerguard"


def token_record_key(digest: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of one token record."""
    return f"{prefix}:token:{digest}"


def apikey_key(key_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of one API key record."""
    return f"{prefix}:apikey:{key_id}"


def key_tokens_key(key_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of the set of token digests issued to one API key."""
    return f"{prefix}:keytokens:{key_id}"


def keys_index_key(prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of the sorted set of all key ids (score: creation time)."""
    return f"{prefix}:keys"


def account_key(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of one account record."""
    return f"{prefix}:account:{name}"


def accounts_index_key(prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of the sorted set of all account names (score: creation time)."""
    return f"{prefix}:accounts"


def account_keys_key(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of the set of key ids owned by one account."""
    return f"{prefix}:acctkeys:{name}"


def session_key(digest: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of one panel session."""
    return f"{prefix}:session:{digest}"


def account_sessions_key(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Redis key of the set of session digests of one account."""
    return f"{prefix}:acctsessions:{name}"


def invalidation_channel(prefix: str = DEFAULT_PREFIX) -> str:
    """Pub/sub channel on which every revocation is announced."""
    return f"{prefix}:invalidate"


@dataclass(frozen=True, slots=True)
class Layout:
    """The names one store uses: `prefix`, tagged ``{prefix}`` on a cluster.

    `cluster` also selects sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``) for the
    invalidation channel, which lives in the tagged slot.
    """

    prefix: str = DEFAULT_PREFIX
    cluster: bool = False

    @property
    def control(self) -> str:
        """The prefix of keys, accounts, their indexes and the channel."""
        return "{" + self.prefix + "}" if self.cluster else self.prefix

    @property
    def publish(self) -> str:
        """The client method that announces a revocation."""
        return "spublish" if self.cluster else "publish"

    def token(self, digest: str) -> str:
        return token_record_key(digest, self.prefix)

    def session(self, digest: str) -> str:
        return session_key(digest, self.prefix)

    def apikey(self, key_id: str) -> str:
        return apikey_key(key_id, self.control)

    def key_tokens(self, key_id: str) -> str:
        return key_tokens_key(key_id, self.control)

    def keys_index(self) -> str:
        return keys_index_key(self.control)

    def account(self, name: str) -> str:
        return account_key(name, self.control)

    def accounts_index(self) -> str:
        return accounts_index_key(self.control)

    def account_keys(self, name: str) -> str:
        return account_keys_key(name, self.control)

    def account_sessions(self, name: str) -> str:
        return account_sessions_key(name, self.control)

    def channel(self) -> str:
        return invalidation_channel(self.control)
