"""Client authentication at the auth service: RFC 6749 §2.3.1 with the H3 throttle."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from starlette.requests import Request

from ..clientip import ClientIPResolver
from ..metrics import ServiceMetrics
from ..stores.base import KeyRecord, verify_secret
from .forms import BadRequest, client_credentials, too_long
from .keycache import KeyCache
from .store import ServiceStore
from .throttle import Throttle

__all__ = ["ClientAuthenticator", "invalid_client"]

logger = logging.getLogger("bearerguard.server")


def invalid_client(description: str = "Invalid credentials") -> BadRequest:
    """RFC 6749 §5.2 ``invalid_client`` (401, with the service's Basic challenge)."""
    return BadRequest("invalid_client", description, 401)


class ClientAuthenticator:
    """Checks the key a client presents, and finds the client's address."""

    def __init__(
        self,
        store: ServiceStore,
        *,
        throttle: Throttle,
        metrics: ServiceMetrics,
        clock: Callable[[], float],
        resolver: ClientIPResolver,
        keys: KeyCache | None = None,
    ) -> None:
        self.store = store
        self.keys = keys if keys is not None else KeyCache(0)
        self.throttle = throttle
        self.metrics = metrics
        self.clock = clock
        self.resolver = resolver

    async def authenticate(self, request: Request, form: dict[str, str]) -> KeyRecord:
        """Check the client's key; raise BadRequest (401, 429) unless it is good.

        RFC 6749 §2.3.1: the key id and secret may be sent as Basic credentials or as
        ``client_id``/``client_secret`` form fields.
        """
        creds = client_credentials(request.headers.getlist("authorization"), form)
        if creds is None:
            raise invalid_client("Client authentication required")
        if too_long(creds):
            # No real key looks like this: only the source address is counted.
            verify_secret(None, creds.secret[:256])
            key = None
        else:
            # H3: the secret is checked on every attempt, throttled or not, in
            # constant time; the right one is always accepted.
            self.metrics.secret_checks += 1
            now = self.clock()
            cached = self.keys.get(creds.key_id)
            if cached is not None and verify_secret(cached, creds.secret, now):
                return await self._admitted(cached, fresh=False)
            # Not cached, or a secret the cached record does not know (rotated
            # elsewhere, or wrong): the store's record decides.
            key = await self.store.get_key(creds.key_id)
            if verify_secret(key, creds.secret, now) and key is not None:
                return await self._admitted(key, fresh=True)
        # A wrong guess. The same steps whether or not the key id exists (J). The
        # source address is resolved here: a good key never needs it.
        source = self.client_ip(request)
        wait = await self.throttle.awrong_guess(creds.key_id, source, known=key is not None)
        if wait is not None:
            self.metrics.throttled += 1
            logger.warning(
                "throttled authentication for key %s from %s",
                _printable(creds.key_id),
                source or "?",
            )
            raise BadRequest(
                "invalid_client", "Too many failed attempts; try again later", 429, wait
            )
        self.metrics.login_failures += 1
        logger.info(
            "failed authentication for key %s from %s", _printable(creds.key_id), source or "?"
        )
        raise invalid_client()

    async def _admitted(self, key: KeyRecord, *, fresh: bool) -> KeyRecord:
        """`key`, whose secret matched, unless its account is disabled; cached if `fresh`."""
        if key.account:
            # A disabled (or deleted) account's keys no longer log in. Checked on every
            # call, cached key or not: such a key still exists, so nothing else would
            # stop its new tokens (a revoked key's are refused by the store).
            owner = await self.store.call_sync("get_account", key.account)
            if owner is None or owner.disabled:
                raise invalid_client()
        if fresh:
            self.keys.put(key)
        return key

    def client_ip(self, request: Request) -> str | None:
        peer = request.client.host if request.client else None
        return self.resolver.resolve(peer, request.headers.getlist("x-forwarded-for"))


_KEY_ID = re.compile(r"key_[0-9a-f]{1,64}")


def _printable(text: str) -> str:
    """A key id as presented by a client, safe to log.

    Only text shaped like a key id is logged: a client that puts its secret or a token
    in the user-name field must not get it written to the log.
    """
    return text if _KEY_ID.fullmatch(text) else "(not a key id)"
