"""A login loop that watches a Redis failover through a real ``bearerguard serve``.

    loop = LoginLoop(svc.base_url, key_id, secret)
    loop.start()                      # logs in and asks /ready as fast as one client can
    ... kill a master ...
    loop.first_200_since(killed_at)   # when logins answered 200 again
    loop.stop.set(); loop.join()

Shared by the Sentinel and the Cluster failover tests (tests/ha/).
"""

from __future__ import annotations

import threading
import time

import httpx

__all__ = ["LoginLoop"]


class LoginLoop(threading.Thread):
    """Logs in (and asks /ready) as fast as one client can; records every answer."""

    def __init__(self, base_url: str, key_id: str, secret: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.auth = (key_id, secret)
        self.stop = threading.Event()
        self.logins: list[tuple[float, int, str]] = []  # (monotonic, status, error)
        self.ready: list[tuple[float, int]] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
                while not self.stop.is_set():
                    r = client.post(
                        "/login", data={"grant_type": "client_credentials"}, auth=self.auth
                    )
                    error = r.json().get("error", "") if r.status_code != 200 else ""
                    self.logins.append((time.monotonic(), r.status_code, error))
                    self.ready.append((time.monotonic(), client.get("/ready").status_code))
                    time.sleep(0.02)
        except BaseException as exc:  # reported by the test
            self.failure = exc

    def ok_since(self, moment: float) -> bool:
        """A login and a /ready answered 200 after `moment`."""
        return any(t > moment and s == 200 for t, s, _ in self.logins) and any(
            t > moment and s == 200 for t, s in self.ready
        )

    def first_200_since(self, moment: float) -> float | None:
        """When the first login after `moment` answered 200 (None: none yet)."""
        return next((t for t, s, _ in list(self.logins) if t > moment and s == 200), None)
