"""The Lua scripts the store runs, and the keys and arguments each one takes.

Lookup-and-extend, token insertion (which checks the key still exists), rotation,
account changes and both revocations run as scripts: one round trip each, atomic on
the server. The scripts name keys they compute, so they need a single Redis (or a
Sentinel-managed primary), not Redis Cluster. The argument plans below are shared by
the sync and async faces.
"""

from __future__ import annotations

from typing import Any

from ...tokens import Invalidation
from ..base import KeyRecord, TokenRecord
from .codecs import encode_invalidation, encode_token, key_fields, ttl_ms
from .keys import (
    account_key,
    account_keys_key,
    account_sessions_key,
    apikey_key,
    invalidation_channel,
    key_tokens_key,
    keys_index_key,
    session_key,
    token_key,
)

__all__ = [
    "Scripts",
    "disable_account_args",
    "queue_key",
    "revoke_key_args",
    "revoke_token_args",
    "token_args",
]

# KEYS[1] token; ARGV[1] the address the use came from ('' when unknown). Returns
# {record, remaining ms} and renews the TTL, or nil. A use from another address than
# the token's own renews nothing (H4).
_LUA_TOUCH = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ok, rec = pcall(cjson.decode, v)
if ok and type(rec) == 'table' and tonumber(rec['ttl_ms'])
    and (ARGV[1] == '' or rec['ip'] == ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(rec['ttl_ms'])))
end
return {v, redis.call('PTTL', KEYS[1])}
"""

# KEYS[1] token, KEYS[2] apikey, KEYS[3] keytokens; ARGV json, ttl_ms, digest, token
# prefix. Stores nothing (returns 0) when the key is gone, so a login racing with a key
# revocation cannot leave a live token behind. Prunes a few expired index entries.
_LUA_PUT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[2], 'last_used_at', ARGV[5])
local sample = redis.call('SRANDMEMBER', KEYS[3], 8)
for _, d in ipairs(sample) do
  if redis.call('EXISTS', ARGV[4] .. d) == 0 then redis.call('SREM', KEYS[3], d) end
end
return 1
"""

# KEYS[1] apikey, KEYS[2] keytokens, KEYS[3] keys index; ARGV key_id, token prefix,
# channel, message, account-keys prefix. Returns {key found, tokens deleted}.
_LUA_REVOKE_KEY = """
local acct = redis.call('HGET', KEYS[1], 'account')
if acct and acct ~= '' then redis.call('SREM', ARGV[5] .. acct, ARGV[1]) end
local found = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local n = 0
for _, d in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  n = n + redis.call('DEL', ARGV[2] .. d)
end
redis.call('DEL', KEYS[2])
if found + n > 0 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return {found, n}
"""

# KEYS[1] token; ARGV digest, keytokens prefix, channel, message. Returns 1 if deleted.
_LUA_REVOKE_ONE = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
redis.call('DEL', KEYS[1])
local ok, rec = pcall(cjson.decode, v)
if ok and type(rec) == 'table' and type(rec['k']) == 'string' then
  redis.call('SREM', ARGV[2] .. rec['k'], ARGV[1])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""

# KEYS[1] apikey; ARGV new digest, grace ("1" to keep the old secret), old_until.
_LUA_ROTATE = """
local cur = redis.call('HGET', KEYS[1], 'secret_digest')
if not cur then return 0 end
local old = ''
if ARGV[2] == '1' then old = cur end
redis.call('HSET', KEYS[1], 'secret_digest', ARGV[1], 'old_secret_digest', old,
           'old_secret_until', ARGV[3])
return 1
"""

# KEYS[1] account, KEYS[2] accounts index; ARGV name, created_at, then field/value pairs.
_LUA_CREATE_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS[1] account; ARGV field, value. Sets one field of an existing account.
_LUA_SET_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS[1] account, KEYS[2] its key ids, KEYS[3] its sessions; ARGV token prefix,
# keytokens prefix, channel, session prefix. Disables the account, deletes every token
# of its keys (announcing each key) and every session. Returns 1, or 0 for no account.
_LUA_DISABLE_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'disabled', '1')
for _, k in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  for _, d in ipairs(redis.call('SMEMBERS', ARGV[2] .. k)) do
    redis.call('DEL', ARGV[1] .. d)
  end
  redis.call('DEL', ARGV[2] .. k)
  redis.call('PUBLISH', ARGV[3], 'key:' .. k)
end
for _, d in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('DEL', ARGV[4] .. d) end
redis.call('DEL', KEYS[3])
return 1
"""


class Scripts:
    """The Lua scripts registered on one client (sync or async)."""

    def __init__(self, client: Any) -> None:
        self.touch = client.register_script(_LUA_TOUCH)
        self.put = client.register_script(_LUA_PUT)
        self.revoke_key = client.register_script(_LUA_REVOKE_KEY)
        self.revoke_token = client.register_script(_LUA_REVOKE_ONE)
        self.rotate = client.register_script(_LUA_ROTATE)
        self.create_account = client.register_script(_LUA_CREATE_ACCOUNT)
        self.set_account = client.register_script(_LUA_SET_ACCOUNT)
        self.disable_account = client.register_script(_LUA_DISABLE_ACCOUNT)


def token_args(record: TokenRecord, prefix: str) -> tuple[list[str], list[str | int]]:
    """Keys and arguments of the put script for a newly issued token."""
    keys = [
        token_key(record.digest, prefix),
        apikey_key(record.key_id, prefix),
        key_tokens_key(record.key_id, prefix),
    ]
    args: list[str | int] = [
        encode_token(record),
        ttl_ms(record.ttl),
        record.digest,
        token_key("", prefix),
        repr(record.issued_at),
    ]
    return keys, args


def revoke_key_args(key_id: str, prefix: str) -> tuple[list[str], list[str]]:
    """Keys and arguments of the revoke-key script."""
    keys = [apikey_key(key_id, prefix), key_tokens_key(key_id, prefix), keys_index_key(prefix)]
    args = [
        key_id,
        token_key("", prefix),
        invalidation_channel(prefix),
        encode_invalidation(Invalidation("key", key_id)),
        account_keys_key("", prefix),
    ]
    return keys, args


def revoke_token_args(digest: str, prefix: str) -> tuple[list[str], list[str]]:
    """Keys and arguments of the revoke-token script."""
    keys = [token_key(digest, prefix)]
    args = [
        digest,
        key_tokens_key("", prefix),
        invalidation_channel(prefix),
        encode_invalidation(Invalidation("token", digest)),
    ]
    return keys, args


def disable_account_args(name: str, prefix: str) -> tuple[list[str], list[str]]:
    """Keys and arguments of the disable-account script."""
    keys = [
        account_key(name, prefix),
        account_keys_key(name, prefix),
        account_sessions_key(name, prefix),
    ]
    args = [
        token_key("", prefix),
        key_tokens_key("", prefix),
        invalidation_channel(prefix),
        session_key("", prefix),
    ]
    return keys, args


def queue_key(pipe: Any, record: KeyRecord, prefix: str) -> None:
    """Queue the writes of a new key on a transaction pipeline (sync or async)."""
    pipe.hset(apikey_key(record.key_id, prefix), mapping=key_fields(record))
    pipe.zadd(keys_index_key(prefix), {record.key_id: record.created_at})
    if record.account:
        pipe.sadd(account_keys_key(record.account, prefix), record.key_id)
