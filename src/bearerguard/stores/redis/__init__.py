"""Keys and tokens in Redis, shared by any number of machines.

URLs (module `connect`): ``redis://host:port/db`` and ``rediss://`` (TLS);
``redis+sentinel://host:port[,host:port…]/SERVICE[/DB]`` (the primary named by the
Sentinels, followed through failovers); ``redis+cluster://host:port[,host:port…]``
(Redis Cluster); ``rediss+sentinel://`` and ``rediss+cluster://`` with TLS.

Layout (all names under one prefix, ``bearerguard`` by default; see `keys.Layout`; on a
cluster every name but a token's and a session's is tagged ``{bearerguard}``, so the
keys, accounts and their indexes share one hash slot):

* ``<p>:token:<digest>`` — a token record (JSON), expiring natively: ``PX`` is the
  token's sliding TTL, renewed by every `touch_token`;
* ``<p>:apikey:<key_id>`` — a key record (hash; the secret only as its SHA-256 digest);
* ``<p>:keytokens:<key_id>`` — the digests of the key's tokens, so revoking the key can
  delete them all (every 16th new token checks a sample of 64 and drops the stale ones);
* ``<p>:keys`` — every key id, scored by creation time, for `list_keys`;
* channel ``<p>:invalidate`` — every revocation is published there (``token:<digest>``
  or ``key:<key_id>``), and `subscribe` listens to it (sharded pub/sub on a cluster);
* ``<p>:account:<name>`` — an account (hash; the password only as its argon2id hash),
  ``<p>:accounts`` every account name by creation time, ``<p>:acctkeys:<name>`` the
  account's key ids;
* ``<p>:session:<digest>`` — a panel session (JSON, expiring natively), and
  ``<p>:acctsessions:<name>`` the digests of an account's sessions.

Key hashes written before accounts existed lack the newer fields and read as keys of
the operator with no name: no migration is needed.

Lookup-and-extend is one Lua script, one round trip. Every script takes its keys
through ``KEYS``; operations spanning slots (login, revocations) are plans of several
steps, ordered so that a login racing with a key revocation leaves no live token
(`scripts`; docs/design.md, "Redis Cluster").

One job per module: `connect` (URLs and clients), `keys` (names), `codecs` (records
<-> Redis values), `scripts` (Lua and the plans that run it), `store` (`RedisStore`:
plumbing and sync face), `aio` (its async face), `listener` (pub/sub invalidations).

Expiry is measured on the Redis server's clock: a token lives `ttl` seconds after it
was stored or last touched. The `now` arguments only fill in ``expires_at`` of the
records returned.
"""

from __future__ import annotations

# The client library is required: fail here, even when the submodules are already imported.
import redis as _redis  # noqa: F401

from .codecs import decode_account as decode_account
from .codecs import decode_invalidation as decode_invalidation
from .codecs import decode_key as decode_key
from .codecs import decode_token as decode_token
from .codecs import encode_invalidation as encode_invalidation
from .codecs import encode_token as encode_token
from .keys import (
    DEFAULT_PREFIX,
    apikey_key,
    invalidation_channel,
    key_tokens_key,
    keys_index_key,
    token_record_key,
)
from .keys import account_key as account_key
from .keys import account_keys_key as account_keys_key
from .keys import account_sessions_key as account_sessions_key
from .keys import accounts_index_key as accounts_index_key
from .keys import session_key as session_key
from .store import RedisStore

__all__ = [
    "DEFAULT_PREFIX",
    "RedisStore",
    "apikey_key",
    "invalidation_channel",
    "key_tokens_key",
    "keys_index_key",
    "token_record_key",
]
