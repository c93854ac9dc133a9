"""The Lua scripts the store runs, and the plans of the operations that use them.

Every script takes all its keys through ``KEYS`` and names none itself, so each runs
in one hash slot on Redis Cluster (see `Layout`). An operation that touches records in
several slots (a login: the token record and its key's index; a key revocation: the
key and every token) is a *plan*: a generator yielding `Run` (one script) and `Pipe`
(a non-transactional pipeline of commands) steps, sent back each step's reply. The sync
face drives plans with blocking calls, the async face with ``await``: one plan each,
shared (as `flow.authenticate` is shared by the two adapters).

The rule that keeps revocation sound across slots (docs/design.md, "Redis Cluster"):
a login writes the token record first and then enlists its digest in the key's index
with a script that refuses when the key is gone (the login then deletes its record and
hands out nothing); a key revocation deletes the key and reads the index in one script,
then deletes the listed tokens, then announces. Whichever of enlist and revoke runs
first on the key's slot, the token ends up deleted.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from ...tokens import Invalidation
from ..base import KeyRecord, TokenRecord
from .codecs import encode_invalidation, encode_token, key_fields, text, ttl_ms
from .keys import Layout
from .lean import AsyncLeanClient, LeanClient, LeanScript

__all__ = [
    "PRUNE_EVERY",
    "PRUNE_SAMPLE",
    "Pipe",
    "LeanScripts",
    "Plan",
    "Run",
    "Scripts",
    "disable_account_plan",
    "put_session_plan",
    "put_token_plan",
    "read_token_step",
    "create_key_step",
    "revoke_key_plan",
    "revoke_token_plan",
    "rotate_key_plan",
    "start",
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

PRUNE_EVERY = 16
"""A login samples its key's token index when the index size is a multiple of this."""
PRUNE_SAMPLE = 64
"""How many index entries a sample holds. Dead entries settle at about
PRUNE_EVERY / PRUNE_SAMPLE (a quarter) of an index: each sample removes its dead share,
one dead entry is added per token that expires."""

# KEYS[1] apikey, KEYS[2] keytokens, KEYS[3] token (only where all share a slot);
# ARGV digest, issued_at, and with KEYS[3] the record's json and ttl_ms. Returns 0 when
# the key is gone (nothing enlisted or stored), else a sample of the index to prune
# (empty but on every PRUNE_EVERY-th entry).
_LUA_ENLIST = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4]) end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'last_used_at', ARGV[2])
if redis.call('SCARD', KEYS[2]) % {PRUNE_EVERY} ~= 0 then return {{}} end
return redis.call('SRANDMEMBER', KEYS[2], {PRUNE_SAMPLE})
"""

# KEYS[1] keytokens, KEYS[2…] token records (only where all share a slot); ARGV their
# digests, in the same order. Drops from the index the digests whose record is gone:
# one command where a pipeline would send one EXISTS per sampled entry.
_LUA_PRUNE = """
local n = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    n = n + redis.call('SREM', KEYS[1], ARGV[i - 1])
  end
end
return n
"""

# KEYS[1] apikey, KEYS[2] keytokens, KEYS[3] keys index, KEYS[4] the account's key ids
# (when the key has an account); ARGV key_id. Returns {key found, token digests}; the
# index is left for the plan to delete once the tokens are gone, so running the
# revocation again finishes one that was interrupted.
_LUA_REVOKE_KEY = """
local found = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if KEYS[4] then redis.call('SREM', KEYS[4], ARGV[1]) end
return {found, redis.call('SMEMBERS', KEYS[2])}
"""

# KEYS[1] token. Deletes it; returns its record (json), or nil.
_LUA_TAKE = """
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
"""

# KEYS[1] apikey, KEYS[2] keys index, KEYS[3] the account's key ids (when it has one);
# ARGV key_id, created_at, then field/value pairs of the record.
_LUA_CREATE_KEY = """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if KEYS[3] then redis.call('SADD', KEYS[3], ARGV[1]) end
return 1
"""

# KEYS[1] token. Returns {record or false, remaining ms}: a read, not a use.
_LUA_READ = """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
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

# KEYS[1] account, KEYS[2] its sessions, KEYS[3…] the token indexes of its keys.
# Disables the account; returns 0 for no account, else {sessions, tokens of KEYS[3], …}.
_LUA_DISABLE_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'disabled', '1')
local out = {redis.call('SMEMBERS', KEYS[2])}
for i = 3, #KEYS do out[#out + 1] = redis.call('SMEMBERS', KEYS[i]) end
return out
"""


class Scripts:
    """The Lua scripts registered on one client (sync or async, one node or a cluster)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.touch = client.register_script(_LUA_TOUCH)
        self.enlist = client.register_script(_LUA_ENLIST)
        self.prune = client.register_script(_LUA_PRUNE)
        self.revoke_key = client.register_script(_LUA_REVOKE_KEY)
        self.take = client.register_script(_LUA_TAKE)
        self.create_key = client.register_script(_LUA_CREATE_KEY)
        self.read = client.register_script(_LUA_READ)
        self.rotate = client.register_script(_LUA_ROTATE)
        self.create_account = client.register_script(_LUA_CREATE_ACCOUNT)
        self.set_account = client.register_script(_LUA_SET_ACCOUNT)
        self.disable_account = client.register_script(_LUA_DISABLE_ACCOUNT)


@dataclass(frozen=True, slots=True)
class Run:
    """Run the script `script` (a `Scripts` attribute); the reply is sent back."""

    script: str
    keys: list[str]
    args: list[str | int]


@dataclass(frozen=True, slots=True)
class Pipe:
    """Run ``(method, *args)`` commands in one non-transactional pipeline.

    The list of replies is sent back. On a cluster the commands may run on several
    nodes in any order: a plan puts commands that must follow others in a later step.
    """

    commands: list[tuple[Any, ...]]


Plan = Generator["Run | Pipe", Any, Any]


class LeanScripts:
    """The scripts a request runs (a lookup's `touch`, a login's `enlist` and `prune`)
    on a lean client: the per-request calls on one Redis (module `lean`), blocking on a
    `LeanClient`, awaitable on an `AsyncLeanClient`."""

    def __init__(self, client: LeanClient | AsyncLeanClient) -> None:
        self.client = client
        self.touch = LeanScript(client, _LUA_TOUCH)
        self.enlist = LeanScript(client, _LUA_ENLIST)
        self.prune = LeanScript(client, _LUA_PRUNE)


def start(step: Run | Pipe, client: Any, scripts: Scripts | LeanScripts) -> Any:
    """Send one step on `client`: its reply (sync) or an awaitable of it (async)."""
    if isinstance(step, Pipe):
        pipe = client.pipeline(transaction=False)
        for method, *args in step.commands:
            getattr(pipe, method)(*args)
        return pipe.execute()
    return getattr(scripts, step.script)(keys=step.keys, args=step.args)


def _texts(values: Any) -> list[str]:
    return [text(v) for v in values]


def put_token_plan(record: TokenRecord, layout: Layout) -> Plan:
    """Store a newly issued token, unless its key is gone (then nothing is stored)."""
    token = layout.token(record.digest)
    keys = [layout.apikey(record.key_id), layout.key_tokens(record.key_id)]
    args: list[str | int] = [record.digest, repr(record.issued_at)]
    value, lifetime = encode_token(record), ttl_ms(record.ttl)
    if layout.cluster:
        # The record first, then the enlistment that checks the key (module docstring).
        yield Pipe([("psetex", token, lifetime, value)])
        sample = yield Run("enlist", keys, args)
        if sample == 0:
            yield Pipe([("delete", token)])
    else:
        sample = yield Run("enlist", [*keys, token], [*args, value, lifetime])
    if not isinstance(sample, list) or not sample:
        return
    # Prune index entries of tokens that expired since: a sample every few logins.
    digests = sorted(set(_texts(sample)) - {record.digest})
    if not layout.cluster:
        yield Run("prune", [keys[1], *(layout.token(d) for d in digests)], [*digests])
        return
    alive = yield Pipe([("exists", layout.token(d)) for d in digests])
    dead = [d for d, n in zip(digests, alive, strict=True) if not n]
    if dead:
        yield Pipe([("srem", keys[1], *dead)])


def revoke_key_plan(key_id: str, layout: Layout) -> Plan:
    """Revoke a key: delete it, then its tokens, then announce. Returns whether it existed."""
    (account,) = yield Pipe([("hget", layout.apikey(key_id), "account")])
    keys = [layout.apikey(key_id), layout.key_tokens(key_id), layout.keys_index()]
    if account:
        keys.append(layout.account_keys(text(account)))
    found, digests = yield Run("revoke_key", keys, [key_id])
    deleted = 0
    if digests:
        deleted = sum((yield Pipe([("delete", layout.token(d)) for d in _texts(digests)])))
    # Announced only once the tokens are gone, so a subscriber's next lookup misses.
    done: list[tuple[Any, ...]] = [("delete", keys[1])]
    if found or deleted:
        message = encode_invalidation(Invalidation("key", key_id))
        done.append((layout.publish, layout.channel(), message))
    yield Pipe(done)
    return bool(found)


def rotate_key_plan(record: KeyRecord, keep_old: bool, layout: Layout) -> Plan:
    """Store a rotated key's new secret (`rotated`), then announce it. Returns whether
    the key existed.

    `keep_old`: the secret in Redis stays valid until ``record.old_secret_until`` (the
    script keeps whatever secret is current when it runs).
    """
    key_id = record.key_id
    args: list[str | int] = [
        record.secret_digest,
        "1" if keep_old else "0",
        repr(record.old_secret_until),
    ]
    done = yield Run("rotate", [layout.apikey(key_id)], args)
    if not done:
        return False
    # Announced once the new secret is stored, so a key cache that lets go of the key
    # reads the new record: every worker refuses a secret rotated out with grace 0 at
    # once, not after its key cache TTL. The same channel (and, on a cluster, the same
    # sharded publish in the tagged slot) as a revocation.
    message = encode_invalidation(Invalidation("secret", key_id))
    yield Pipe([(layout.publish, layout.channel(), message)])
    return True


def revoke_token_plan(digest: str, layout: Layout) -> Plan:
    """Delete one token, drop it from its key's index and announce it."""
    value = yield Run("take", [layout.token(digest)], [])
    if value is None:
        return False
    message = encode_invalidation(Invalidation("token", digest))
    steps: list[tuple[Any, ...]] = [(layout.publish, layout.channel(), message)]
    try:
        key_id = json.loads(value)["k"]
    except (ValueError, TypeError, KeyError):
        key_id = None
    if isinstance(key_id, str):
        steps.append(("srem", layout.key_tokens(key_id), digest))
    yield Pipe(steps)
    return True


def disable_account_plan(name: str, layout: Layout) -> Plan:
    """Disable an account, delete its sessions and its keys' tokens, announce each key."""
    (key_ids,) = yield Pipe([("smembers", layout.account_keys(name))])
    ids = sorted(_texts(key_ids))
    indexes = [layout.key_tokens(k) for k in ids]
    keys = [layout.account(name), layout.account_sessions(name), *indexes]
    reply = yield Run("disable_account", keys, [])
    if reply == 0:
        return False
    sessions, *tokens = reply
    doomed = [layout.session(d) for d in _texts(sessions)]
    doomed += [layout.token(d) for digests in tokens for d in _texts(digests)]
    if doomed:
        yield Pipe([("delete", n) for n in doomed])
    # One name per DEL: a cluster pipeline sends each command to its own slot's node.
    done: list[tuple[Any, ...]] = [("delete", n) for n in [layout.account_sessions(name), *indexes]]
    for key_id in ids:
        message = encode_invalidation(Invalidation("key", key_id))
        done.append((layout.publish, layout.channel(), message))
    yield Pipe(done)
    return True


def put_session_plan(
    digest: str, account: str, value: str, lifetime_ms: int, layout: Layout
) -> Plan:
    """Index a panel session under its account, then store it."""
    yield Pipe([("sadd", layout.account_sessions(account), digest)])
    yield Pipe([("psetex", layout.session(digest), lifetime_ms, value)])


def create_key_step(record: KeyRecord, layout: Layout) -> Run:
    """The script that writes a new key and indexes it (all in one slot)."""
    keys = [layout.apikey(record.key_id), layout.keys_index()]
    if record.account:
        keys.append(layout.account_keys(record.account))
    pairs = [item for kv in key_fields(record).items() for item in kv]
    return Run("create_key", keys, [record.key_id, repr(record.created_at), *pairs])


def read_token_step(digest: str, layout: Layout) -> Run:
    """The script that reads a token record and its remaining life (not a use)."""
    return Run("read", [layout.token(digest)], [])
