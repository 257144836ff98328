"""Ctrl-C and SIGTERM: end the run at once with one line and exit 130 (SIGINT) or 143 (SIGTERM).

The run's outputs are then incomplete: there is no _SUCCESS, and the folder keeps igaudit's marker, so
the next run into it removes what this one wrote (pipeline/ownership.py). The pipeline runs on a
background thread (pipeline/job.py), so the main thread is always free to take the signal, even while
TensorFlow computes. Worker processes (--direct_num_workers, a local job service's workers started
by igaudit) are stopped first, so nothing is left running and nothing prints after the line.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _stop_children() -> None:
    try:
        import psutil
        children = psutil.Process().children(recursive=True)
        for child in children:
            child.kill()
        psutil.wait_procs(children, timeout=3)
    except Exception:  # noqa: BLE001 - best effort: the exit below happens anyway
        pass


def install(debug: bool = False) -> None:
    """Make SIGINT and SIGTERM end the process with one line (a stack trace too with --debug)."""
    def handler(signum, frame):
        name = signal.Signals(signum).name
        print(f"igaudit: interrupted ({name}): stopped; outputs written so far are incomplete (no _SUCCESS) "
              f"and the next run into the same output.dir replaces them", file=sys.stderr, flush=True)
        if debug:
            traceback.print_stack(frame, file=sys.stderr)
        _stop_children()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODES[signum])   # no interpreter shutdown: Beam's and TensorFlow's threads would print

    for signum in EXIT_CODES:
        signal.signal(signum, handler)
