"""The auth service shipped as ``bearerguard serve``: see `create_app`."""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY, create_app
from .throttle import LoginThrottle

__all__ = ["DEFAULT_MAX_BODY", "LoginThrottle", "create_app"]
