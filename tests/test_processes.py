"""tools/processes.py: the one way the tests and the bench run a server of their own."""

from __future__ import annotations

import signal
import sys
import time

from tools.processes import Process, free_port, port_open

# A child that says it is ready, then ignores SIGTERM (or not) and lives on.
CHILD = """
import signal, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
print("to stderr", file=sys.stderr, flush=True)
time.sleep(60)
"""


def test_waits_for_a_line_and_stops_with_sigterm() -> None:
    proc = Process([sys.executable, "-c", CHILD, "polite"])
    assert proc.wait_for_line("ready", timeout=30)
    assert proc.alive()
    assert proc.stop(timeout=10) == -signal.SIGTERM
    assert not proc.alive()
    assert "ready" in proc.output and "to stderr" in proc.output  # both streams kept
    assert proc.stop() == -signal.SIGTERM  # again: only the status


def test_a_process_that_ignores_sigterm_is_killed() -> None:
    proc = Process([sys.executable, "-c", CHILD, "stubborn"])
    assert proc.wait_for_line("ready", timeout=30)
    started = time.monotonic()
    assert proc.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_waiting_ends_when_the_process_exits() -> None:
    proc = Process([sys.executable, "-c", "print('bye'); raise SystemExit(3)"])
    started = time.monotonic()
    assert not proc.wait_for_line("never printed", timeout=30)
    assert time.monotonic() - started < 20  # the exit ended the wait, not the timeout
    assert proc.stop() == 3
    assert proc.tail() == "bye\n"


def test_waits_for_a_port_and_an_http_answer() -> None:
    port = free_port()
    assert not port_open("127.0.0.1", port)
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    proc = Process(server)
    try:
        assert proc.wait_for_port("127.0.0.1", port, timeout=30)
        assert proc.wait_for_http(f"http://127.0.0.1:{port}/", timeout=30)
        assert not proc.wait_for_http(f"http://127.0.0.1:{port}/", timeout=0.3, status=418)
    finally:
        proc.stop()
    assert not port_open("127.0.0.1", port)
