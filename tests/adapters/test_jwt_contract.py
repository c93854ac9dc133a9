"""JWT access tokens (RFC 9068) through both adapters, against a real issuer over HTTP.

Every row is a token the issuer (joserfc) or an attacker made; `JWTBackend` (PyJWT)
fetches the issuer's keys through its OIDC metadata, like in production.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator

import pytest

from adapter_harness import Harness
from bearerguard import ChainBackend, Challenge, StoreBackend
from bearerguard.backends.jwt import JWTBackend
from bearerguard.stores import MemoryStore
from helpers import issue, remember_secret
from jwt_issuer import AUDIENCE, JWTIssuer, b64, new_key

Make = Callable[..., Harness]


@pytest.fixture(scope="module")
def idp() -> Iterator[JWTIssuer]:
    with JWTIssuer() as issuer:
        yield issuer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _hs256_with_public_key(idp: JWTIssuer) -> str:
    # The classic confusion attack: HMAC keyed with the issuer's public RSA key.
    pem = idp.keys[0].as_pem(private=False)  # type: ignore[union-attr]
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'rsa-1'})}.{b64(idp.claims())}"
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return remember_secret(f"{signing_input}.{b64(sig)}")


def _alg_none(idp: JWTIssuer, signature: str) -> str:
    head = b64({"alg": "none", "typ": "at+jwt", "kid": "rsa-1"})
    return remember_secret(f"{head}.{b64(idp.claims())}.{signature}")


def _tampered(idp: JWTIssuer) -> str:
    head, _, sig = idp.sign().split(".")
    return remember_secret(f"{head}.{b64(idp.claims(scope='dns vps admin'))}.{sig}")


def _embedded_jwk(idp: JWTIssuer) -> str:
    # Signed by the issuer's real key: refused for carrying a key at all (RFC 8725 §3.10).
    return idp.sign(jwk=idp.keys[0].as_dict(private=False))


now = int(time.time())
ATTACKER = new_key("RSA", "rsa-1")  # an attacker's key that claims the issuer's kid
ATTACKER_EC = new_key("EC", "rsa-1")

# (id, token maker) rows that must be refused with 401 invalid_token.
REFUSED: list[tuple[str, Callable[[JWTIssuer], str]]] = [
    ("alg-none-empty-sig", lambda i: _alg_none(i, "")),
    ("alg-none-junk-sig", lambda i: _alg_none(i, "AAAA")),
    ("hs256-public-key", _hs256_with_public_key),
    ("alg-not-the-keys", lambda i: i.sign(alg="PS256")),
    ("es256-on-rsa-kid", lambda i: i.sign(key=ATTACKER_EC)),
    ("attacker-key-real-kid", lambda i: i.sign(key=ATTACKER)),
    ("unknown-kid", lambda i: i.sign(key=new_key("EC", "made-up"))),
    ("tampered-payload", _tampered),
    ("embedded-jwk", _embedded_jwk),
    ("jku", lambda i: i.sign(jku=i.issuer + "/jwks")),
    ("typ-jwt", lambda i: i.sign(typ="JWT")),
    ("typ-missing", lambda i: i.sign(typ=None)),
    ("wrong-iss", lambda i: i.sign(i.claims(iss="https://evil.example"))),
    ("wrong-aud", lambda i: i.sign(i.claims(aud="https://other.example"))),
    ("no-aud", lambda i: i.sign(i.claims(aud=None))),
    ("no-exp", lambda i: i.sign(i.claims(exp=None))),
    ("exp-string", lambda i: i.sign(i.claims(exp=str(now + 300)))),
    ("expired", lambda i: i.sign(i.claims(exp=int(time.time()) - 60))),
    ("nbf-future", lambda i: i.sign(i.claims(nbf=int(time.time()) + 60))),
    ("no-client", lambda i: i.sign(i.claims(client_id=None, sub=None))),
    ("ip-elsewhere", lambda i: i.sign(i.claims(ip="10.9.9.9"))),
]


@pytest.mark.parametrize("make", [m for _, m in REFUSED], ids=[n for n, _ in REFUSED])
def test_refused_tokens_get_401_invalid_token(
    harness: Make, idp: JWTIssuer, make: Callable[[JWTIssuer], str]
) -> None:
    token = make(idp)
    backend = JWTBackend(idp.issuer, AUDIENCE, algorithms=("RS256", "PS256", "ES256", "EdDSA"))
    h = harness(backend)
    r = h.get("/whoami", bearer(token))
    assert r.status_code == 401, r.text
    params = Challenge.from_header(r.headers["www-authenticate"])
    assert params["error"] == "invalid_token"
    assert h.calls.count == 0


ACCEPTED: list[tuple[str, Callable[[JWTIssuer], str], str]] = [
    ("rs256", lambda i: i.sign(), "client-1"),
    ("es256", lambda i: i.sign(key=i.keys[1]), "client-1"),
    ("eddsa", lambda i: i.sign(key=i.keys[2]), "client-1"),
    ("typ-media-type", lambda i: i.sign(typ="application/at+jwt"), "client-1"),
    ("typ-upper-case", lambda i: i.sign(typ="AT+JWT"), "client-1"),
    ("aud-list", lambda i: i.sign(i.claims(aud=["https://x.example", AUDIENCE])), "client-1"),
    ("sub-only", lambda i: i.sign(i.claims(client_id=None)), "user-1"),
    ("no-kid-one-rsa-key", lambda i: i.sign(kid=None), "client-1"),
    ("exp-within-leeway", lambda i: i.sign(i.claims(exp=int(time.time()) - 3)), "client-1"),
    ("nbf-within-leeway", lambda i: i.sign(i.claims(nbf=int(time.time()) + 3)), "client-1"),
    ("ip-here", lambda i: i.sign(i.claims(ip="127.0.0.1")), "client-1"),
]


@pytest.mark.parametrize(
    ("make", "key_id"), [(m, k) for _, m, k in ACCEPTED], ids=[n for n, _, _ in ACCEPTED]
)
def test_valid_tokens_reach_the_app(
    harness: Make, idp: JWTIssuer, make: Callable[[JWTIssuer], str], key_id: str
) -> None:
    h = harness(JWTBackend(idp.issuer, AUDIENCE))
    token = make(idp)
    for _ in range(2):  # the second request takes the cached path
        r = h.get("/whoami", bearer(token))
        assert r.status_code == 200, r.text
        assert r.json()["key_id"] == key_id
        assert r.json()["apis"] == ["dns", "vps"]


def test_scope_becomes_the_apis(harness: Make, idp: JWTIssuer) -> None:
    h = harness(JWTBackend(idp.issuer, AUDIENCE), api="dns")
    assert h.get("/whoami", bearer(idp.sign(idp.claims(scope="dns")))).status_code == 200
    r = h.get("/whoami", bearer(idp.sign(idp.claims(scope="vps"))))
    assert r.status_code == 403
    assert Challenge.from_header(r.headers["www-authenticate"])["scope"] == "dns"


def test_ip_claim_binds_the_token_on_cache_hits_too(harness: Make, idp: JWTIssuer) -> None:
    h = harness(JWTBackend(idp.issuer, AUDIENCE))
    token = idp.sign(idp.claims(ip="10.1.2.3"))
    assert h.get("/whoami", bearer(token), ip="10.1.2.3").status_code == 200
    assert h.get("/whoami", bearer(token), ip="10.1.2.3").status_code == 200
    assert h.get("/whoami", bearer(token), ip="10.1.2.4").status_code == 401


def test_cache_entry_never_outlives_exp(harness: Make, idp: JWTIssuer) -> None:
    h = harness(JWTBackend(idp.issuer, AUDIENCE, leeway=0), cache_ttl=60)
    token = idp.sign(idp.claims(exp=int(time.time()) + 2))
    assert h.get("/whoami", bearer(token)).status_code == 200
    entry = h.guard.cache.peek(hashlib.sha256(token.encode()).digest())
    assert entry is not None
    exp = int(time.time()) + 2
    assert entry.stale_until <= exp + 1 and entry.fresh_until <= exp + 1


def test_chain_serves_jwts_and_bearerguard_tokens_on_one_app(harness: Make, idp: JWTIssuer) -> None:
    store = MemoryStore()
    opaque = issue(store, ("dns",))
    chain = ChainBackend([JWTBackend(idp.issuer, AUDIENCE), StoreBackend(store)])
    h = harness(chain)
    r = h.get("/whoami", bearer(opaque.token))
    assert r.status_code == 200
    assert r.json()["key_id"] == opaque.key_id
    r = h.get("/whoami", bearer(idp.sign()))
    assert r.status_code == 200
    assert r.json()["key_id"] == "client-1"
    # A JWT-shaped token goes to the JWT backend only, and an opaque one to the store.
    assert h.get("/whoami", bearer(idp.sign(typ="JWT"))).status_code == 401
    assert h.get("/whoami", bearer("x" * 43)).status_code == 401


def test_resource_metadata_served_and_named_in_401s(harness: Make, idp: JWTIssuer) -> None:
    h = harness(
        JWTBackend(idp.issuer, AUDIENCE),
        api="dns",
        resource_metadata={"resource": AUDIENCE + "/v1", "authorization_servers": [idp.issuer]},
    )
    url = "https://api.example.test/.well-known/oauth-protected-resource/v1"
    for path in (
        "/.well-known/oauth-protected-resource/v1",
        "/.well-known/oauth-protected-resource",
    ):
        r = h.get(path)
        assert r.status_code == 200
        assert r.json() == {
            "resource": AUDIENCE + "/v1",
            "authorization_servers": [idp.issuer],
            "scopes_supported": ["dns"],
            "bearer_methods_supported": ["header"],
        }
    assert h.calls.count == 0
    # RFC 9728 §5.1: every 401 names the metadata, with or without an error code.
    r = h.get("/whoami")
    assert r.headers["www-authenticate"] == f'Bearer realm="api", resource_metadata="{url}"'
    r = h.get("/whoami", bearer(idp.sign(typ="JWT")))
    assert Challenge.from_header(r.headers["www-authenticate"])["resource_metadata"] == url
    # 403 keeps its scope and does not send the client looking for another token.
    r = h.get("/whoami", bearer(idp.sign(idp.claims(scope="vps"))))
    params = Challenge.from_header(r.headers["www-authenticate"])
    assert r.status_code == 403
    assert params["scope"] == "dns"
    assert "resource_metadata" not in params


def test_issuer_metadata_must_name_the_same_issuer(harness: Make) -> None:
    with JWTIssuer() as liar:
        liar.metadata_issuer = "https://evil.example"
        h = harness(JWTBackend(liar.issuer, AUDIENCE))
        r = h.get("/whoami", bearer(liar.sign()))
        assert r.status_code == 503
        assert Challenge.from_header(r.headers["www-authenticate"])["error"] == (
            "temporarily_unavailable"
        )
        assert liar.fetches() == 0


def test_jwks_url_skips_discovery(harness: Make, idp: JWTIssuer) -> None:
    before = idp.hits["/.well-known/openid-configuration"]
    h = harness(JWTBackend(idp.issuer, AUDIENCE, jwks_url=idp.issuer + "/jwks"))
    assert h.get("/whoami", bearer(idp.sign())).status_code == 200
    assert idp.hits["/.well-known/openid-configuration"] == before
