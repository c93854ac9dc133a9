"""A resource server guarded by bearerguard, on Flask (WSGI ``app``).

Configured from the environment (see ``bearerguard.config.from_env``)::

    BEARERGUARD_STORE=sqlite:///bearerguard.db                    # the auth service's store
    # or introspect at the auth service instead:
    BEARERGUARD_INTROSPECTION_URL=http://127.0.0.1:8000/introspect
    BEARERGUARD_CLIENT_ID=… BEARERGUARD_CLIENT_SECRET=…
    BEARERGUARD_TRUSTED_PROXIES=10.0.0.1,10.0.0.2                 # optional
    BEARERGUARD_TOKEN_FORMAT=bearerguard    # optional: 401 for non-bgt_ tokens, no lookup
    # JWT access tokens of an identity provider too (a chain: JWTs there, the rest as above):
    BEARERGUARD_JWT_ISSUER=https://idp.example/realms/api         # BEARERGUARD_JWKS_URL optional
    BEARERGUARD_AUDIENCE=https://api.example                      # RFC 8707, any backend
    BEARERGUARD_RESOURCE=https://api.example                      # RFC 9728 metadata on

Routes: GET /health (public), GET /whoami (any valid token), GET /dns/zones (API dns),
GET /vps/servers (API vps).
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from bearerguard.config import from_env
from bearerguard.flask import BearerGuard, current_identity, require_api

settings = from_env()
guard = BearerGuard(backend=settings.backend, public_paths=["/health"], **settings.options)

dns = Blueprint("dns", __name__, url_prefix="/dns")
vps = Blueprint("vps", __name__, url_prefix="/vps")


@dns.get("/zones")
@require_api("dns")
def dns_zones() -> ResponseReturnValue:
    return jsonify(zones=["example.com", "example.org"])


@vps.before_request  # every view of this blueprint needs API vps
@require_api("vps")
def _needs_vps() -> None:
    return None


@vps.get("/servers")
def vps_servers() -> ResponseReturnValue:
    return jsonify(servers=[{"name": "web-1", "status": "running"}])


def create_app() -> Flask:
    app = Flask(__name__)
    guard.init_app(app)

    @app.get("/health")
    def health() -> ResponseReturnValue:
        return jsonify(status="ok")

    @app.get("/whoami")
    def whoami() -> ResponseReturnValue:
        return jsonify(key_id=current_identity.key_id, apis=sorted(current_identity.apis))

    app.register_blueprint(dns)
    app.register_blueprint(vps)
    return app


app = create_app()
