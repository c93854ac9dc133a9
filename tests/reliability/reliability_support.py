"""Shared pieces of the reliability suites: soak scaling, figures, login, a load driver.

* `SOAK` / `scaled(ci, soak)`: counts are small under ``make test`` and larger with
  ``BEARERGUARD_SOAK=1`` (``make soak``).
* `record(case, **figures)`: append one JSON line of figures to `FIGURES_PATH`
  (``$BEARERGUARD_FIGURES``, else a file in the temp directory); ``report.py`` turns
  the file into the table of docs/reliability.md. Figures are reported, not asserted.
* `login(...)`: ``POST /login`` from a chosen loopback source address.
* `resource_server(env)`: ``resource_app.py`` under a real uvicorn (short breaker
  interval and cache TTL from the environment, backend counters on ``/_stats``).
* `gunicorn_workers(env)`: the Flask example under gunicorn with two worker processes.
* `Hammer`: many client threads sending planned requests and checking every answer.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from helpers import remember_secret
from integration_support import EXAMPLES, ExampleServer, free_port

HERE = Path(__file__).resolve().parent
# Deadline for waiting on an event under load (polled; the event usually comes in well
# under a second, but the machine is shared).
WAIT = 60.0

SOAK = os.environ.get("BEARERGUARD_SOAK", "").strip() not in ("", "0")
FIGURES_PATH = Path(
    os.environ.get("BEARERGUARD_FIGURES")
    or Path(tempfile.gettempdir()) / "bearerguard-reliability-figures.jsonl"
)
_figures_lock = threading.Lock()


def scaled(ci: int, soak: int) -> int:
    """`soak` under ``BEARERGUARD_SOAK=1``, else `ci`."""
    return soak if SOAK else ci


@functools.cache
def _commit() -> str:
    """The commit the suites run at (``+uncommitted`` if src/, bench/ or tests/ differ)."""
    from bench.report import git_commit

    return git_commit()


def record(case: str, **figures: Any) -> None:
    """Append the figures of one case (one JSON object per line) to FIGURES_PATH."""
    row = {"case": case, "soak": SOAK, "at": time.time(), "commit": _commit(), **figures}
    line = json.dumps(row, default=str)
    with _figures_lock, FIGURES_PATH.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


# -- talking to the auth service ------------------------------------------------------
def client_from(source: str = "127.0.0.1", timeout: float = 10.0) -> httpx.Client:
    """An httpx client whose connections leave from loopback address `source`.

    Idle connections are dropped after 1 s, before any server here closes them
    (gunicorn after 2 s): a request sent on a connection the server is closing at that
    moment fails with "Server disconnected" (seen once, on a rarely used source).
    """
    return httpx.Client(
        transport=httpx.HTTPTransport(local_address=source),
        timeout=timeout,
        trust_env=False,
        limits=httpx.Limits(keepalive_expiry=1.0),
    )


def login(
    base_url: str,
    key_id: str,
    secret: str,
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """``POST /login`` (client credentials, HTTP Basic) from `source`; the raw response."""
    with client_from(source) as c:
        resp = c.post(
            base_url + "/login",
            data={"grant_type": "client_credentials"},
            auth=(key_id, secret),
            headers=headers,
        )
    if resp.status_code == 200:
        remember_secret(resp.json()["access_token"])
    return resp


def token_for(base_url: str, key_id: str, secret: str, source: str = "127.0.0.1") -> str:
    resp = login(base_url, key_id, secret, source=source)
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


def revoke(base_url: str, key_id: str, secret: str, token: str) -> httpx.Response:
    with client_from() as c:
        return c.post(base_url + "/revoke", data={"token": token}, auth=(key_id, secret))


def introspect(base_url: str, key_id: str, secret: str, token: str) -> httpx.Response:
    with client_from() as c:
        return c.post(base_url + "/introspect", data={"token": token}, auth=(key_id, secret))


# -- servers --------------------------------------------------------------------------
def resource_server(env: dict[str, str]) -> ExampleServer:
    """``tests/reliability/resource_app.py`` under uvicorn on a free port."""
    port = free_port()
    # fmt: off
    cmd = [
        sys.executable, "-m", "uvicorn", "resource_app:app",
        "--app-dir", str(HERE),
        "--host", "127.0.0.1", "--port", str(port),
        "--no-proxy-headers", "--no-access-log", "--lifespan", "on",
    ]
    # fmt: on
    return ExampleServer(cmd, port, env)


def gunicorn_workers(env: dict[str, str], workers: int = 2, threads: int = 4) -> ExampleServer:
    """The Flask example under gunicorn with `workers` processes of `threads` threads."""
    port = free_port()
    # fmt: off
    cmd = [
        sys.executable, "-m", "gunicorn",
        "--chdir", str(EXAMPLES / "flask_app"),
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads),
        "--forwarded-allow-ips", "", "--graceful-timeout", "5",
        "app:app",
    ]
    # fmt: on
    return ExampleServer(cmd, port, env)


def stats(base_url: str) -> dict[str, Any]:
    """The resource app's middleware counters (``GET /_stats``)."""
    with client_from() as c:
        data: dict[str, Any] = c.get(base_url + "/_stats").json()
        return data


# -- load -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Planned:
    """One kind of request and the statuses that are right for it.

    `expect` holds for the whole run; `phases` (phase name → statuses), when given,
    says what is right in each phase of a fault test instead (see `HammerResult.wrong`).
    """

    kind: str
    path: str
    headers: dict[str, str] = field(repr=False)
    expect: frozenset[int] = frozenset()
    source: str = "127.0.0.1"
    make: Callable[[], dict[str, str]] | None = None  # fresh headers for each request
    phases: dict[str, frozenset[int]] | None = None


@dataclass
class Outcome:
    kind: str
    status: int  # 0: the connection failed
    at: float  # answered (monotonic)
    retry_after: str | None = None
    started: float = 0.0  # sent (monotonic)


Timeline = Sequence[tuple[str, float]]  # (phase, monotonic start), in order


def phases_during(timeline: Timeline, started: float, ended: float) -> list[str]:
    """The phases that the interval [started, ended] overlaps."""
    out = []
    for i, (name, begin) in enumerate(timeline):
        end = timeline[i + 1][1] if i + 1 < len(timeline) else float("inf")
        if started < end and ended >= begin:
            out.append(name)
    return out


@dataclass
class HammerResult:
    outcomes: list[Outcome]
    elapsed: float

    @property
    def total(self) -> int:
        return len(self.outcomes)

    def statuses(self) -> Counter[tuple[str, int]]:
        return Counter((o.kind, o.status) for o in self.outcomes)

    def wrong(self, plan: Sequence[Planned], timeline: Timeline = ()) -> list[Outcome]:
        """Outcomes whose status is not right for their kind at the time they ran.

        With a `timeline`, a request is checked against the phases it overlapped (sent
        in one, answered in the next: either phase's answer is right), using each
        kind's `phases` table.
        """
        by_kind = {p.kind: p for p in plan}
        out = []
        for o in self.outcomes:
            p = by_kind[o.kind]
            if p.phases is None or not timeline:
                allowed = p.expect
            else:
                during = phases_during(timeline, o.started, o.at)
                allowed = frozenset().union(*(p.phases[name] for name in during))
            if o.status not in allowed:
                out.append(o)
        return out

    def per_phase(self, timeline: Timeline) -> dict[str, int]:
        """How many requests were sent in each phase."""
        counts = {name: 0 for name, _ in timeline}
        for o in self.outcomes:
            counts[phases_during(timeline, o.started, o.started)[0]] += 1
        return counts


class Hammer:
    """`clients` threads, each sending requests drawn from `plan` until stopped.

    Run for `requests` requests in total (`run`) or in the background until `stop()`
    (`start`). Every answer is kept (kind, status, time) for the caller to check.
    """

    def __init__(self, base_url: str, plan: Sequence[Planned], clients: int = 8) -> None:
        self.base_url = base_url
        self.plan = list(plan)
        self.clients = clients
        self._outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._budget = 0
        self._started = 0.0
        self.errors: list[BaseException] = []

    def _take(self) -> bool:
        with self._lock:
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def _worker(self, seed: int, check: Callable[[], bool]) -> None:
        rnd = random.Random(seed)
        clients: dict[str, httpx.Client] = {}
        try:
            while not self._stop.is_set() and check():
                p = rnd.choice(self.plan)
                c = clients.get(p.source)
                if c is None:
                    c = clients[p.source] = client_from(p.source, timeout=15.0)
                headers = p.headers if p.make is None else p.make()
                started = time.monotonic()
                try:
                    r = c.get(self.base_url + p.path, headers=headers)
                    out = Outcome(
                        p.kind,
                        r.status_code,
                        time.monotonic(),
                        r.headers.get("retry-after"),
                        started,
                    )
                except httpx.TransportError:
                    out = Outcome(p.kind, 0, time.monotonic(), None, started)
                with self._lock:
                    self._outcomes.append(out)
        except BaseException as exc:  # reported by the caller, never swallowed
            self.errors.append(exc)
        finally:
            for c in clients.values():
                c.close()

    def run(self, requests: int) -> HammerResult:
        """Send `requests` requests over all clients; return every outcome."""
        self._budget = requests
        started = time.monotonic()
        threads = [
            threading.Thread(target=self._worker, args=(i, self._take)) for i in range(self.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=110)
        assert not any(t.is_alive() for t in threads), "load clients did not finish"
        assert not self.errors, self.errors
        return HammerResult(list(self._outcomes), time.monotonic() - started)

    def start(self) -> Hammer:
        self._started = time.monotonic()
        self._threads = [
            threading.Thread(target=self._worker, args=(i, lambda: True), daemon=True)
            for i in range(self.clients)
        ]
        for t in self._threads:
            t.start()
        return self

    def halt(self) -> None:
        """Stop the clients and wait for them (a `finally`'s call: a failed test must
        not leave them running into the next one)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def stop(self) -> HammerResult:
        self.halt()
        assert not any(t.is_alive() for t in self._threads), "load clients did not stop"
        assert not self.errors, self.errors
        return HammerResult(list(self._outcomes), time.monotonic() - self._started)

    def since(self, t0: float) -> list[Outcome]:
        """Outcomes of requests sent at or after `t0`."""
        with self._lock:
            return [o for o in self._outcomes if o.started >= t0]

    def wait_for(
        self, count: int, t0: float = 0.0, kind: str | None = None, status: int | None = None
    ) -> None:
        """Poll until `count` requests sent since `t0` (of `kind`, answered `status`) are in."""

        def enough() -> bool:
            got = [
                o
                for o in self.since(t0)
                if (kind is None or o.kind == kind) and (status is None or o.status == status)
            ]
            return len(got) >= count

        assert wait_until(enough, WAIT) is not None, (
            f"the load saw fewer than {count} {kind or ''} {status or ''} answers in {WAIT} s"
        )
        assert not self.errors, self.errors


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> float | None:
    """Poll `pred` until true; return the seconds it took, or None after `timeout`."""
    started = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(step)


def rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KiB, from /proc/self/status."""
    cur = peak = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            cur = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    return cur, peak
