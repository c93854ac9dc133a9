"""Issue 12 over introspection: the breaker (H1) and the ``client_ip`` member (H4)."""

from __future__ import annotations

from collections.abc import Callable

from introspection_support import Harness, ScriptedServer, Tokens, new_token

from bearerguard.backends.introspection import IntrospectionBackend, introspection_form

HOLDER = "127.0.0.2"


def test_answers_about_one_token_refuse_it_and_never_open_the_breaker(
    scripted: ScriptedServer,
    tokens: Tokens,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    """A: junk tokens the service refuses (413, 400) are 401s; the breaker stays closed."""
    backend = make_backend(scripted.url, breaker_threshold=3, breaker_reset=60.0)
    h = make_harness(backend)
    for mode in ("413", "400"):
        scripted.mode = mode
        for _ in range(10):
            r = h.get("/whoami", new_token())
            assert r.status_code == 401, r.text
            assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert backend.breaker.state == "closed"
    # A real token still gets through, without waiting for any reset.
    scripted.mode = "ok"
    good = tokens.add(new_token(), client_id="key_a", scope="dns", ip="127.0.0.1", ttl=300)
    assert h.get("/whoami", good).status_code == 200
    # 5xx answers are what the breaker counts.
    scripted.mode = "500"
    for _ in range(3):
        assert h.get("/whoami", new_token()).status_code == 503
    assert backend.breaker.state == "open"


def test_the_request_address_goes_along_as_client_ip(
    scripted: ScriptedServer,
    tokens: Tokens,
    make_backend: Callable[..., IntrospectionBackend],
    make_harness: Callable[..., Harness],
) -> None:
    h = make_harness(make_backend(scripted.url))
    good = tokens.add(new_token(), client_id="key_a", scope="dns", ip=HOLDER, ttl=300)
    assert h.get("/whoami", good, ip=HOLDER).status_code == 200
    assert scripted.forms[-1] == {"token_type_hint": "access_token", "client_ip": HOLDER}
    assert introspection_form("t") == {"token": "t", "token_type_hint": "access_token"}
