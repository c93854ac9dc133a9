"""The Flask extension against real Flask apps: app factory, blueprints, require_api."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from bearerguard import StoreBackend
from bearerguard.flask import BearerGuard, current_identity, get_identity, require_api
from bearerguard.stores import MemoryStore
from helpers import issue
from integration_support import assert_challenge, bearer


def make_app(guard: BearerGuard) -> Flask:
    """An app factory, as users write one: extension, blueprints, per-view APIs."""
    app = Flask(__name__)
    guard.init_app(app)

    @app.get("/health")
    def health() -> ResponseReturnValue:
        return jsonify(status="ok", identity=get_identity() is not None)

    @app.get("/whoami")
    def whoami() -> ResponseReturnValue:
        return jsonify(
            key_id=current_identity.key_id,
            apis=sorted(current_identity.apis),
            client_ip=current_identity.client_ip,
        )

    @app.get("/public/dns")
    @require_api("dns")
    def public_dns() -> ResponseReturnValue:
        return jsonify(ran=True)

    dns = Blueprint("dns", __name__, url_prefix="/dns")

    @dns.get("/zones")
    @require_api("dns")
    def zones() -> ResponseReturnValue:
        return jsonify(zones=["example.com"], key_id=current_identity.key_id)

    vps = Blueprint("vps", __name__, url_prefix="/vps")

    @vps.before_request
    @require_api("vps")
    def needs_vps() -> None:
        return None

    @vps.get("/servers")
    def servers() -> ResponseReturnValue:
        return jsonify(servers=["web-1"])

    app.register_blueprint(dns)
    app.register_blueprint(vps)
    return app


@pytest.fixture
def client(store: MemoryStore) -> Iterator[httpx.Client]:
    guard = BearerGuard(
        backend=StoreBackend(store), public_paths=["/health", "/public/*"], realm="flask"
    )
    app = make_app(guard)
    transport = httpx.WSGITransport(app=app, remote_addr="127.0.0.1")
    with httpx.Client(transport=transport, base_url="http://flask.test") as c:
        yield c
    app.extensions["bearerguard"].close()


def test_identity_visible_in_views(client: httpx.Client, store: MemoryStore) -> None:
    tok = issue(store, ("vps", "dns"))
    r = client.get("/whoami", headers=bearer(tok.token))
    assert r.status_code == 200, r.text
    assert r.json() == {"key_id": tok.key_id, "apis": ["dns", "vps"], "client_ip": "127.0.0.1"}


def test_public_path_has_no_identity(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "identity": False}


def test_no_token_401_and_bad_token_401(client: httpx.Client) -> None:
    assert_challenge(client.get("/whoami"), 401, None, realm="flask")
    assert_challenge(
        client.get("/whoami", headers=bearer("unknown-token")), 401, "invalid_token", realm="flask"
    )
    assert_challenge(
        client.get("/whoami", headers={"Authorization": "Bearer a b"}),
        400,
        "invalid_request",
        realm="flask",
    )


@pytest.mark.parametrize(
    ("path", "api", "other", "body"),
    [
        ("/dns/zones", "dns", "vps", lambda key_id: {"zones": ["example.com"], "key_id": key_id}),
        ("/vps/servers", "vps", "dns", lambda key_id: {"servers": ["web-1"]}),
    ],
    ids=["on a blueprint view", "on a whole blueprint"],
)
def test_require_api(
    client: httpx.Client,
    store: MemoryStore,
    path: str,
    api: str,
    other: str,
    body: Callable[[str], dict[str, Any]],
) -> None:
    allowed, refused = issue(store, (api,)), issue(store, (other,))
    r = client.get(path, headers=bearer(allowed.token))
    assert r.status_code == 200
    assert r.json() == body(allowed.key_id)
    assert_challenge(
        client.get(path, headers=bearer(refused.token)),
        403,
        "insufficient_scope",
        scope=api,
        realm="flask",
    )
    assert_challenge(client.get(path), 401, None, realm="flask")


def test_require_api_on_a_public_path_fails_closed(client: httpx.Client) -> None:
    # The path is public, so no identity: the view that needs an API must not run.
    assert_challenge(client.get("/public/dns"), 401, None, realm="flask")


def test_app_wide_api_and_factory_makes_independent_apps(store: MemoryStore) -> None:
    guard = BearerGuard(backend=StoreBackend(store), api="dns", public_paths=["/health"])
    app1, app2 = make_app(guard), make_app(guard)
    assert app1.extensions["bearerguard"] is not app2.extensions["bearerguard"]
    dns = issue(store, ("dns", "vps"))
    other = issue(store, ("vps",))
    for app in (app1, app2):
        t = httpx.WSGITransport(app=app, remote_addr="127.0.0.1")
        with httpx.Client(transport=t, base_url="http://f") as c:
            assert c.get("/whoami", headers=bearer(dns.token)).status_code == 200
            # the app-wide API is checked by the middleware before any view
            assert_challenge(
                c.get("/whoami", headers=bearer(other.token)),
                403,
                "insufficient_scope",
                scope="dns",
            )
        app.extensions["bearerguard"].close()


def test_constructor_with_app_and_double_init(store: MemoryStore) -> None:
    app = Flask(__name__)
    guard = BearerGuard(app, backend=StoreBackend(store))
    try:
        with pytest.raises(RuntimeError, match="already"):
            guard.init_app(app)
    finally:
        app.extensions["bearerguard"].close()


def test_require_api_without_extension_refuses_loudly(store: MemoryStore) -> None:
    app = Flask(__name__)

    @app.get("/x")
    @require_api("dns")
    def x() -> ResponseReturnValue:
        return "ran"

    t = httpx.WSGITransport(app=app, remote_addr="127.0.0.1")
    with httpx.Client(transport=t, base_url="http://f") as c:
        r = c.get("/x")
    assert r.status_code == 500
    assert "ran" not in r.text


def test_bad_api_name_fails_at_decoration() -> None:
    with pytest.raises(ValueError):
        require_api('dn"s\n')
