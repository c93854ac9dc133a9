"""`redis://host:port/db`: keys and tokens in Redis, shared by any number of machines.

Layout (all names under one prefix, ``bearerguard`` by default; see the key-name
functions below):

* ``<p>:token:<digest>`` — a token record (JSON), expiring natively: ``PX`` is the
  token's sliding TTL, renewed by every `touch_token`;
* ``<p>:apikey:<key_id>`` — a key record (hash; the secret only as its SHA-256 digest);
* ``<p>:keytokens:<key_id>`` — the digests of the key's tokens, so revoking the key can
  delete them all (stale entries are pruned a few at a time on each new token);
* ``<p>:keys`` — every key id, scored by creation time, for `list_keys`;
* channel ``<p>:invalidate`` — every revocation is published there (``token:<digest>``
  or ``key:<key_id>``), and `subscribe` listens to it;
* ``<p>:account:<name>`` — an account (hash; the password only as its argon2id hash),
  ``<p>:accounts`` every account name by creation time, ``<p>:acctkeys:<name>`` the
  account's key ids;
* ``<p>:session:<digest>`` — a panel session (JSON, expiring natively), and
  ``<p>:acctsessions:<name>`` the digests of an account's sessions.

Key hashes written before accounts existed lack the newer fields and read as keys of
the operator with no name: no migration is needed.

Lookup-and-extend, token insertion (which checks the key still exists) and both
revocations are Lua scripts: one round trip each, atomic on the server. The scripts
name keys they compute, so the store runs on a single Redis (or a Sentinel-managed
primary), not on Redis Cluster.

Expiry is measured on the Redis server's clock: a token lives `ttl` seconds after it
was stored or last touched. The `now` arguments only fill in ``expires_at`` of the
records returned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import ConfigurationError
from ..tokens import Invalidation, fingerprint
from .accounts import AccountRecord, SessionRecord
from .base import (
    KeyRecord,
    StoreUnavailable,
    TokenRecord,
    new_key,
    page_of,
    parse_key_cursor,
    rotated,
)

__all__ = [
    "DEFAULT_PREFIX",
    "RedisStore",
    "apikey_key",
    "invalidation_channel",
    "key_tokens_key",
    "keys_index_key",
    "token_key",
]

logger = logging.getLogger("bearerguard.stores.redis")

DEFAULT_PREFIX = "bearerguard"


# -- key names: plain functions --------------------------------------------------------
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


def encode_invalidation(event: Invalidation) -> str:
    """``token:<digest>`` or ``key:<key_id>``."""
    return f"{event.kind}:{event.value}"


def decode_invalidation(data: bytes | str) -> Invalidation | None:
    """Parse a published revocation; None for anything else."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    kind, sep, value = text.partition(":")
    if not sep or not value:
        return None
    if kind == "token":
        return Invalidation("token", value)
    if kind == "key":
        return Invalidation("key", value)
    return None


# -- records <-> Redis values ----------------------------------------------------------
def _ttl_ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def encode_token(record: TokenRecord) -> str:
    """JSON of a token record without its digest (the key name) and expiry (the TTL)."""
    return json.dumps(
        {
            "k": record.key_id,
            "a": sorted(record.apis),
            "ip": record.bound_ip,
            "iat": record.issued_at,
            "ttl": record.ttl,
            "ttl_ms": _ttl_ms(record.ttl),
            **({"aud": list(record.audience)} if record.audience else {}),
        },
        separators=(",", ":"),
    )


def decode_token(digest: str, value: bytes | str, expires_at: float) -> TokenRecord:
    """A token record from its JSON; ValueError for garbage."""
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("token record is not an object")
    apis = data["a"]
    audience = data.get("aud", [])
    for names in (apis, audience):
        if not isinstance(names, list) or not all(isinstance(a, str) for a in names):
            raise ValueError("token apis or audience is not a list of strings")
    return TokenRecord(
        digest=digest,
        key_id=str(data["k"]),
        apis=frozenset(apis),
        bound_ip=str(data["ip"]),
        issued_at=float(data["iat"]),
        ttl=float(data["ttl"]),
        expires_at=expires_at,
        audience=tuple(audience),
    )


def _touched(digest: str, reply: Any, now: float) -> TokenRecord | None:
    """The record from the touch script's reply ({json, remaining ms} or nil)."""
    if reply is None:
        return None
    if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], int):
        raise ValueError("unexpected touch reply")
    value, pttl = reply
    remaining = pttl / 1000 if pttl >= 0 else 0.0
    return decode_token(digest, value, now + remaining)


def _text(value: Any) -> str:
    if not isinstance(value, (bytes, str)):
        raise ValueError("expected a string reply")
    return value.decode("utf-8") if isinstance(value, bytes) else value


# Decoded in place of a missing key, so a wrong secret costs the same work for a real
# key id as for a made-up one.
_ABSENT_KEY = {
    "secret_digest": "0" * 64,
    "apis": '["api"]',
    "introspect": "0",
    "created_at": "0.0",
}


def decode_key(key_id: str, fields: dict[Any, Any]) -> KeyRecord | None:
    """A key record from its hash (None for an empty hash); ValueError for garbage."""
    if not fields:
        decode_key(key_id, _ABSENT_KEY)
        return None
    f = {_text(k): _text(v) for k, v in fields.items()}
    apis = json.loads(f["apis"])
    if not isinstance(apis, list) or not all(isinstance(a, str) for a in apis):
        raise ValueError("key apis is not a list of strings")
    return KeyRecord(
        key_id=key_id,
        apis=frozenset(apis),
        introspect=f["introspect"] == "1",
        created_at=float(f["created_at"]),
        secret_digest=f["secret_digest"],
        account=f.get("account", ""),
        name=f.get("name", ""),
        expires_at=float(f["expires_at"]) if f.get("expires_at") else None,
        last_used_at=float(f["last_used_at"]) if f.get("last_used_at") else None,
        old_secret_digest=f.get("old_secret_digest", ""),
        old_secret_until=float(f.get("old_secret_until") or 0),
    )


def _key_fields(record: KeyRecord) -> dict[Any, Any]:
    return {
        "secret_digest": record.secret_digest,
        "apis": json.dumps(sorted(record.apis), separators=(",", ":")),
        "introspect": "1" if record.introspect else "0",
        "created_at": repr(record.created_at),
        "account": record.account,
        "name": record.name,
        "expires_at": "" if record.expires_at is None else repr(record.expires_at),
    }


def decode_account(name: str, fields: dict[Any, Any]) -> AccountRecord | None:
    """An account record from its hash (None for an empty hash); ValueError for garbage."""
    if not fields:
        return None
    f = {_text(k): _text(v) for k, v in fields.items()}
    apis = json.loads(f["apis"])
    if not isinstance(apis, list) or not all(isinstance(a, str) for a in apis):
        raise ValueError("account apis is not a list of strings")
    return AccountRecord(
        name=name,
        apis=frozenset(apis),
        created_at=float(f["created_at"]),
        disabled=f.get("disabled") == "1",
        password_hash=f["password_hash"],
    )


def _apis_json(apis: Iterable[str]) -> str:
    return json.dumps(sorted(apis), separators=(",", ":"))


# -- Lua scripts -----------------------------------------------------------------------
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


def _check_url(url: str) -> None:
    """ConfigurationError unless `url` is ``redis[s]://[user:pass@]host[:port][/db]``."""
    parts = urlsplit(url)
    problem = None
    if parts.scheme.lower() not in ("redis", "rediss"):
        problem = "the scheme must be redis:// or rediss://"
    elif not parts.hostname:
        problem = "no host name"
    elif parts.path not in ("", "/") and not parts.path[1:].isdigit():
        problem = "the database must be a number, as in redis://host:6379/0"
    if problem is not None:
        # The URL may carry a password: never echo it.
        raise ConfigurationError(f"bad Redis store URL: {problem}")


class _Scripts:
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


class RedisStore:
    """A store in Redis; sync face on `redis.Redis`, async face on `redis.asyncio.Redis`.

    ``RedisStore("redis://127.0.0.1:6379/0", timeout=2.0, prefix="bearerguard")``.
    `timeout` bounds connecting and each reply (seconds); a call fails over to one
    reconnect, then raises StoreUnavailable. No I/O happens at construction: call
    `ping()` to check the server is there.

    The async client is created on first use inside a running event loop and belongs
    to that loop: close it with ``await store.aclose()`` from the same loop. Each loop
    that uses the store gets its own client.

    `subscribe(callback)` starts a background thread listening on the invalidation
    channel; it sees revocations from every process using the same Redis, reconnects
    with backoff after Redis restarts (revocations published while it is disconnected
    are missed: the middleware's cache lifetime bounds those), and stops when the
    returned function is called or the store is closed.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, prefix: str = DEFAULT_PREFIX) -> None:
        if not timeout > 0:
            raise ConfigurationError("Redis timeout must be a positive number of seconds")
        if not prefix or any(c.isspace() for c in prefix):
            raise ConfigurationError("Redis key prefix must be non-empty, without spaces")
        _check_url(url)
        self.url = url
        self.prefix = prefix
        self.timeout = float(timeout)
        self._options: dict[str, Any] = {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
        }
        try:
            self._client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **self._options)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"bad Redis store URL: {exc}") from None
        self._scripts = _Scripts(self._client)
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aredis.Redis, _Scripts]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._listeners: set[_Listener] = set()
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------
    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate driver errors at one boundary: all become StoreUnavailable."""
        if self._closed:
            raise StoreUnavailable("Redis store is closed")
        try:
            yield
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis store {what} failed: {type(exc).__name__}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"Redis store {what} failed: {exc}") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreUnavailable(f"Redis store {what} returned bad data") from exc

    def _aclient(self) -> tuple[aredis.Redis, _Scripts]:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.get(loop)
            if entry is None:
                client = aredis.Redis.from_url(
                    self.url, retry=AsyncRetry(NoBackoff(), 1), **self._options
                )
                entry = self._aclients[loop] = (client, _Scripts(client))
        return entry

    def _token_args(self, record: TokenRecord) -> tuple[list[str], list[str | int]]:
        keys = [
            token_key(record.digest, self.prefix),
            apikey_key(record.key_id, self.prefix),
            key_tokens_key(record.key_id, self.prefix),
        ]
        args: list[str | int] = [
            encode_token(record),
            _ttl_ms(record.ttl),
            record.digest,
            token_key("", self.prefix),
            repr(record.issued_at),
        ]
        return keys, args

    def _revoke_key_args(self, key_id: str) -> tuple[list[str], list[str]]:
        keys = [
            apikey_key(key_id, self.prefix),
            key_tokens_key(key_id, self.prefix),
            keys_index_key(self.prefix),
        ]
        args = [
            key_id,
            token_key("", self.prefix),
            invalidation_channel(self.prefix),
            encode_invalidation(Invalidation("key", key_id)),
            account_keys_key("", self.prefix),
        ]
        return keys, args

    def _revoke_token_args(self, digest: str) -> tuple[list[str], list[str]]:
        keys = [token_key(digest, self.prefix)]
        args = [
            digest,
            key_tokens_key("", self.prefix),
            invalidation_channel(self.prefix),
            encode_invalidation(Invalidation("token", digest)),
        ]
        return keys, args

    def _queue_key(self, pipe: Any, record: KeyRecord) -> None:
        pipe.hset(apikey_key(record.key_id, self.prefix), mapping=_key_fields(record))
        pipe.zadd(keys_index_key(self.prefix), {record.key_id: record.created_at})
        if record.account:
            pipe.sadd(account_keys_key(record.account, self.prefix), record.key_id)

    # -- keys -------------------------------------------------------------------------
    def create_key(
        self,
        apis: Iterable[str],
        *,
        introspect: bool = False,
        now: float | None = None,
        account: str = "",
        name: str = "",
        expires_at: float | None = None,
    ) -> tuple[KeyRecord, str]:
        record, secret = new_key(
            apis, introspect=introspect, now=now, account=account, name=name, expires_at=expires_at
        )
        with self._errors("create_key"):
            pipe = self._client.pipeline(transaction=True)
            self._queue_key(pipe, record)
            pipe.execute()
        return record, secret

    def rotate_key(
        self, key_id: str, *, grace: float, now: float | None = None
    ) -> tuple[KeyRecord, str] | None:
        now = time.time() if now is None else now
        with self._errors("rotate_key"):
            record = self.get_key(key_id)
            if record is None:
                return None
            record, secret = rotated(record, grace, now)
            done = self._scripts.rotate(
                keys=[apikey_key(key_id, self.prefix)],
                args=[
                    record.secret_digest,
                    "1" if grace > 0 else "0",
                    repr(record.old_secret_until),
                ],
            )
            if not done:
                return None
            fresh = self.get_key(key_id)
        return (fresh, secret) if fresh is not None else None

    # -- accounts and panel sessions ----------------------------------------------------
    def create_account(self, record: AccountRecord) -> bool:
        fields = {
            "password_hash": record.password_hash,
            "apis": _apis_json(record.apis),
            "disabled": "1" if record.disabled else "0",
            "created_at": repr(record.created_at),
        }
        pairs = [item for kv in fields.items() for item in kv]
        with self._errors("create_account"):
            return bool(
                self._scripts.create_account(
                    keys=[account_key(record.name, self.prefix), accounts_index_key(self.prefix)],
                    args=[record.name, repr(record.created_at), *pairs],
                )
            )

    def get_account(self, name: str) -> AccountRecord | None:
        with self._errors("get_account"):
            return decode_account(name, self._client.hgetall(account_key(name, self.prefix)))

    def list_accounts(self) -> list[AccountRecord]:
        with self._errors("list_accounts"):
            names = [_text(n) for n in self._client.zrange(accounts_index_key(self.prefix), 0, -1)]
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(account_key(name, self.prefix))
            found = pipe.execute() if names else []
            records = [decode_account(n, f) for n, f in zip(names, found, strict=True)]
            present = [r for r in records if r is not None]
            return sorted(present, key=lambda a: (a.created_at, a.name))

    def set_account_apis(self, name: str, apis: Iterable[str]) -> bool:
        with self._errors("set_account_apis"):
            return bool(
                self._scripts.set_account(
                    keys=[account_key(name, self.prefix)], args=["apis", _apis_json(apis)]
                )
            )

    def disable_account(self, name: str) -> bool:
        keys = [
            account_key(name, self.prefix),
            account_keys_key(name, self.prefix),
            account_sessions_key(name, self.prefix),
        ]
        args = [
            token_key("", self.prefix),
            key_tokens_key("", self.prefix),
            invalidation_channel(self.prefix),
            session_key("", self.prefix),
        ]
        with self._errors("disable_account"):
            # The account's key ids stay in KEYS[2]: the keys still exist (disabled).
            return bool(self._scripts.disable_account(keys=keys, args=args))

    def put_session(self, record: SessionRecord) -> None:
        value = json.dumps(
            {
                "a": record.account,
                "c": record.csrf,
                "iat": record.created_at,
                "exp": record.expires_at,
            },
            separators=(",", ":"),
        )
        ttl_ms = _ttl_ms(max(record.expires_at - time.time(), 0.001))
        with self._errors("put_session"):
            pipe = self._client.pipeline(transaction=True)
            pipe.set(session_key(record.digest, self.prefix), value, px=ttl_ms)
            pipe.sadd(account_sessions_key(record.account, self.prefix), record.digest)
            pipe.execute()

    def get_session(self, digest: str, now: float) -> SessionRecord | None:
        with self._errors("get_session"):
            value = self._client.get(session_key(digest, self.prefix))
            if value is None:
                return None
            data = json.loads(value)
            record = SessionRecord(
                digest=digest,
                account=str(data["a"]),
                csrf=str(data["c"]),
                created_at=float(data["iat"]),
                expires_at=float(data["exp"]),
            )
        return record if now < record.expires_at else None

    def delete_session(self, digest: str) -> None:
        with self._errors("delete_session"):
            self._client.delete(session_key(digest, self.prefix))

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._errors("get_key"):
            return decode_key(key_id, self._client.hgetall(apikey_key(key_id, self.prefix)))

    def list_keys(
        self, account: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[KeyRecord]:
        raw: list[Any]
        with self._errors("list_keys"):
            if account is not None:
                raw = list(self._client.smembers(account_keys_key(account, self.prefix)))
            elif after is None and limit is None:
                raw = list(self._client.zrange(keys_index_key(self.prefix), 0, -1))
            else:
                # By score from the cursor's creation time on; members sharing that exact
                # score are filtered below, so fetch a few more than a page.
                low = repr(parse_key_cursor(after)[0]) if after is not None else "-inf"
                num = -1 if limit is None else limit + 8
                raw = list(
                    self._client.zrangebyscore(
                        keys_index_key(self.prefix), low, "+inf", start=0, num=num
                    )
                )
            ids = [_text(i) for i in raw]
            pipe = self._client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(apikey_key(key_id, self.prefix))
            found = pipe.execute() if ids else []
            return page_of(_sorted_keys(ids, found), after, limit)

    def revoke_key(self, key_id: str) -> bool:
        keys, args = self._revoke_key_args(key_id)
        with self._errors("revoke_key"):
            found, _n = self._scripts.revoke_key(keys=keys, args=args)
        return bool(found)

    # -- tokens -----------------------------------------------------------------------
    def put_token(self, record: TokenRecord) -> None:
        """Store a newly issued token (TTL = its `ttl`), unless its key is gone."""
        keys, args = self._token_args(record)
        with self._errors("put_token"):
            self._scripts.put(keys=keys, args=args)

    def touch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        with self._errors("touch_token"):
            reply = self._scripts.touch(
                keys=[token_key(digest, self.prefix)], args=[client_ip or ""]
            )
            return _touched(digest, reply, now)

    def get_token(self, digest: str, now: float) -> TokenRecord | None:
        with self._errors("get_token"):
            pipe = self._client.pipeline(transaction=True)
            key = token_key(digest, self.prefix)
            pipe.get(key)
            pipe.pttl(key)
            value, pttl = pipe.execute()
            if value is None or pttl is None or pttl == -2:
                return None
            remaining = pttl / 1000 if pttl >= 0 else 0.0
            return decode_token(digest, value, now + remaining)

    def revoke_token(self, digest: str) -> bool:
        keys, args = self._revoke_token_args(digest)
        with self._errors("revoke_token"):
            return bool(self._scripts.revoke_token(keys=keys, args=args))

    # -- invalidations ----------------------------------------------------------------
    def subscribe(self, callback: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Call `callback(Invalidation)` from a background thread for every revocation.

        Returns after the first attempt to subscribe (at most about `timeout` seconds),
        whether or not Redis answered: the thread keeps retrying with backoff.
        """
        if self._closed:
            raise StoreUnavailable("Redis store is closed")
        client = redis.Redis.from_url(self.url, **self._options)
        listener = _Listener(client, invalidation_channel(self.prefix), callback)
        with self._lock:
            self._listeners.add(listener)
        listener.start()
        listener.first_attempt.wait(self.timeout * 2 + 1)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.discard(listener)
            listener.stop()

        return unsubscribe

    # -- lifecycle --------------------------------------------------------------------
    def ping(self) -> None:
        with self._errors("ping"):
            self._client.ping()

    def close(self) -> None:
        """Stop listeners, close the sync client and, where possible, the async ones.

        An async client is closed on its own loop: directly when that loop is idle,
        through the loop when it runs in another thread, as a task when it runs in this
        one. A client whose loop is already closed cannot be closed cleanly any more:
        call `aclose` (or `close`) before closing a loop that used the store.
        """
        self._closed = True
        with self._lock:
            listeners = list(self._listeners)
            self._listeners.clear()
            aclients = list(self._aclients.items())
            self._aclients.clear()
        for listener in listeners:
            listener.stop()
        with suppress(redis.RedisError, OSError):
            self._client.close()
        for loop, (client, _) in aclients:
            _close_on_loop(loop, client, self.timeout)

    # -- async face -------------------------------------------------------------------
    async def acreate_key(
        self,
        apis: Iterable[str],
        *,
        introspect: bool = False,
        now: float | None = None,
        account: str = "",
        name: str = "",
        expires_at: float | None = None,
    ) -> tuple[KeyRecord, str]:
        record, secret = new_key(
            apis, introspect=introspect, now=now, account=account, name=name, expires_at=expires_at
        )
        with self._errors("create_key"):
            client, _ = self._aclient()
            pipe = client.pipeline(transaction=True)
            self._queue_key(pipe, record)
            await pipe.execute()
        return record, secret

    async def aget_key(self, key_id: str) -> KeyRecord | None:
        with self._errors("get_key"):
            client, _ = self._aclient()
            return decode_key(key_id, await client.hgetall(apikey_key(key_id, self.prefix)))

    async def alist_keys(self, account: str | None = None) -> list[KeyRecord]:
        with self._errors("list_keys"):
            client, _ = self._aclient()
            if account is None:
                raw = list(await client.zrange(keys_index_key(self.prefix), 0, -1))
            else:
                raw = list(await client.smembers(account_keys_key(account, self.prefix)))
            ids = [_text(i) for i in raw]
            pipe = client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(apikey_key(key_id, self.prefix))
            found = await pipe.execute() if ids else []
            return _sorted_keys(ids, found)

    async def arevoke_key(self, key_id: str) -> bool:
        keys, args = self._revoke_key_args(key_id)
        with self._errors("revoke_key"):
            _, scripts = self._aclient()
            found, _n = await scripts.revoke_key(keys=keys, args=args)
        return bool(found)

    async def aput_token(self, record: TokenRecord) -> None:
        keys, args = self._token_args(record)
        with self._errors("put_token"):
            _, scripts = self._aclient()
            await scripts.put(keys=keys, args=args)

    async def atouch_token(
        self, digest: str, now: float, client_ip: str | None = None
    ) -> TokenRecord | None:
        with self._errors("touch_token"):
            _, scripts = self._aclient()
            reply = await scripts.touch(
                keys=[token_key(digest, self.prefix)], args=[client_ip or ""]
            )
            return _touched(digest, reply, now)

    async def aget_token(self, digest: str, now: float) -> TokenRecord | None:
        with self._errors("get_token"):
            client, _ = self._aclient()
            pipe = client.pipeline(transaction=True)
            key = token_key(digest, self.prefix)
            pipe.get(key)
            pipe.pttl(key)
            value, pttl = await pipe.execute()
            if value is None or pttl is None or pttl == -2:
                return None
            remaining = pttl / 1000 if pttl >= 0 else 0.0
            return decode_token(digest, value, now + remaining)

    async def arevoke_token(self, digest: str) -> bool:
        keys, args = self._revoke_token_args(digest)
        with self._errors("revoke_token"):
            _, scripts = self._aclient()
            return bool(await scripts.revoke_token(keys=keys, args=args))

    async def aping(self) -> None:
        with self._errors("ping"):
            client, _ = self._aclient()
            await client.ping()

    async def aclose(self) -> None:
        """Close this loop's async client, then everything `close` closes."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.pop(loop, None)
        if entry is not None:
            with suppress(redis.RedisError, OSError):
                await entry[0].aclose()
        self.close()


_closing: set[asyncio.Task[None]] = set()


async def _aclose_quietly(client: aredis.Redis) -> None:
    with suppress(redis.RedisError, OSError):
        await client.aclose()


def _close_on_loop(loop: asyncio.AbstractEventLoop, client: aredis.Redis, timeout: float) -> None:
    """Close an async client on the loop it belongs to (best effort, see `close`)."""
    if loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        task = loop.create_task(_aclose_quietly(client))
        _closing.add(task)
        task.add_done_callback(_closing.discard)
    elif loop.is_running():
        future = asyncio.run_coroutine_threadsafe(_aclose_quietly(client), loop)
        with suppress(Exception):
            future.result(timeout)
    else:
        # Fails (and is skipped) only when another loop runs in this thread right now.
        with suppress(RuntimeError):
            loop.run_until_complete(_aclose_quietly(client))


def _sorted_keys(ids: list[str], found: list[Any]) -> list[KeyRecord]:
    records = [decode_key(key_id, fields) for key_id, fields in zip(ids, found, strict=True)]
    present = [r for r in records if r is not None]
    return sorted(present, key=lambda k: (k.created_at, k.key_id))


class _Listener(threading.Thread):
    """Listens on the invalidation channel until stopped; reconnects with backoff."""

    _BACKOFF_MIN = 0.05
    _BACKOFF_MAX = 1.0

    def __init__(
        self, client: redis.Redis, channel: str, callback: Callable[[Invalidation], None]
    ) -> None:
        super().__init__(name="bearerguard-redis-invalidations", daemon=True)
        self._client = client
        self._channel = channel
        self._callback = callback
        self._stop_event = threading.Event()
        self.first_attempt = threading.Event()
        self.subscribed = threading.Event()

    def run(self) -> None:
        backoff = self._BACKOFF_MIN
        try:
            while not self._stop_event.is_set():
                try:
                    self._listen()
                except (redis.RedisError, OSError) as exc:
                    self.subscribed.clear()
                    logger.warning(
                        "invalidation listener lost Redis (%s); retrying in %.2fs",
                        type(exc).__name__,
                        backoff,
                    )
                else:
                    backoff = self._BACKOFF_MIN
                finally:
                    self.first_attempt.set()
                if self._stop_event.wait(backoff):
                    break
                backoff = min(backoff * 2, self._BACKOFF_MAX)
        finally:
            with suppress(redis.RedisError, OSError):
                self._client.close()

    def _listen(self) -> None:
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
            while not self._stop_event.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "subscribe":
                    # Confirmed by the server: publications from now on reach us.
                    self.subscribed.set()
                    self.first_attempt.set()
                elif kind == "message":
                    event = decode_invalidation(message["data"])
                    if event is not None:
                        self._deliver(event)
        finally:
            with suppress(redis.RedisError, OSError):
                pubsub.close()

    def _deliver(self, event: Invalidation) -> None:
        try:
            self._callback(event)
        except Exception as exc:
            # The listener must survive a faulty callback. The event's value may be a
            # token digest: log only its fingerprint.
            label = event.value if event.kind == "key" else fingerprint(event.value)
            logger.error(
                "invalidation callback raised %s for %s %s",
                type(exc).__name__,
                event.kind,
                label,
            )

    def stop(self) -> None:
        self._stop_event.set()
        if self is not threading.current_thread() and self.is_alive():
            self.join(timeout=5)
