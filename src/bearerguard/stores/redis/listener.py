"""The pub/sub listener: one background thread per subscription to revocations.

On one Redis (or a Sentinel-managed primary) it uses ``SUBSCRIBE``; on a cluster,
sharded pub/sub (``SSUBSCRIBE``: the channel lives in one slot, on the node that owns
that slot). After an error the next attempt makes a new client, so after a failover it
reads the slot map afresh and subscribes on the promoted replica. One code path either
way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import redis

from ...tokens import Invalidation, fingerprint
from .codecs import decode_invalidation
from .connect import DRIVER_ERRORS

__all__ = ["Listener"]

# The name the store has always logged under, kept for log configurations.
logger = logging.getLogger("bearerguard.stores.redis")


class Listener(threading.Thread):
    """Listens on the invalidation channel until stopped; reconnects with backoff."""

    _BACKOFF_MIN = 0.05
    _BACKOFF_MAX = 1.0

    def __init__(
        self,
        connect: Callable[[], Any],
        channel: str,
        callback: Callable[[Invalidation], None],
        *,
        sharded: bool = False,
    ) -> None:
        super().__init__(name="bearerguard-redis-invalidations", daemon=True)
        self._connect = connect  # makes the client, in the thread (a cluster's connects)
        self._client: Any = None
        self._channel = channel
        self._callback = callback
        # The subscribe call, its confirmation and its message type, plain or sharded.
        self._verbs = (
            ("ssubscribe", "ssubscribe", "smessage")
            if sharded
            else (
                "subscribe",
                "subscribe",
                "message",
            )
        )
        self._stop_event = threading.Event()
        self.first_attempt = threading.Event()
        self.subscribed = threading.Event()

    def run(self) -> None:
        backoff = self._BACKOFF_MIN
        try:
            while not self._stop_event.is_set():
                try:
                    self._listen()
                except (*DRIVER_ERRORS, OSError) as exc:
                    self.subscribed.clear()
                    # A fresh client next time: a cluster client keeps the slot map it
                    # was made with, and after a failover that names the dead master.
                    self._close_client()
                    logger.warning(
                        "invalidation listener lost Redis (%s); retrying in %.2fs",
                        type(exc).__name__,
                        backoff,
                    )
                else:
                    backoff = self._BACKOFF_MIN
                finally:
                    self.first_attempt.set()
                if self._stop_event.wait(backoff):
                    break
                backoff = min(backoff * 2, self._BACKOFF_MAX)
        finally:
            self._close_client()

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with suppress(redis.RedisError, OSError):
                client.close()

    def _listen(self) -> None:
        subscribe, confirmed, delivered = self._verbs
        if self._client is None:
            self._client = self._connect()
        pubsub = self._client.pubsub()
        try:
            getattr(pubsub, subscribe)(self._channel)
            while not self._stop_event.is_set():
                if subscribe == "ssubscribe":
                    message = pubsub.get_sharded_message(timeout=0.2)
                else:
                    message = pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == confirmed:
                    # Confirmed by the server: publications from now on reach us.
                    self.subscribed.set()
                    self.first_attempt.set()
                elif kind == delivered:
                    event = decode_invalidation(message["data"])
                    if event is not None:
                        self._deliver(event)
        finally:
            with suppress(redis.RedisError, OSError):
                pubsub.close()

    def _deliver(self, event: Invalidation) -> None:
        try:
            self._callback(event)
        except Exception as exc:
            # The listener must survive a faulty callback. A token event's value is a
            # digest: log only its fingerprint (a key id is logged as is).
            label = event.value if event.kind in ("key", "secret") else fingerprint(event.value)
            logger.error(
                "invalidation callback raised %s for %s %s",
                type(exc).__name__,
                event.kind,
                label,
            )

    def stop(self) -> None:
        self._stop_event.set()
        if self is not threading.current_thread() and self.is_alive():
            self.join(timeout=5)
