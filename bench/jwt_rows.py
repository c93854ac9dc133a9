"""JWT rows: `JWTBackend` against PyJWT alone, and the JWT cached path against an opaque one.

``python -m bench.jwt_rows [--rounds N] [--batch N]`` prints JSON; ``make bench`` runs it
too (``results["jwt"]``). All rows of one table run interleaved, round after round, in
one process, so machine load hits them alike; a ratio is the median of the per-round
ratios.

* cold verify: ``JWTBackend.lookup(token)`` (header, key choice, signature, claims →
  TokenInfo; keys already fetched) against one ``jwt.decode(token, key, algorithms=[alg],
  audience=…, issuer=…)`` of the same token: the least any resource server must do.
  Goal: at most 1.2x for RS256, ES256 and EdDSA.
* cached path: the ASGI middleware answering a request whose token is fresh in its
  cache, a JWT against a bearerguard opaque token (store backend). Goal: about 1.0x.
  A third row, an opaque token as long as the JWT, shows what the length alone costs
  (the cache key is a SHA-256 of the token).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bearerguard import BearerGuardMiddleware, StoreBackend
from bearerguard.backends.jwt import JWTBackend
from bearerguard.stores import MemoryStore
from bearerguard.stores.base import TokenRecord, new_token
from bearerguard.tokens import token_digest

AUDIENCE = "https://api.bench.test"


def _keys() -> dict[str, Any]:
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }


class _Issuer:
    """The JWKS over HTTP on 127.0.0.1 (the backend fetches it once, like in production)."""

    def __init__(self, keys: dict[str, Any]) -> None:
        jwks = []
        for alg, key in keys.items():
            jwk = json.loads(pyjwt.get_algorithm_by_name(alg).to_jwk(key.public_key()))
            jwk["kid"] = alg.lower()
            jwks.append(jwk)
        body = json.dumps({"keys": jwks}).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sign(key: Any, alg: str, issuer: str) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "exp": now + 3600,
        "iat": now,
        "client_id": "bench-client",
        "scope": "dns vps",
    }
    return pyjwt.encode(claims, key, algorithm=alg, headers={"typ": "at+jwt", "kid": alg.lower()})


def _per_op(fn: Callable[[], object], batch: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(batch):
        fn()
    return (time.perf_counter_ns() - start) / batch / 1000.0  # µs


def _interleave(
    rows: dict[str, Callable[[], object]], rounds: int, batch: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for fn in rows.values():  # warm up
        _per_op(fn, max(1, batch // 10))
    for r in range(rounds):
        order = list(rows.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            samples[name].append(_per_op(fn, batch))
    return samples


def _ratio(num: list[float], den: list[float]) -> float:
    return round(statistics.median(a / b for a, b in zip(num, den, strict=True)), 3)


def cold_verify(rounds: int, batch: int) -> dict[str, Any]:
    keys = _keys()
    issuer = _Issuer(keys)
    try:
        backend = JWTBackend(issuer.url, AUDIENCE, jwks_url=issuer.url + "/jwks")
        out: dict[str, Any] = {}
        rows: dict[str, Callable[[], object]] = {}
        for alg, key in keys.items():
            token = _sign(key, alg, issuer.url)
            public = key.public_key()
            assert backend.lookup(token) is not None
            rows[f"{alg} JWTBackend.lookup"] = lambda t=token: backend.lookup(t)
            rows[f"{alg} jwt.decode"] = lambda t=token, k=public, a=alg: pyjwt.decode(
                t, k, algorithms=[a], audience=AUDIENCE, issuer=issuer.url
            )
        samples = _interleave(rows, rounds, batch)
        for alg in keys:
            ours, raw = samples[f"{alg} JWTBackend.lookup"], samples[f"{alg} jwt.decode"]
            out[alg] = {
                "backend_us": round(statistics.median(ours), 2),
                "pyjwt_us": round(statistics.median(raw), 2),
                "ratio": _ratio(ours, raw),
                "goal": 1.2,
            }
        backend.close()
        return out
    finally:
        issuer.close()


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def cached_path(rounds: int, batch: int) -> dict[str, Any]:
    keys = _keys()
    issuer = _Issuer(keys)
    store = MemoryStore()
    key, _ = store.create_key(["dns", "vps"])
    token = _sign(keys["RS256"], "RS256", issuer.url)
    opaque = new_token()
    long_opaque = (opaque * 20)[: len(token)]
    now = time.time()
    for tok in (opaque, long_opaque):
        store.put_token(
            TokenRecord(token_digest(tok), key.key_id, key.apis, "127.0.0.1", now, 3600, now + 3600)
        )
    jwt_mw = BearerGuardMiddleware(
        _noop_app,
        backend=JWTBackend(issuer.url, AUDIENCE, jwks_url=issuer.url + "/jwks"),
        cache_ttl=3600,
        touch_interval=3600,
    )
    opaque_mw = BearerGuardMiddleware(  # the long opaque token is not bgt_-shaped
        _noop_app,
        backend=StoreBackend(store),
        token_format=None,
        cache_ttl=3600,
        touch_interval=3600,
    )
    loop = asyncio.new_event_loop()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    def scope(tok: str) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/whoami",
            "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {tok}".encode())],
            "client": ("127.0.0.1", 40000),
            "query_string": b"",
        }

    async def many(mw: BearerGuardMiddleware, tok: str, n: int) -> None:
        for _ in range(n):
            await mw(scope(tok), receive, send)

    try:
        loop.run_until_complete(many(jwt_mw, token, 2))  # fill both caches
        loop.run_until_complete(many(opaque_mw, opaque, 2))
        loop.run_until_complete(many(opaque_mw, long_opaque, 2))
        assert len(jwt_mw.guard.cache) == 1 and len(opaque_mw.guard.cache) == 2
        samples: dict[str, list[float]] = {"jwt": [], "opaque": [], "opaque_long": []}
        for r in range(rounds + 1):
            order = [
                ("jwt", jwt_mw, token),
                ("opaque", opaque_mw, opaque),
                ("opaque_long", opaque_mw, long_opaque),
            ]
            if r % 2:
                order.reverse()
            for name, mw, tok in order:
                start = time.perf_counter_ns()
                loop.run_until_complete(many(mw, tok, batch))
                if r:  # round 0 warms up
                    samples[name].append((time.perf_counter_ns() - start) / batch / 1000.0)
        return {
            "jwt_us": round(statistics.median(samples["jwt"]), 2),
            "opaque_us": round(statistics.median(samples["opaque"]), 2),
            "ratio": _ratio(samples["jwt"], samples["opaque"]),
            "goal": "about 1.0",
            "jwt_length": len(token),
            "opaque_long_us": round(statistics.median(samples["opaque_long"]), 2),
            "ratio_same_length": _ratio(samples["jwt"], samples["opaque_long"]),
        }
    finally:
        jwt_mw.close()
        opaque_mw.close()
        loop.close()
        issuer.close()


def run(rounds: int = 15, batch: int = 300) -> dict[str, Any]:
    """Both tables; `rounds` interleaved rounds of `batch` calls per row."""
    return {
        "cold_verify": cold_verify(rounds, batch),
        "cached_path": cached_path(rounds, batch * 20),
        "rounds": rounds,
        "batch": batch,
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.jwt_rows", description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batch", type=int, default=300)
    args = p.parse_args()
    json.dump(run(args.rounds, args.batch), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
