"""The auth service shipped as ``bearerguard serve``: see `create_app`."""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY, create_app
from .throttle import LoginThrottle, SharedLoginThrottle

__all__ = ["DEFAULT_MAX_BODY", "LoginThrottle", "SharedLoginThrottle", "create_app"]
