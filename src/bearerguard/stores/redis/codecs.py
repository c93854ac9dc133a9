"""Records <-> Redis values: token JSON, key and account hashes, sessions, revocations.

Plain functions, no I/O. Decoders raise ValueError (or KeyError/TypeError) for garbage;
the store turns those into StoreUnavailable at its one error boundary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec

from ...tokens import Invalidation
from ..accounts import AccountRecord, SessionRecord
from ..base import KeyRecord, TokenRecord

__all__ = [
    "apis_json",
    "decode_account",
    "decode_invalidation",
    "decode_key",
    "decode_session",
    "decode_token",
    "encode_invalidation",
    "encode_session",
    "encode_token",
    "key_fields",
    "read_token",
    "sorted_keys",
    "text",
    "touched",
    "ttl_ms",
]


def encode_invalidation(event: Invalidation) -> str:
    """``token:<digest>``, ``key:<key_id>`` or ``secret:<key_id>``."""
    return f"{event.kind}:{event.value}"


def decode_invalidation(data: bytes | str) -> Invalidation | None:
    """Parse a published invalidation; None for anything else.

    An unknown kind is None, not an error: so versions can be mixed on one Redis. A
    listener from before ``secret`` existed drops ``secret:<key_id>`` (its key cache then
    lets go of a rotated key within its TTL, as before), and a kind added later is
    dropped here the same way.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    kind, sep, value = text.partition(":")
    if not sep or not value:
        return None
    if kind == "token":
        return Invalidation("token", value)
    if kind == "key":
        return Invalidation("key", value)
    if kind == "secret":
        return Invalidation("secret", value)
    return None


def ttl_ms(ttl: float) -> int:
    """A TTL in whole milliseconds, at least 1 (Redis refuses ``PX 0``)."""
    return max(1, round(ttl * 1000))


# One encoder, made once: the same compact JSON as ``json.dumps(..., separators=(",",
# ":"))``, written in C; every login encodes one record.
_encode = msgspec.json.Encoder().encode


def encode_token(record: TokenRecord) -> str:
    """JSON of a token record without its digest (the key name) and expiry (the TTL)."""
    return _encode(
        {
            "k": record.key_id,
            "a": sorted(record.apis),
            "ip": record.bound_ip,
            "iat": record.issued_at,
            "ttl": record.ttl,
            "ttl_ms": ttl_ms(record.ttl),
            **({"aud": list(record.audience)} if record.audience else {}),
        }
    ).decode()


class _TokenFields(msgspec.Struct, frozen=True):
    """The stored JSON of a token record, checked field by field as it is parsed.

    Unknown members are ignored (``ttl_ms`` is the touch script's; a newer writer may add
    more); a missing member or one of the wrong type is refused (fail closed).
    """

    k: str
    a: frozenset[str]
    ip: str
    iat: float
    ttl: float
    aud: tuple[str, ...] = ()


# One decoder, made once: parsing and type checks run in C, about 10x json.loads plus
# the checks in Python on this record (docs/benchmarks.md, the cold path over Redis).
_token_fields = msgspec.json.Decoder(_TokenFields).decode


def decode_token(digest: str, value: bytes | str, expires_at: float) -> TokenRecord:
    """A token record from its JSON; ValueError (msgspec.DecodeError) for garbage."""
    f = _token_fields(value)
    return TokenRecord(digest, f.k, f.a, f.ip, f.iat, f.ttl, expires_at, f.aud)


def touched(digest: str, reply: Any, now: float) -> TokenRecord | None:
    """The record from the touch script's reply ({json, remaining ms} or nil)."""
    if reply is None:
        return None
    if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], int):
        raise ValueError("unexpected touch reply")
    value, pttl = reply
    return _expiring(digest, value, pttl, now)


def read_token(digest: str, value: Any, pttl: Any, now: float) -> TokenRecord | None:
    """The record from a ``GET`` and ``PTTL`` pair; None when the key is gone."""
    if value is None or pttl is None or pttl == -2:
        return None
    return _expiring(digest, value, pttl, now)


def _expiring(digest: str, value: bytes | str, pttl: int, now: float) -> TokenRecord:
    # PTTL is the remaining life in ms (-1: no expiry, read as already due).
    remaining = pttl / 1000 if pttl >= 0 else 0.0
    return decode_token(digest, value, now + remaining)


def text(value: Any) -> str:
    """A reply (bytes or str) as str; ValueError for anything else."""
    if not isinstance(value, (bytes, str)):
        raise ValueError("expected a string reply")
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _hash_with_apis(fields: dict[Any, Any]) -> tuple[dict[str, str], frozenset[str]]:
    """A hash's fields as text, and its ``apis`` field (a JSON list of strings)."""
    f = {text(k): text(v) for k, v in fields.items()}
    apis = json.loads(f["apis"])
    if not isinstance(apis, list) or not all(isinstance(a, str) for a in apis):
        raise ValueError("apis is not a list of strings")
    return f, frozenset(apis)


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
    f, apis = _hash_with_apis(fields)
    return KeyRecord(
        key_id=key_id,
        apis=apis,
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


def key_fields(record: KeyRecord) -> dict[Any, Any]:
    """The hash fields of a new key record."""
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
    f, apis = _hash_with_apis(fields)
    return AccountRecord(
        name=name,
        apis=apis,
        created_at=float(f["created_at"]),
        disabled=f.get("disabled") == "1",
        password_hash=f["password_hash"],
    )


def apis_json(apis: Iterable[str]) -> str:
    """API names as compact, sorted JSON."""
    return json.dumps(sorted(apis), separators=(",", ":"))


def sorted_keys(ids: list[str], found: list[Any]) -> list[KeyRecord]:
    """Decode the hashes of `ids`, drop missing keys, order by (created_at, key_id)."""
    records = [decode_key(key_id, fields) for key_id, fields in zip(ids, found, strict=True)]
    present = [r for r in records if r is not None]
    return sorted(present, key=lambda k: (k.created_at, k.key_id))


def encode_session(record: SessionRecord) -> str:
    """JSON of a panel session without its digest (the key name)."""
    return json.dumps(
        {
            "a": record.account,
            "c": record.csrf,
            "iat": record.created_at,
            "exp": record.expires_at,
        },
        separators=(",", ":"),
    )


def decode_session(digest: str, value: bytes | str) -> SessionRecord:
    """A panel session from its JSON; ValueError (or KeyError) for garbage."""
    data = json.loads(value)
    return SessionRecord(
        digest=digest,
        account=str(data["a"]),
        csrf=str(data["c"]),
        created_at=float(data["iat"]),
        expires_at=float(data["exp"]),
    )
