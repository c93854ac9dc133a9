"""The issuer's keys: which JWK verifies which algorithm, and `KeyRing`, which holds them.

`KeyRing` decides when the keys must be fetched (first need, an unknown ``kid``, a
refresh before ``max-age`` runs out) and takes a fetched JWKS in. It does no I/O: the
backend's two faces do the fetching (`bearerguard.backends.jwt.fetch`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt

__all__ = [
    "DEFAULT_ALGORITHMS",
    "FAMILIES",
    "UNAVAILABLE",
    "UNKNOWN",
    "Fetch",
    "KeyRing",
    "VerifyingKey",
    "key_algorithm",
]

logger = logging.getLogger("bearerguard.jwt")

DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
"""Algorithms accepted unless `JWTBackend(algorithms=…)` says otherwise."""

# Which algorithms a key type may verify. HMAC ("oct") is absent on purpose.
FAMILIES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
_NATURAL: dict[tuple[object, object], str] = {
    ("RSA", None): "RS256",
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
}
_MAX_KEYS = 64


def key_algorithm(jwk: Mapping[str, Any], algorithms: Iterable[str]) -> str | None:
    """The one algorithm a JWK verifies, or None when it is not a usable signing key.

    The JWK's own ``alg`` when present (it must suit the key type), else the natural
    algorithm of its type: RSA → RS256, EC P-256 → ES256, OKP (Ed25519/Ed448) → EdDSA.
    Keys for encryption (``use`` other than ``sig``, ``key_ops`` without ``verify``),
    symmetric keys and algorithms outside `algorithms` give None.
    """
    if jwk.get("use", "sig") != "sig":
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kty, crv = jwk.get("kty"), jwk.get("crv")
    alg = jwk.get("alg")
    if alg is None:
        alg = "EdDSA" if kty == "OKP" else _NATURAL.get((kty, crv if kty == "EC" else None))
    if not isinstance(alg, str) or alg not in algorithms or alg not in FAMILIES:
        return None
    family, curve = FAMILIES[alg]
    if kty != family or (curve is not None and crv != curve):
        return None
    return alg


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    kid: str | None
    alg: str
    key: Any = field(repr=False)
    algorithm: Any = field(repr=False)


class _Decision:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN = _Decision("UNKNOWN")
UNAVAILABLE = _Decision("UNAVAILABLE")


class KeyRing:
    """The issuer's keys, and when to fetch them again. No I/O; thread-safe.

    `plan(kid, alg, now)` answers a lookup: the key, a `Fetch` (fetch first, or wait
    for the fetch in flight, then plan again), UNKNOWN (refuse the token) or
    UNAVAILABLE (no usable key and no fetch allowed yet). A fetch is allowed for an
    unknown ``kid`` once per `refetch_interval`; with no key at all, once per
    `retry_interval` (so a down issuer is not hammered). `generation` counts finished
    fetches: a face that waited for another's fetch sees it moved and skips its own.
    """

    def __init__(
        self, *, refetch_interval: float, retry_interval: float, default_max_age: float
    ) -> None:
        self.refetch_interval = refetch_interval
        self.retry_interval = retry_interval
        self.default_max_age = default_max_age
        self._lock = threading.Lock()
        self._keys: dict[str | None, VerifyingKey] = {}
        self.generation = 0
        self.refresh_at = -math.inf
        self._next_unknown = -math.inf
        self._next_retry = -math.inf
        self._fetching = False

    def plan(self, kid: str | None, alg: str, now: float) -> VerifyingKey | Fetch | _Decision:
        with self._lock:
            keys = self._keys
            key = keys.get(kid) if kid is not None else self._only(alg)
            if key is not None:
                return key
            if self._fetching:
                return Fetch(self.generation)  # wait for it: it may bring this key
            if not keys:
                if now < self._next_retry:
                    return UNAVAILABLE
                self._next_retry = now + self.retry_interval
            elif kid is None or now < self._next_unknown:
                return UNKNOWN
            else:
                self._next_unknown = now + self.refetch_interval
            self._fetching = True
            return Fetch(self.generation)

    def _only(self, alg: str) -> VerifyingKey | None:
        # No kid: usable only when exactly one key could have signed it.
        matches = [k for k in self._keys.values() if k.alg == alg]
        return matches[0] if len(matches) == 1 else None

    def refresh_due(self, now: float) -> bool:
        """Whether a background refresh should start now (it is then marked running)."""
        if now < self.refresh_at or self._fetching or not self._keys:
            return False
        with self._lock:
            if self._fetching or now < self._next_retry:
                return False
            self._fetching = True
            self._next_retry = now + self.retry_interval
            return True

    def install(self, jwks: object, age: float, now: float, algorithms: Iterable[str]) -> int:
        """Take a fetched JWKS; return how many usable keys it had.

        A JWKS with no usable key leaves the keys held so far in place (and counts as a
        failed fetch): an issuer's bad answer must not lock everyone out.
        """
        keys: dict[str | None, VerifyingKey] = {}
        entries = jwks.get("keys") if isinstance(jwks, dict) else None
        if isinstance(entries, list):
            for jwk in entries[:_MAX_KEYS]:
                if not isinstance(jwk, dict):
                    continue
                alg = key_algorithm(jwk, algorithms)
                kid = jwk.get("kid")
                if alg is None or (kid is not None and not isinstance(kid, str)):
                    continue
                try:
                    parsed = pyjwt.PyJWK(jwk, algorithm=alg)
                except pyjwt.PyJWTError:
                    logger.warning("skipping a malformed key in the issuer's JWKS")
                    continue
                keys[kid] = VerifyingKey(kid, alg, parsed.key, parsed.Algorithm)
        with self._lock:
            self.generation += 1
            self._fetching = False
            if not keys:
                return 0
            self._keys = keys
            self.refresh_at = now + 0.8 * age
            self._next_retry = -math.inf
        return len(keys)

    def failed(self, now: float) -> None:
        """A fetch failed: keep the keys held, try again after `retry_interval`."""
        with self._lock:
            self.generation += 1
            self._fetching = False
            self._next_retry = now + self.retry_interval

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(frozen=True, slots=True)
class Fetch:
    """The lookup flow needs the keys fetched (unless `generation` has moved on)."""

    generation: int
