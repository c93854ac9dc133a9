"""Every row of the request contract, through both adapters, on real apps.

The contract is R1 to R11 of docs/design.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from adapter_harness import Harness
from bearerguard import BackendUnavailable, Challenge, StoreBackend, TokenInfo
from bearerguard.stores import MemoryStore
from helpers import FakeClock, Issued, issue

Make = Callable[..., Harness]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge_of(resp: Any) -> dict[str, str]:
    return Challenge.from_header(resp.headers["www-authenticate"])


def assert_error(resp: Any, status: int, error: str, scope: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    params = challenge_of(resp)
    assert params["realm"] == "api"
    assert params["error"] == error
    body = json.loads(resp.text)
    assert body["error"] == error
    assert body["error_description"] == params["error_description"]
    assert resp.headers["content-type"] == "application/json"
    if scope is not None:
        assert params["scope"] == scope


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def dns(store: MemoryStore) -> Issued:
    return issue(store, ("dns", "vps"))


def test_public_path_passes_without_credentials(harness: Make, store: MemoryStore) -> None:
    h = harness(StoreBackend(store), api="dns", public_paths=["/health"])
    r = h.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_prefix_public_path(harness: Make, store: MemoryStore) -> None:
    h = harness(StoreBackend(store), public_paths=["/hea*"])
    assert h.get("/health").status_code == 200
    assert h.get("/whoami").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Digest username=x"},
        {"X-Token": "abc"},
    ],
    ids=["none", "basic", "digest", "other-header"],
)
def test_no_bearer_credentials_is_401_without_error_code(
    harness: Make, store: MemoryStore, headers: dict[str, str] | None
) -> None:
    h = harness(StoreBackend(store))
    r = h.get("/whoami", headers)
    assert r.status_code == 401
    # RFC 6750 §3.1: no error code when the request lacked any authentication info.
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'
    assert h.calls.count == 0


def test_realm_is_configurable_and_quoted(harness: Make, store: MemoryStore) -> None:
    h = harness(StoreBackend(store), realm='dns "zone" api')
    r = h.get("/whoami")
    assert r.headers["www-authenticate"] == 'Bearer realm="dns \\"zone\\" api"'
    assert challenge_of(r)["realm"] == 'dns "zone" api'


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Bearer ",
        "bearer a b",
        "Bearer abc,def",
        'Bearer ab"c',
        "Bearer =abc",
        "Bearer a" + "b" * 4096,
        "Bearer abc, Bearer def",
    ],
    ids=["empty", "blank", "two-words", "comma", "quote", "leading-eq", "too-long", "joined"],
)
def test_malformed_bearer_is_400_invalid_request(
    harness: Make, store: MemoryStore, value: str
) -> None:
    h = harness(StoreBackend(store))
    r = h.get("/whoami", {"Authorization": value})
    assert_error(r, 400, "invalid_request")
    assert h.calls.count == 0


def test_two_authorization_headers_is_400(harness: Make, store: MemoryStore, dns: Issued) -> None:
    h = harness(StoreBackend(store))
    two = [("Authorization", f"Bearer {dns.token}"), ("Authorization", "Bearer x")]
    if h.kind == "wsgi":
        # httpx's WSGITransport keeps only the last value; real WSGI servers join repeated
        # headers with commas (see test_two_headers_over_a_real_wsgi_server).
        two = [("Authorization", f"Bearer {dns.token},Bearer x")]
    assert_error(h.get("/whoami", two), 400, "invalid_request")


def test_two_headers_over_a_real_wsgi_server(store: MemoryStore, dns: Issued) -> None:
    import http.client
    import threading

    from werkzeug.serving import make_server

    from adapter_harness import AppCalls, flask_app
    from bearerguard import WSGIBearerGuard

    app = flask_app(AppCalls())
    guard = WSGIBearerGuard(app.wsgi_app, backend=StoreBackend(store))
    app.wsgi_app = guard  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("GET", "/whoami")
        conn.putheader("Authorization", f"Bearer {dns.token}")
        conn.putheader("Authorization", "Bearer x")
        conn.endheaders()
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        assert resp.status == 400
        assert body["error"] == "invalid_request"
    finally:
        server.shutdown()
        server.server_close()
        guard.close()


def test_header_and_query_token_at_once_is_400(
    harness: Make, store: MemoryStore, dns: Issued
) -> None:
    h = harness(StoreBackend(store), query_token=True)
    r = h.get(f"/whoami?access_token={dns.token}", bearer(dns.token))
    assert_error(r, 400, "invalid_request")


def test_query_token_only_when_enabled(harness: Make, store: MemoryStore, dns: Issued) -> None:
    off = harness(StoreBackend(store))
    assert off.get(f"/whoami?access_token={dns.token}").status_code == 401
    on = harness(StoreBackend(store), query_token=True)
    r = on.get(f"/whoami?access_token={dns.token}")
    assert r.status_code == 200, r.text
    assert r.json()["key_id"] == dns.key_id


def test_scheme_is_case_insensitive(harness: Make, store: MemoryStore, dns: Issued) -> None:
    h = harness(StoreBackend(store))
    for scheme in ("bearer", "BEARER", "BeArEr"):
        r = h.get("/whoami", {"Authorization": f"{scheme} {dns.token}"})
        assert r.status_code == 200, r.text


def test_token_length_limit_is_configurable(harness: Make, store: MemoryStore) -> None:
    h = harness(StoreBackend(store), max_token_length=16)
    assert_error(h.get("/whoami", bearer("a" * 17)), 400, "invalid_request")
    assert_error(h.get("/whoami", bearer("a" * 16)), 401, "invalid_token")


def test_valid_token_reaches_app_with_identity(
    harness: Make, store: MemoryStore, dns: Issued
) -> None:
    h = harness(StoreBackend(store), api="dns")
    r = h.get("/whoami", bearer(dns.token))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "key_id": dns.key_id,
        "apis": ["dns", "vps"],
        "client_ip": "127.0.0.1",
        "user": dns.key_id,
        "scopes": ["dns", "vps"],
    }


def test_streaming_response_untouched(harness: Make, store: MemoryStore, dns: Issued) -> None:
    h = harness(StoreBackend(store))
    r = h.get("/stream", bearer(dns.token))
    assert r.status_code == 200
    assert r.text == "chunk0;chunk1;chunk2;"


def test_unknown_token_is_401_invalid_token(harness: Make, store: MemoryStore) -> None:
    h = harness(StoreBackend(store))
    assert_error(h.get("/whoami", bearer("unknown-token")), 401, "invalid_token")
    assert h.calls.count == 0


def test_revoked_token_is_401(harness: Make, store: MemoryStore, dns: Issued) -> None:
    h = harness(StoreBackend(store))
    assert h.get("/whoami", bearer(dns.token)).status_code == 200
    store.revoke_key(dns.key_id)  # the memory store announces it; the cache evicts at once
    assert_error(h.get("/whoami", bearer(dns.token)), 401, "invalid_token")


def test_expired_token_is_401(harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("dns",), ttl=1.0, now=time.time() - 5)
    h = harness(StoreBackend(store))
    assert_error(h.get("/whoami", bearer(tok.token)), 401, "invalid_token")


def test_token_from_another_address_is_401(harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("dns",), ip="127.0.0.1")
    h = harness(StoreBackend(store))
    assert h.get("/whoami", bearer(tok.token), ip="127.0.0.1").status_code == 200
    # A cache hit must still check the address (docs/design.md R10).
    assert_error(h.get("/whoami", bearer(tok.token), ip="127.0.0.2"), 401, "invalid_token")
    assert h.calls.count == 1


def test_ipv4_mapped_ipv6_peer_matches(harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("dns",), ip="127.0.0.1")
    h = harness(StoreBackend(store))
    r = h.get("/whoami", bearer(tok.token), ip="::ffff:127.0.0.1")
    assert r.status_code == 200, r.text
    assert r.json()["client_ip"] == "127.0.0.1"


def test_ip_binding_can_be_turned_off(harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("dns",), ip="127.0.0.1")
    h = harness(StoreBackend(store), ip_binding=False)
    assert h.get("/whoami", bearer(tok.token), ip="127.0.0.9").status_code == 200


def test_forwarded_for_only_from_trusted_proxy(harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("dns",), ip="203.0.113.7")
    xff = {"Authorization": f"Bearer {tok.token}", "X-Forwarded-For": "203.0.113.7"}
    untrusted = harness(StoreBackend(store))
    assert_error(untrusted.get("/whoami", xff, ip="10.0.0.5"), 401, "invalid_token")
    trusted = harness(StoreBackend(store), trusted_proxies=["10.0.0.0/8"])
    r = trusted.get("/whoami", xff, ip="10.0.0.5")
    assert r.status_code == 200, r.text
    assert r.json()["client_ip"] == "203.0.113.7"
    forged = {**xff, "X-Forwarded-For": "203.0.113.7, 198.51.100.1"}
    assert_error(trusted.get("/whoami", forged, ip="10.0.0.5"), 401, "invalid_token")


def test_missing_api_is_403_with_scope(harness: Make, store: MemoryStore) -> None:
    tok = issue(store, ("vps",))
    h = harness(StoreBackend(store), api="dns")
    assert_error(h.get("/whoami", bearer(tok.token)), 403, "insufficient_scope", scope="dns")
    # and again from the cache: the API check runs on hits too (CVE-2021-32701)
    assert_error(h.get("/whoami", bearer(tok.token)), 403, "insufficient_scope", scope="dns")
    assert h.calls.count == 0


class Failing:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    def lookup(self, token: str) -> TokenInfo | None:
        self.calls += 1
        raise self.exc


class Hanging:
    def __init__(self) -> None:
        self.calls = 0

    def lookup(self, token: str) -> TokenInfo | None:
        self.calls += 1
        time.sleep(2.0)
        return None


class Garbage:
    def lookup(self, token: str) -> Any:
        return {"active": True, "client_id": "evil"}


@pytest.mark.parametrize(
    "backend",
    [
        Failing(BackendUnavailable("down")),
        Failing(ConnectionRefusedError("refused")),
        Failing(ValueError("boom")),
        Hanging(),
        Garbage(),
    ],
    ids=["unavailable", "os-error", "crash", "hang", "garbage"],
)
def test_backend_failure_is_503_and_app_never_runs(harness: Make, backend: object) -> None:
    h = harness(backend, backend_timeout=0.3, retry_after=7)
    started = time.monotonic()
    r = h.get("/whoami", bearer("some-token"))
    elapsed = time.monotonic() - started
    assert_error(r, 503, "temporarily_unavailable")
    assert r.headers["retry-after"] == "7"
    assert h.calls.count == 0
    assert elapsed < 1.5  # the backend's hang does not hang the app


def test_stale_if_error_serves_cached_positive_while_backend_down(
    harness: Make, store: MemoryStore, clock: FakeClock
) -> None:
    tok = issue(store, ("dns",), now=clock.now)

    class Flaky:
        down = False

        def __init__(self) -> None:
            self.inner = StoreBackend(store, clock=clock)

        def lookup(self, token: str) -> TokenInfo | None:
            if self.down:
                raise BackendUnavailable("down")
            return self.inner.lookup(token)

    backend = Flaky()
    h = harness(backend, clock=clock, cache_ttl=10, stale_if_error=30)
    assert h.get("/whoami", bearer(tok.token)).status_code == 200
    backend.down = True
    clock.advance(15)  # past the cache TTL, within the stale grace
    assert h.get("/whoami", bearer(tok.token)).status_code == 200
    clock.advance(30)  # past the grace
    assert_error(h.get("/whoami", bearer(tok.token)), 503, "temporarily_unavailable")


def test_no_stale_serving_by_default(harness: Make, store: MemoryStore, clock: FakeClock) -> None:
    tok = issue(store, ("dns",), now=clock.now)

    class Flaky:
        down = False

        def lookup(self, token: str) -> TokenInfo | None:
            if self.down:
                raise BackendUnavailable("down")
            return StoreBackend(store, clock=clock).lookup(token)

    backend = Flaky()
    h = harness(backend, clock=clock, cache_ttl=10)
    assert h.get("/whoami", bearer(tok.token)).status_code == 200
    backend.down = True
    clock.advance(11)
    assert_error(h.get("/whoami", bearer(tok.token)), 503, "temporarily_unavailable")
