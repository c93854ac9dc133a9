"""`JWTBackend`: RFC 9068 JWT access tokens from another issuer, checked locally.

An identity provider (Keycloak, Auth0, Entra ID, Authlib, …) signs access tokens; the
resource server checks each one against the issuer's public keys (its JWKS) without
asking anyone. One module per job, every name re-exported here:

* `compact`: the token's shape (`parse_compact`, `parse_header`, `looks_like_jwt`, used
  by `ChainBackend`) and the header rules (`header_problem`);
* `keys`: which JWK verifies which algorithm (`key_algorithm`) and `KeyRing`, which
  holds the keys and decides when to fetch them; it does no I/O;
* `claims`: `verify_access_token` (signature and claims → `TokenInfo`);
* `fetch`: where the issuer's metadata is (`metadata_urls`), how long keys are kept
  (`max_age`), and the fetch steps as generators, sans I/O;
* `backend`: `JWTBackend`, which adds the HTTP clients and the two faces, `lookup` and
  `alookup`, which drive one shared generator.

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

try:
    import jwt as _pyjwt  # noqa: F401  (the extra is checked before any submodule loads)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "JWTBackend needs PyJWT with cryptography: pip install 'bearerguard[jwt]'"
    ) from exc

from .backend import JWTBackend
from .backend import logger as logger
from .claims import verify_access_token
from .compact import ACCESS_TOKEN_TYPES, Compact, looks_like_jwt, parse_compact, parse_header
from .compact import header_problem as header_problem
from .fetch import max_age, metadata_urls
from .keys import DEFAULT_ALGORITHMS, KeyRing, key_algorithm
from .keys import UNAVAILABLE as UNAVAILABLE
from .keys import UNKNOWN as UNKNOWN
from .keys import Fetch as Fetch

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
