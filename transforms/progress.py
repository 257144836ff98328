"""Progress lines from the workers: images attributed in this process, at most one line every few seconds."""
from __future__ import annotations

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
