"""Progress from the workers: log lines (images attributed in this process, at most one every few seconds) and,
when the launcher draws a live bar, per-process counts it reads (`ProgressBoard`)."""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Optional

PROGRESS_ENV = "IGAUDIT_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 10.0


def progress_interval(default: float = DEFAULT_PROGRESS_SECONDS) -> float:
    """Seconds between progress lines: $IGAUDIT_PROGRESS_SECONDS, else `default`."""
    raw = os.environ.get(PROGRESS_ENV, "").strip()
    try:
        return max(float(raw), 0.0) if raw else default
    except ValueError:
        return default


class ProgressReporter:
    """Images attributed in this process for one run; a progress line at most every `interval` s."""

    def __init__(self):
        self._lock = threading.Lock()
        self._started: Optional[float] = None
        self._last = 0.0
        self.done = 0

    def add(self, images: int, batch_started: float, interval: float, now: Optional[float] = None) -> Optional[str]:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._started is None:
                self._started = self._last = batch_started
            self.done += images
            if now - self._last < interval:
                return None
            self._last = now
            rate = self.done / max(now - self._started, 1e-6)
            return (f"igaudit progress: {self.done} image{'' if self.done == 1 else 's'} attributed by worker "
                    f"pid {os.getpid()} ({rate:.1f} images/s)")


# One reporter per (run, process): DoFn copies in several threads of a worker add to the same one.
_REPORTERS: dict[str, ProgressReporter] = {}
_REPORTERS_LOCK = threading.Lock()


def progress_reporter(run_token: str) -> ProgressReporter:
    with _REPORTERS_LOCK:
        return _REPORTERS.setdefault(run_token, ProgressReporter())


BOARD_ENV = "IGAUDIT_PROGRESS_DIR"   # set by the launcher when it draws a live progress bar (local runs)
BOARD_SECONDS = 0.5                  # a process rewrites its counts at most this often


class ProgressBoard:
    """This process's counts of attributed and rejected inputs, in <folder>/<pid>.json, which the launcher
    sums into its progress bar. Stage DoFns in any thread of the process add to the same board."""

    def __init__(self, folder: str):
        self.folder = folder
        self.counts = {"attributed": 0, "rejected": 0}
        self._lock = threading.Lock()
        self._written = 0.0

    def add(self, key: str, n: int = 1, force: bool = False) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n
            now = time.monotonic()
            if now - self._written < BOARD_SECONDS and not force:
                return
            self._written = now
            text = json.dumps(self.counts)
        path = os.path.join(self.folder, f"{os.getpid()}.json")
        tmp = f"{path}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except OSError:
            pass   # the bar is a display: a failed write only makes it lag


_BOARDS: dict[str, ProgressBoard] = {}


def count(key: str, n: int = 1) -> None:
    """Add n to this process's `key` count when a progress bar is drawn: "attributed", "rejected", "tests"
    (intervention tests run) or "finishing" (the last stage, writing the report, has started)."""
    folder = os.environ.get(BOARD_ENV)
    if folder:
        with _REPORTERS_LOCK:
            board = _BOARDS.setdefault(folder, ProgressBoard(folder))
        board.add(key, n)


def flush() -> None:
    """Write this process's counts now (stages call it when a bundle ends, so the bar ends up exact)."""
    folder = os.environ.get(BOARD_ENV)
    board = _BOARDS.get(folder) if folder else None
    if board is not None:
        board.add("attributed", 0, force=True)


def read_board(folder: str) -> dict:
    """The counts summed over the processes that wrote to `folder`."""
    total = {"attributed": 0, "rejected": 0}
    for name in os.listdir(folder):
        if name.endswith(".json"):
            try:
                with open(os.path.join(folder, name)) as f:
                    for key, value in json.load(f).items():
                        total[key] = total.get(key, 0) + int(value)
            except (OSError, ValueError):
                continue
    return total
