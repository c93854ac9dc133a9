"""Django settings of the example: no database, bearerguard's middleware, four routes.

The backend comes from the environment (``bearerguard.config.from_env``)::

    BEARERGUARD_STORE=sqlite:///bearerguard.db                    # the auth service's store
    # or introspect at the auth service instead:
    BEARERGUARD_INTROSPECTION_URL=http://127.0.0.1:8000/introspect
    BEARERGUARD_CLIENT_ID=… BEARERGUARD_CLIENT_SECRET=…
    BEARERGUARD_TRUSTED_PROXIES=10.0.0.1,10.0.0.2                 # optional
"""

from __future__ import annotations

import os
import secrets

DEBUG = False
# Nothing here signs anything (no sessions, no CSRF forms); a per-process key will do.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True

MIDDLEWARE = ["bearerguard.django.BearerGuardMiddleware"]
BEARERGUARD = {
    # No BACKEND: from_env() picks introspection or the store, and the trusted proxies.
    "PUBLIC_PATHS": ["/health"],
}
