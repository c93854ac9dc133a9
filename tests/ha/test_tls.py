"""The Redis store over real TLS: Debian's redis-server 7.0 serving TLS only.

The wheel's Valkey is built without TLS, so these servers are Debian's redis-server
(`redis_topology.find_tls_redis_server`; ``make redis-tls`` installs it), with a CA and
a server certificate made for this module (`redis_topology.Certificates`). Each node
has a password, which must never reach an error, a log line or the service's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, StoreBackend, WSGIBearerGuard
from bearerguard.server import create_app
from bearerguard.stores import StoreUnavailable, open_store
from bearerguard.stores.redis import RedisStore, token_record_key
from bearerguard.stores.redis.scripts import LeanScripts
from bearerguard.tokens import token_digest
from helpers import assert_store_down, issue, remember_secret
from live_service import LiveService, run_cli
from redis_server import free_port
from redis_topology import HOST, Certificates, TlsTopology

PASSWORD = remember_secret("tls-pw-Qx7-never-shown")
FORMS = ("single", "cluster", "sentinel")
REFUSED = "TLS certificate verification failed"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls(certs: Certificates) -> Iterator[TlsTopology]:
    with TlsTopology(certs, PASSWORD) as topology:
        yield topology


def _url(tls: TlsTopology, form: str, ca: Any) -> str:
    return str(getattr(tls, f"{form}_url")(ca))


def test_the_servers_speak_tls_only(tls: TlsTopology) -> None:
    # A plain PING to a TLS port gets no PONG: every other test here is over TLS.
    for node in (tls.single, tls.cluster, tls.sentinel):
        with socket.create_connection((HOST, node.port), timeout=5) as plain:
            plain.sendall(b"PING\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert not plain.recv(64).startswith(b"+")
        with node.client() as c:  # the same port over TLS
            assert c.ping()


def test_serve_over_rediss_logs_in_and_introspects(tls: TlsTopology, certs: Certificates) -> None:
    with LiveService(tls.single_url(certs.ca)) as svc:
        key_id, secret = svc.create_key(["dns"])
        rs_id, rs_secret = svc.create_key(["dns"], introspect=True)
        r = httpx.post(
            svc.base_url + "/login",
            data={"grant_type": "client_credentials"},
            auth=(key_id, secret),
        )
        assert r.status_code == 200, r.text
        token = remember_secret(r.json()["access_token"])
        r = httpx.post(svc.base_url + "/introspect", data={"token": token}, auth=(rs_id, rs_secret))
        assert r.status_code == 200, r.text
        assert r.json()["active"] is True
        assert r.json()["client_id"] == key_id
        assert httpx.get(svc.base_url + "/ready").status_code == 200
        with tls.single.client() as c:  # the record is on the TLS server
            assert c.exists(token_record_key(token_digest(token)))
    assert "rediss://:***@" in svc.output  # the start-up line names the store, redacted
    assert PASSWORD not in svc.output


def _wsgi_whoami(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["bearerguard.identity"].key_id.encode()]


async def _asgi_whoami(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.user.display_name)


@pytest.mark.parametrize("form", FORMS)
def test_store_backend_over_tls_answers_cold_then_cached(
    tls: TlsTopology, certs: Certificates, form: str
) -> None:
    """Sync (WSGI) and asyncio (ASGI): the first lookup reads Redis, the second the cache."""
    store = open_store(_url(tls, form, certs.ca))
    assert isinstance(store, RedisStore)
    calls = {"sync": 0, "async": 0}
    touch, atouch = store.touch_token, store.atouch_token

    def counted(*args: Any) -> Any:
        calls["sync"] += 1
        return touch(*args)

    async def acounted(*args: Any) -> Any:
        calls["async"] += 1
        return await atouch(*args)

    store.touch_token, store.atouch_token = counted, acounted  # type: ignore[method-assign]
    tok = issue(store, ("dns",))
    bearer = {"Authorization": f"Bearer {tok.token}"}
    wsgi = WSGIBearerGuard(_wsgi_whoami, backend=StoreBackend(store), cache_ttl=60)
    asgi = BearerGuardMiddleware(
        Starlette(routes=[Route("/", _asgi_whoami)]), backend=StoreBackend(store), cache_ttl=60
    )
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://rs") as c:
            assert [c.get("/", headers=bearer).text for _ in range(2)] == [tok.key_id] * 2

        async def main() -> list[str]:
            transport = httpx.ASGITransport(app=asgi, client=("127.0.0.1", 1234))
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://rs") as c:
                    return [(await c.get("/", headers=bearer)).text for _ in range(2)]
            finally:
                await store.aclose()  # the async client closes on its own loop

        assert asyncio.run(main()) == [tok.key_id] * 2
        assert calls == {"sync": 1, "async": 1}  # one cold lookup per face, then cached
    finally:
        wsgi.close()
        asgi.close()
        store.close()


@pytest.mark.parametrize(
    ("url_of", "said"),
    [
        # Verification is on by default: without ?ssl_ca_certs only the system's CAs count.
        (lambda tls, certs: tls.single_url(None), "self-signed certificate"),
        (lambda tls, certs: tls.cluster_url(certs.stranger_ca), "self-signed certificate"),
        # The right CA, but the certificate is for 127.0.0.1: the name is checked too.
        (lambda tls, certs: tls.single_url(certs.ca, host="localhost"), "Hostname mismatch"),
    ],
    ids=["single-no-ca", "cluster-stranger-ca", "single-wrong-name"],
)
def test_serve_refuses_an_unverified_server_in_one_line(
    tls: TlsTopology, certs: Certificates, url_of: Any, said: str
) -> None:
    url = url_of(tls, certs)
    args = ["serve", "--host", HOST, "--port", str(free_port()), "--store", url]
    try:
        done = run_cli(args, timeout=15)
    except subprocess.TimeoutExpired:  # its message would quote the URL
        pytest.fail("serve accepted the server and started", pytrace=False)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert REFUSED in line
    assert said in line
    assert PASSWORD not in line
    assert ":***@" in line


@pytest.mark.parametrize("form", FORMS)
def test_an_unknown_ca_is_503_at_the_service(
    tls: TlsTopology, certs: Certificates, form: str
) -> None:
    store = open_store(_url(tls, form, certs.stranger_ca))
    with pytest.raises(StoreUnavailable) as caught:
        store.ping()
    assert PASSWORD not in str(caught.value)
    if form != "sentinel":  # redis-py's Sentinel says only "no master found"
        assert REFUSED in str(caught.value)
    app = create_app(store, close_store=True)

    async def main() -> None:
        try:
            await assert_store_down(app)
        finally:
            await store.aclose()

    asyncio.run(main())
    store.close()


@pytest.mark.parametrize(
    ("ca_of", "host", "said"),
    [
        (lambda certs: certs.ca, HOST, None),
        (lambda certs: certs.stranger_ca, HOST, "self-signed certificate"),
        (lambda certs: certs.ca, "localhost", "Hostname mismatch"),
    ],
    ids=["right-ca", "stranger-ca", "wrong-name"],
)
def test_lean_lookups_and_logins_over_tls_check_the_server(
    tls: TlsTopology, certs: Certificates, ca_of: Any, host: str, said: str | None
) -> None:
    """On one Redis over TLS the lookups and logins of both faces use the lean clients,
    which check the certificate and the name as redis-py does: a refusal is
    StoreUnavailable saying why, without the password."""
    url = tls.single_url(ca_of(certs), host=host)
    store = open_store(url)
    assert isinstance(store, RedisStore)

    async def main() -> None:
        try:
            if said is None:
                tok = await asyncio.to_thread(issue, store, ("dns",))
                record = await store.atouch_token(token_digest(tok.token), 0.0)
                assert record is not None and record.key_id == tok.key_id
                scripts = store._alookups[asyncio.get_running_loop()]
                assert isinstance(scripts, LeanScripts)
                return
            with pytest.raises(StoreUnavailable) as caught:
                await store.atouch_token("0" * 64, 0.0)
            assert REFUSED in str(caught.value) and said in str(caught.value)
            assert PASSWORD not in str(caught.value)
        finally:
            await store.aclose()

    asyncio.run(main())
    store.close()
    # The sync face (put_token, touch_token) on the blocking LeanClient.
    store = open_store(url)
    assert isinstance(store, RedisStore)
    try:
        if said is None:
            tok = issue(store, ("dns",))
            record = store.touch_token(token_digest(tok.token), 0.0)
            assert record is not None and record.key_id == tok.key_id
            assert store._lean_client is not None and store._lean_client._idle
            return
        with pytest.raises(StoreUnavailable) as caught:
            store.touch_token("0" * 64, 0.0)
        assert REFUSED in str(caught.value) and said in str(caught.value)
        assert PASSWORD not in str(caught.value)
    finally:
        store.close()
