"""``bearerguard serve`` under cProfile, for `bench.authservice.served_profile`.

``python -m bench.auth_profiled OUT serve --store URL …``: runs the command line as
``bearerguard`` would. SIGUSR1 turns the profiler on (for the main thread: the event
loop's) and SIGUSR2 off, so start-up, warm-up and shut-down are left out; the stats go
to OUT when the server stops (SIGTERM: uvicorn shuts down, then re-raises the signal,
which ends the run here instead of killing the process before the stats are written).
"""

from __future__ import annotations

import cProfile
import signal
import sys
from typing import Any


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    from bearerguard.cli import main as cli

    prof = cProfile.Profile()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGUSR1, lambda signum, frame: prof.enable())
    signal.signal(signal.SIGUSR2, lambda signum, frame: prof.disable())
    try:
        cli(args)
    except SystemExit:
        pass
    finally:
        prof.disable()
        prof.dump_stats(out)


if __name__ == "__main__":
    main()
