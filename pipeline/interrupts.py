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
import threading
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


def _silence() -> None:
    """Point stdout and stderr at /dev/null: what Beam's threads and the bar's redraw thread print while the
    workers die ("Worker subprocess exited", closed gRPC channels) is the interrupt itself, not news."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    except OSError:
        pass


def install(debug: bool = False) -> None:
    """Make SIGINT and SIGTERM end the process with one line (a stack trace too with --debug)."""
    def handler(signum, frame):
        name = signal.Signals(signum).name
        # a progress bar may be on the line: clear it and show the cursor (the bar hid it) first
        clear = "\r\x1b[2K\x1b[?25h" if sys.stderr.isatty() else ""
        line = (f"{clear}igaudit: interrupted ({name}): stopped; outputs written so far are incomplete (no "
                f"_SUCCESS) and the next run into the same output.dir replaces them\n")
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a closed pipe must not stop the exit
            pass
        terminal = os.dup(2)
        if not debug:
            _silence()         # first, so nothing lands between the line and the exit
        _stop_children()       # before the line: a dying worker's last words (Beam's logging client) come first
        os.write(terminal, line.encode())
        if debug:
            traceback.print_stack(frame, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODES[signum])   # no interpreter shutdown: Beam's and TensorFlow's threads would print

    for signum in EXIT_CODES:
        signal.signal(signum, handler)
    if not debug and not getattr(threading.excepthook, "igaudit", False):     # main() may run twice
        threading.excepthook = _quiet_killed_workers(threading.excepthook)


def _quiet_killed_workers(default):
    """A thread hook that says nothing when Beam's thread watching a local worker process reports it killed by
    a signal ("Worker subprocess exited with return code -2"): that is Ctrl-C reaching the worker, perhaps
    just before this process takes it; the run's own outcome reports any other end."""
    def hook(args):
        if isinstance(args.exc_value, RuntimeError) and "Worker subprocess exited with return code -" in str(
                args.exc_value):
            return
        default(args)
    hook.igaudit = True
    return hook
