"""`JWTBackend`: RFC 9068 JWT access tokens from another issuer, checked locally.

An identity provider (Keycloak, Auth0, Entra ID, Authlib, …) signs access tokens; the
resource server checks each one against the issuer's public keys (its JWKS) without
asking anyone. The pure parts are plain functions: `looks_like_jwt` (the token's
shape, used by `ChainBackend`), `parse_header`, `key_algorithm`, `verify_access_token`
(signature and claims → `TokenInfo`), `metadata_urls` and `max_age`. `KeyRing` holds
the keys and decides when to fetch them; it does no I/O. `JWTBackend` adds the HTTP
client and the two faces, `lookup` and `alookup`, which drive one shared generator.

Verification follows RFC 9068 strictly:

* the header's ``typ`` is ``at+jwt`` or ``application/at+jwt`` (§2.1, §4);
* the algorithm comes from the verifying key, never from the token alone (RFC 8725
  §3.1): the key is chosen by ``kid`` from the issuer's JWKS, its algorithm is the
  JWK's ``alg`` or follows from its type (RSA → RS256, EC P-256 → ES256, OKP →
  EdDSA), and the token's ``alg`` must equal it. ``none``, HMAC (no JWK of type
  ``oct`` is ever used) and keys carried by the token itself (``jwk``, ``jku``,
  ``x5u``, ``x5c``) are refused, and so is any ``crit`` header;
* ``iss`` equals the configured issuer, ``aud`` contains the configured audience,
  ``exp`` is required and numeric, ``nbf`` and ``iat`` when present are numeric; time
  checks allow `leeway` seconds of clock skew (default 10).

Claims → `TokenInfo`: ``client_id`` (else ``sub``) → key_id, ``scope``
(space-separated) → apis, ``ip`` → bound_ip (so IP binding works for JWTs too),
``aud`` → audience, ``exp`` + leeway → expires_at. A JWT is self-contained: nothing
slides its expiry and nothing revokes it before ``exp`` (short lifetimes are the
issuer's tool for that).

Keys are fetched on first need, so the issuer may be down when the app starts (no
usable key: `BackendUnavailable`, which the middleware answers with 503). A token
whose ``kid`` is unknown triggers a refetch, single-flight and at most once per
`refetch_interval` (default 15 s): a flood of made-up kids costs a handful of fetches,
and a key the issuer really added is picked up within that interval. Keys are
refreshed in the background before their ``Cache-Control: max-age`` runs out (80 %
of it, between 1 minute and 1 day; 5 minutes without one) and, while the issuer is
down, the keys already held keep being used.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..clientip import normalize_ip
from ..errors import BackendUnavailable, ConfigurationError
from ..tokens import TokenInfo, fingerprint, token_key

try:
    import jwt as pyjwt
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "JWTBackend needs PyJWT with cryptography: pip install 'bearerguard[jwt]'"
    ) from exc

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "Compact",
    "DEFAULT_ALGORITHMS",
    "JWTBackend",
    "KeyRing",
    "key_algorithm",
    "looks_like_jwt",
    "max_age",
    "metadata_urls",
    "parse_compact",
    "parse_header",
    "verify_access_token",
]

logger = logging.getLogger("bearerguard.jwt")

DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
"""Algorithms accepted unless `JWTBackend(algorithms=…)` says otherwise."""

ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
"""RFC 9068 §2.1: the ``typ`` header of a JWT access token (compared case-blind)."""

# Header parameters that carry or point at a key: the key must come from the issuer's
# JWKS, never from the token (RFC 8725 §3.10). `crit` names extensions we do not know.
_FORBIDDEN_HEADER = ("jwk", "jku", "x5u", "x5c", "crit")

# Which algorithms a key type may verify. HMAC ("oct") is absent on purpose.
_FAMILIES: dict[str, tuple[str, str | None]] = {
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
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_HEADER = 2048
_MAX_KEYS = 64


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass(frozen=True, slots=True)
class Compact:
    """A compact JWS split into its parts (RFC 7515 §7.1); nothing in it is trusted yet."""

    header: dict[str, Any]
    signing_input: bytes = field(repr=False)
    payload: str = field(repr=False)
    signature: str = field(repr=False)


def parse_compact(token: str) -> Compact | None:
    """Split `token` as a compact JWS, or None when it is not one.

    Three non-empty base64url segments, the first decoding to a JSON object (the header).
    """
    parts = token.split(".")
    if len(parts) != 3 or len(parts[0]) > _MAX_HEADER:
        return None
    head, payload, signature = parts
    if not (_B64URL.fullmatch(head) and _B64URL.fullmatch(payload)):
        return None
    if not _B64URL.fullmatch(signature):
        return None
    try:
        header = json.loads(_b64decode(head))
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    return Compact(header, f"{head}.{payload}".encode("ascii"), payload, signature)


def parse_header(token: str) -> dict[str, Any] | None:
    """The JOSE header of a compact JWS, or None when `token` is not one."""
    compact = parse_compact(token)
    return None if compact is None else compact.header


def looks_like_jwt(token: str) -> bool:
    """Whether `token` has the shape of a JWT (what `ChainBackend` routes on)."""
    return parse_header(token) is not None


def header_problem(header: Mapping[str, Any], algorithms: Iterable[str]) -> str | None:
    """Why `header` cannot be an RFC 9068 access token's header, or None if it can."""
    typ = header.get("typ")
    # RFC 9068 §4: "Resource servers MUST verify that the typ header value is at+jwt or
    # application/at+jwt and reject tokens carrying any other value."
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        return "typ is not at+jwt"
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        return "algorithm not accepted"
    for name in _FORBIDDEN_HEADER:
        if name in header:
            return f"header parameter {name} is refused"
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        return "kid is not a string"
    return None


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
    if not isinstance(alg, str) or alg not in algorithms or alg not in _FAMILIES:
        return None
    family, curve = _FAMILIES[alg]
    if kty != family or (curve is not None and crv != curve):
        return None
    return alg


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    # RFC 7519 §2: NumericDate is a JSON number; a string or a boolean is not one.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(name)
    if not math.isfinite(value):
        raise ValueError(name)
    return float(value)


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    alg: str
    key: Any = field(repr=False)
    algorithm: Any = field(repr=False)


def verify_access_token(
    compact: Compact,
    key: _Key,
    *,
    issuer: str,
    audience: str,
    leeway: float,
    now: float,
) -> TokenInfo | str:
    """Check a JWT access token against `key`: a `TokenInfo`, or why it is refused.

    `compact.header` must already have passed `header_problem`. The algorithm is the
    key's (`key.alg`); the token's ``alg`` must name the same one. PyJWT's algorithm
    (over cryptography) checks the signature; the claims are checked here, strictly.
    """
    if compact.header.get("alg") != key.alg:
        return "algorithm does not match the key"
    try:
        signature = _b64decode(compact.signature)
        valid = key.algorithm.verify(compact.signing_input, key.key, signature)
    except (binascii.Error, ValueError, TypeError, pyjwt.PyJWTError):
        valid = False
    if not valid:
        return "bad signature"
    try:
        claims = json.loads(_b64decode(compact.payload))
    except (binascii.Error, ValueError, RecursionError):
        return "payload is not JSON"
    if not isinstance(claims, dict):
        return "payload is not a JSON object"
    # RFC 9068 §4: iss MUST exactly match, aud MUST contain this resource.
    if claims.get("iss") != issuer:
        return "wrong or missing iss"
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        return "aud missing or not strings"
    if audience not in audiences:
        return "wrong aud"
    try:
        exp = _numeric(claims, "exp")
        nbf = _numeric(claims, "nbf") if "nbf" in claims else None
        if "iat" in claims:
            _numeric(claims, "iat")
    except ValueError as exc:
        return f"{exc} missing or not a number"
    assert exp is not None
    if now >= exp + leeway:
        return "expired"
    if nbf is not None and now < nbf - leeway:
        return "not yet valid"
    key_id = claims.get("client_id") or claims.get("sub")
    if not isinstance(key_id, str) or not key_id:
        return "no client_id or sub"
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        return "scope is not a string"
    bound_ip = None
    ip = claims.get("ip")
    if ip is not None:
        bound_ip = normalize_ip(ip) if isinstance(ip, str) else None
        if bound_ip is None:
            return "ip is not an address"
    return TokenInfo(
        key_id,
        frozenset(scope.split()),
        bound_ip,
        exp + leeway,
        None,
        claims,
        frozenset(audiences),
    )


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where the issuer's metadata may be, in the order tried.

    RFC 8414 §3.1 inserts ``/.well-known/oauth-authorization-server`` between host and
    path; OpenID Connect Discovery 1.0 §4 appends ``/.well-known/openid-configuration``.
    """
    url = httpx.URL(issuer)
    path = url.path.rstrip("/")
    origin = str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/")
    return (
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    )


def max_age(cache_control: str, default: float, low: float, high: float) -> float:
    """Seconds from a ``Cache-Control`` header's ``max-age``, clamped to [low, high]."""
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return min(high, max(low, float(value.strip())))
    return default


# -- the keys and when to fetch them ---------------------------------------------------


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
        self._keys: dict[str | None, _Key] = {}
        self.generation = 0
        self.refresh_at = -math.inf
        self._next_unknown = -math.inf
        self._next_retry = -math.inf
        self._fetching = False

    def plan(self, kid: str | None, alg: str, now: float) -> _Key | Fetch | _Decision:
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

    def _only(self, alg: str) -> _Key | None:
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
        keys: dict[str | None, _Key] = {}
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
                keys[kid] = _Key(kid, alg, parsed.key, parsed.Algorithm)
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


# -- fetching --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Get:
    """A GET the fetch flow needs answered."""

    url: str


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: str
    cache_control: str
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Fetch:
    """The lookup flow needs the keys fetched (unless `generation` has moved on)."""

    generation: int


def _json(answer: _Answer, what: str) -> Any:
    if answer.status != 200:
        raise BackendUnavailable(f"{what} answered HTTP {answer.status}")
    try:
        return json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BackendUnavailable(f"{what} is not JSON") from exc


def _absolute(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


class JWTBackend:
    """Check RFC 9068 JWT access tokens locally against the issuer's JWKS, sync and async.

    ``JWTBackend(issuer="https://idp.example/realms/api", audience="https://api.example")``
    finds the JWKS through the issuer's RFC 8414 or OpenID Connect metadata (whose
    ``issuer`` must equal `issuer`); ``jwks_url=`` names it directly. See the module
    docstring for the checks. `accepts(token)` says whether the token looks like a JWT
    (`ChainBackend` routes on it). `lookup` answers None for any token that fails a
    check (the middleware: 401 ``invalid_token``) and raises BackendUnavailable when
    no usable key can be had (503).

    Options: `algorithms` (default RS256, ES256, EdDSA), `leeway` (seconds of clock
    skew, default 10), `refetch_interval` (unknown ``kid``: at most one fetch this
    often, default 15 s), `retry_interval` (after a failed fetch, default 5 s),
    `timeout` (per HTTP request, default 2 s), `max_response_bytes`, `verify`
    (httpx TLS verification), `clock` (wall-clock seconds).

    Security: use https for the issuer and the JWKS outside loopback (the keys decide
    who gets in). Tokens are never logged; refusals are logged at INFO with the
    token's fingerprint and the reason.
    """

    #: Every call returns or raises within its own HTTP timeouts.
    self_timed = True

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = 10.0,
        refetch_interval: float = 15.0,
        retry_interval: float = 5.0,
        timeout: float = 2.0,
        max_response_bytes: int = 256 * 1024,
        verify: Any = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _absolute(issuer):
            raise ConfigurationError("issuer must be an absolute http(s) URL")
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("audience is required (RFC 9068 §4: aud is checked)")
        if jwks_url is not None and not _absolute(jwks_url):
            raise ConfigurationError("jwks_url must be an absolute http(s) URL")
        algs = tuple(algorithms)
        unknown = [a for a in algs if a not in _FAMILIES]
        if not algs or unknown:
            raise ConfigurationError(
                f"algorithms must be among {', '.join(_FAMILIES)} (HMAC and none never are)"
            )
        for name, value in (("leeway", leeway), ("timeout", timeout)):
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigurationError(f"{name} must be a non-negative number of seconds")
        if not (0 < refetch_interval <= 60 and 0 < retry_interval <= 60):
            # "A key the issuer really added is picked up within a minute."
            raise ConfigurationError("refetch_interval and retry_interval must be in (0, 60]")
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.algorithms = frozenset(algs)
        self.leeway = float(leeway)
        self.max_response_bytes = int(max_response_bytes)
        self.ring = KeyRing(
            refetch_interval=refetch_interval,
            retry_interval=retry_interval,
            default_max_age=300.0,
        )
        self._clock = clock
        self._client_kwargs: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout or 2.0),
            "verify": verify,
            "follow_redirects": False,
            "headers": {"Accept": "application/json"},
        }
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._alock: asyncio.Lock | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"JWTBackend(issuer={self.issuer!r}, audience={self.audience!r})"

    def accepts(self, token: str) -> bool:
        """Whether `token` is shaped like a JWT (three base64url parts, JSON header)."""
        return looks_like_jwt(token)

    # -- the flow both faces drive ---------------------------------------------------

    def _check(self, token: str) -> Generator[Fetch, None, TokenInfo | None]:
        """Decide one token; yields `Fetch` when the keys must be fetched first."""
        compact = parse_compact(token)
        if compact is None:
            return self._refuse(token, "not a JWT")
        header = compact.header
        problem = header_problem(header, self.algorithms)
        if problem is not None:
            return self._refuse(token, problem)
        kid: str | None = header.get("kid")
        for _ in range(3):
            step = self.ring.plan(kid, header["alg"], self._clock())
            if step is UNKNOWN:
                return self._refuse(token, "no key with this kid")
            if step is UNAVAILABLE:
                raise BackendUnavailable("no usable key from the issuer yet")
            if isinstance(step, Fetch):
                yield step
                continue
            if isinstance(step, _Key):
                result = verify_access_token(
                    compact,
                    step,
                    issuer=self.issuer,
                    audience=self.audience,
                    leeway=self.leeway,
                    now=self._clock(),
                )
                return result if isinstance(result, TokenInfo) else self._refuse(token, result)
        raise BackendUnavailable("no usable key from the issuer")

    def _refuse(self, token: str, reason: str | None) -> TokenInfo | None:
        logger.info("refused JWT %s: %s", fingerprint(token_key(token)), reason)
        return None

    def _fetch_flow(self) -> Generator[_Get, _Answer, tuple[Any, float]]:
        """Find the JWKS (through the metadata unless `jwks_url`) and fetch it."""
        url = self.jwks_url
        if url is None:
            for candidate in metadata_urls(self.issuer):
                answer = yield _Get(candidate)
                if answer.status == 404:
                    continue
                doc = _json(answer, "issuer metadata")
                # RFC 8414 §3.3: the issuer in the metadata MUST be identical.
                if not isinstance(doc, dict) or doc.get("issuer") != self.issuer:
                    raise BackendUnavailable("issuer metadata names another issuer")
                if not _absolute(doc.get("jwks_uri")):
                    raise BackendUnavailable("issuer metadata has no jwks_uri")
                url = self.jwks_url = doc["jwks_uri"]
                break
            else:
                raise BackendUnavailable("the issuer publishes no metadata")
        answer = yield _Get(url)
        jwks = _json(answer, "JWKS")
        return jwks, max_age(answer.cache_control, self.ring.default_max_age, 60.0, 86400.0)

    def _landed(self, outcome: tuple[Any, float] | BackendUnavailable) -> None:
        now = self._clock()
        if isinstance(outcome, BackendUnavailable):
            logger.warning("fetching the keys of %s failed: %s", self.issuer, outcome)
            self.ring.failed(now)
            return
        jwks, age = outcome
        if self.ring.install(jwks, age, now, self.algorithms) == 0:
            logger.warning("the JWKS of %s has no usable key; keeping the old keys", self.issuer)

    def _limit(self, body: bytearray) -> None:
        if len(body) > self.max_response_bytes:
            raise BackendUnavailable("answer too large")

    # -- sync face -------------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._client_kwargs)
            return self._client

    def _get(self, url: str) -> _Answer:
        buf = bytearray()
        try:
            with self._sync_client().stream("GET", url) as r:
                for chunk in r.iter_bytes():
                    buf += chunk
                    self._limit(buf)
                return _answer(r, bytes(buf))
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{type(exc).__name__} fetching {url}") from exc

    def _fetch(self, generation: int) -> None:
        # Single flight: whoever holds the lock fetches; the others wait for it and
        # then plan again with the keys it brought (or its failure).
        with self._fetch_lock:
            if self.ring.generation != generation:
                return
            flow = self._fetch_flow()
            try:
                get = next(flow)
                while True:
                    get = flow.send(self._get(get.url))
            except StopIteration as stop:
                self._landed(stop.value)
            except BackendUnavailable as exc:
                self._landed(exc)
            except BaseException:
                # Cancelled or crashed: never leave the ring waiting for this fetch.
                self.ring.failed(self._clock())
                raise

    def lookup(self, token: str) -> TokenInfo | None:
        """Check `token`; None if it is not a valid access token. Raises BackendUnavailable."""
        if self.ring.refresh_due(self._clock()):
            generation = self.ring.generation
            threading.Thread(
                target=self._fetch, args=(generation,), name="bearerguard-jwks", daemon=True
            ).start()
        flow = self._check(token)
        try:
            step = next(flow)
            while True:
                self._fetch(step.generation)
                step = next(flow)
        except StopIteration as stop:
            result: TokenInfo | None = stop.value
            return result

    def close(self) -> None:
        """Close the sync HTTP client (the async one: `aclose`)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- async face ------------------------------------------------------------------

    def _async_parts(self) -> tuple[httpx.AsyncClient, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._alock is None or self._aloop is not loop:
            self._aclient = httpx.AsyncClient(**self._client_kwargs)
            self._alock = asyncio.Lock()
            self._aloop = loop
        return self._aclient, self._alock

    async def _aget(self, url: str) -> _Answer:
        client, _ = self._async_parts()
        buf = bytearray()
        try:
            async with client.stream("GET", url) as r:
                async for chunk in r.aiter_bytes():
                    buf += chunk
                    self._limit(buf)
                return _answer(r, bytes(buf))
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{type(exc).__name__} fetching {url}") from exc

    async def _afetch(self, generation: int) -> None:
        _, lock = self._async_parts()
        async with lock:
            if self.ring.generation != generation:
                return
            flow = self._fetch_flow()
            try:
                get = next(flow)
                while True:
                    get = flow.send(await self._aget(get.url))
            except StopIteration as stop:
                self._landed(stop.value)
            except BackendUnavailable as exc:
                self._landed(exc)
            except BaseException:
                # Cancelled or crashed: never leave the ring waiting for this fetch.
                self.ring.failed(self._clock())
                raise

    async def alookup(self, token: str) -> TokenInfo | None:
        """Async face of `lookup`; fetches never block the event loop."""
        if self.ring.refresh_due(self._clock()):
            task = asyncio.ensure_future(self._afetch(self.ring.generation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        flow = self._check(token)
        try:
            step = next(flow)
            while True:
                await self._afetch(step.generation)
                step = next(flow)
        except StopIteration as stop:
            result: TokenInfo | None = stop.value
            return result

    async def aclose(self) -> None:
        """Close the async client (from its event loop) and the sync client."""
        for task in list(self._tasks):
            task.cancel()
        client, self._aclient, self._aloop, self._alock = self._aclient, None, None, None
        if client is not None:
            await client.aclose()
        self.close()


def _answer(r: httpx.Response, body: bytes) -> _Answer:
    return _Answer(
        r.status_code,
        r.headers.get("content-type", ""),
        r.headers.get("cache-control", ""),
        body,
    )
