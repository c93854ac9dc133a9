"""Redis key names and the invalidation channel: plain functions of a prefix.

The layout they name is described in `bearerguard.stores.redis`.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PREFIX",
    "account_key",
    "account_keys_key",
    "account_sessions_key",
    "accounts_index_key",
    "apikey_key",
    "invalidation_channel",
    "key_tokens_key",
    "keys_index_key",
    "session_key",
    "token_key",
]

DEFAULT_PREFIX = "bearerguard"


def token_key(digest: str, prefix: str = DEFAULT_PREFIX) -> str:
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
