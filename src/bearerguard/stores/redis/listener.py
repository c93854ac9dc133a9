"""The pub/sub listener: one background thread per subscription to revocations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import suppress

import redis

from ...tokens import Invalidation, fingerprint
from .codecs import decode_invalidation

__all__ = ["Listener"]

# The name the store has always logged under, kept for log configurations.
logger = logging.getLogger("bearerguard.stores.redis")


class Listener(threading.Thread):
    """Listens on the invalidation channel until stopped; reconnects with backoff."""

    _BACKOFF_MIN = 0.05
    _BACKOFF_MAX = 1.0

    def __init__(
        self, client: redis.Redis, channel: str, callback: Callable[[Invalidation], None]
    ) -> None:
        super().__init__(name="bearerguard-redis-invalidations", daemon=True)
        self._client = client
        self._channel = channel
        self._callback = callback
        self._stop_event = threading.Event()
        self.first_attempt = threading.Event()
        self.subscribed = threading.Event()

    def run(self) -> None:
        backoff = self._BACKOFF_MIN
        try:
            while not self._stop_event.is_set():
                try:
                    self._listen()
                except (redis.RedisError, OSError) as exc:
                    self.subscribed.clear()
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
            with suppress(redis.RedisError, OSError):
                self._client.close()

    def _listen(self) -> None:
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
            while not self._stop_event.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "subscribe":
                    # Confirmed by the server: publications from now on reach us.
                    self.subscribed.set()
                    self.first_attempt.set()
                elif kind == "message":
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
            # The listener must survive a faulty callback. The event's value may be a
            # token digest: log only its fingerprint.
            label = event.value if event.kind == "key" else fingerprint(event.value)
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
