"""A real JWT issuer for tests: HTTP on 127.0.0.1, OIDC metadata, a JWKS, joserfc signing.

    with JWTIssuer() as idp:
        backend = JWTBackend(idp.issuer, AUDIENCE)          # finds the JWKS itself
        token = idp.sign({"client_id": "c1", "scope": "dns"})
        idp.rotate()                                        # a new signing key, published
        idp.stop(); idp.start()                             # down, then up on the same port

It serves ``/.well-known/openid-configuration`` (OpenID Connect Discovery) and
``/jwks`` (with ``Cache-Control: max-age``); ``/.well-known/oauth-authorization-server``
answers 404 unless `rfc8414` is set, so the backend's fall-back to OIDC is exercised.
`hits` counts requests per path. The issuer signs with joserfc; the backend verifies
with PyJWT: two libraries that must agree.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import warnings
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from helpers import remember_secret
from live_service import free_port

AUDIENCE = "https://api.example.test"

Key = RSAKey | ECKey | OKPKey
_ALG = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_key(kty: str = "RSA", kid: str | None = None) -> Key:
    params = {"kid": kid} if kid else None
    if kty == "RSA":
        return RSAKey.generate_key(2048, parameters=params)
    if kty == "EC":
        return ECKey.generate_key("P-256", parameters=params)
    return OKPKey.generate_key("Ed25519", parameters=params)


class JWTIssuer:
    """An identity provider's token-signing side, over real HTTP (see module docstring)."""

    def __init__(self, *, max_age: int = 300, rfc8414: bool = False) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.max_age = max_age
        self.rfc8414 = rfc8414
        self.metadata_issuer = self.issuer
        self.keys: list[Key] = [
            new_key("RSA", "rsa-1"),
            new_key("EC", "ec-1"),
            new_key("OKP", "ed-1"),
        ]
        self.hits: Counter[str] = Counter()
        self.jwks_status = 200
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- signing ---------------------------------------------------------------------
    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "exp": now + 300,
            "iat": now,
            "jti": f"j{now}",
            "sub": "user-1",
            "client_id": "client-1",
            "scope": "dns vps",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: Key | None = None,
        alg: str | None = None,
        **header: Any,
    ) -> str:
        """A token signed by `key` (default: the first published key)."""
        key = key or self.keys[0]
        hdr: dict[str, Any] = {"alg": alg or _ALG[key.key_type], "typ": "at+jwt"}
        if key.kid:
            hdr["kid"] = key.kid
        hdr.update(header)
        hdr = {k: v for k, v in hdr.items() if v is not None}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc flags EdDSA as superseded (RFC 9864)
            token = jwt.encode(hdr, claims or self.claims(), key, algorithms=[hdr["alg"]])
        return remember_secret(token)

    def rotate(self, kty: str = "RSA", kid: str = "rsa-2") -> Key:
        """Publish a new key and sign with it from now on."""
        key = new_key(kty, kid)
        self.keys.insert(0, key)
        return key

    def jwks(self) -> dict[str, Any]:
        return KeySet(list(self.keys)).as_dict(private=False)

    # -- HTTP ------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                issuer.hits[self.path] += 1
                if self.path == "/.well-known/openid-configuration" or (
                    issuer.rfc8414 and self.path == "/.well-known/oauth-authorization-server"
                ):
                    doc = {"issuer": issuer.metadata_issuer, "jwks_uri": issuer.issuer + "/jwks"}
                    self._send(200, doc)
                elif self.path == "/jwks":
                    self._send(issuer.jwks_status, issuer.jwks(), f"max-age={issuer.max_age}")
                else:
                    self._send(404, {"error": "not_found"})

            def _send(self, status: int, doc: dict[str, Any], cache: str = "") -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if cache:
                    self.send_header("Cache-Control", cache)
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def start(self) -> JWTIssuer:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fetches(self) -> int:
        return self.hits["/jwks"]

    def __enter__(self) -> JWTIssuer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
