"""Running the pipeline while the launcher stays responsive, with a live progress bar on a terminal.

The pipeline runs on a background thread; the main thread waits in short steps, so Ctrl-C and SIGTERM
are taken at once (pipeline/interrupts.py) and, when the run is local and stderr is a terminal, it
redraws one progress bar (rich): images attributed of matched, rate, ETA, rejected so far. The workers
count into small files of a temporary folder (transforms/progress.py: ProgressBoard) that the bar
sums; their periodic progress lines are silenced meanwhile. Off a terminal (cron, CI) or on remote
workers, output stays the periodic log lines.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Callable, Optional

from igaudit.transforms.progress import BOARD_ENV, PROGRESS_ENV, read_board

REDRAW_SECONDS = 0.25


def wants_bar(local: bool) -> bool:
    return local and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


class ProgressBar:
    """A rich progress bar over `total` inputs (None: not known up front, as TFRecord records), fed from the
    workers' board folder."""

    def __init__(self, total: Optional[int]):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        self.total = total
        self.folder = tempfile.mkdtemp(prefix="igaudit-progress-")
        self._env = {key: os.environ.get(key) for key in (BOARD_ENV, PROGRESS_ENV)}
        self._started = time.monotonic()
        self._rate: Optional[float] = None
        self._rated = -1                          # the attributed count the rate was last taken at
        self._bar = Progress(TextColumn("{task.fields[stage]}"), BarColumn(), TextColumn("{task.fields[text]}"),
                             TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self._task = self._bar.add_task("attributing", total=total, text=self._text(0, 0), stage="attributing")

    def _text(self, attributed: int, rejected: int, stage: str = "attributing") -> str:
        # the rate stays the attribution's afterwards (taken at the last count seen, even when every image
        # arrived between two redraws)
        if stage == "attributing" or attributed > self._rated:
            self._rate = attributed / max(time.monotonic() - self._started, 1e-6)
            self._rated = attributed
        rate = self._rate
        of = f" of {self.total}" if self.total is not None else ""
        return f"{attributed}{of} images · {rate:.1f}/s · {rejected} rejected · ETA"

    def stage(self, counts: dict) -> str:
        """attributing, then analysing (the per-class analysis and intervention tests), then writing the
        report (the last stage has started)."""
        if counts.get("finishing"):
            return "writing the report"
        done = counts["attributed"] + counts["rejected"]
        if (self.total is not None and done >= self.total) or counts.get("tests"):
            tests = counts.get("tests", 0)
            return "analysing" + (f" ({tests} intervention tests)" if tests else "")
        return "attributing"

    def __enter__(self) -> "ProgressBar":
        os.environ[BOARD_ENV] = self.folder
        os.environ[PROGRESS_ENV] = "inf"          # no periodic lines under the bar
        self._bar.start()
        return self

    def refresh(self) -> None:
        counts = read_board(self.folder)
        done = counts["attributed"] + counts["rejected"]
        stage = self.stage(counts)
        self._bar.update(self._task, completed=done if self.total is None else min(done, self.total),
                         text=self._text(counts["attributed"], counts["rejected"], stage), stage=stage)

    def __exit__(self, *exc) -> None:
        self._bar.stop()
        for key, value in self._env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.folder, ignore_errors=True)


def run_in_background(work: Callable[[], object], bar: Optional[ProgressBar] = None):
    """Run `work()` on a thread and return its result (or raise its exception), keeping this thread free
    for signals and the bar's redraws."""
    box: dict = {}

    def target():
        try:
            box["result"] = work()
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            box["error"] = e

    thread = threading.Thread(target=target, name="igaudit-pipeline", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(REDRAW_SECONDS)
        if bar is not None:
            bar.refresh()
    if bar is not None:
        bar.refresh()
    if "error" in box:
        raise box["error"]
    return box["result"]
