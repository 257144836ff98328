"""`igaudit wait`: wait for a run (typically a detached one) to finish, then give the exit code it would
have had attached (pipeline/exit_codes.py), or 5 when it is still running after the timeout.

A run is finished when it has `_SUCCESS` (complete: its run.json says 0, 3 or 4) or a run.json with
`status: failed` (1). Given an audit folder (output.dir of `igaudit audit`), it waits on the newest
`run=...` folder igaudit started there. Works on every Beam filesystem (local, gs://, s3://).
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from igaudit.pipeline import ownership
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.paths import shown
from igaudit.pipeline.run_dir import MARKER, RUN_JSON, RunDir, runs_holding


def run_to_wait_on(path: str) -> str:
    """`path` itself when it is a run folder (igaudit's marker or run.json), else the newest run=... folder
    igaudit started under it. Raises UserError when it is neither."""
    path = path.rstrip("/") if path not in ("/",) else path
    if ownership.is_run_dir(path) or RunDir(path).has(RUN_JSON):
        return path
    runs = runs_holding(path, MARKER)
    if runs:
        return runs[-1]
    raise UserError(f"'{shown(path)}' is neither an igaudit run folder nor an audit folder with run=... folders "
                    f"igaudit started: give the output.dir of the run or audit to wait on (or --config with it)")


def finished(run: str) -> Optional[dict]:
    """The run's run.json once it is finished (_SUCCESS, or status failed), else None."""
    folder = RunDir(run)
    if folder.complete:
        return folder.info()
    try:
        info = folder.info()
    except ValueError:          # being written right now: not finished
        return None
    return info if info is not None and info.get("status") == "failed" else None


def wait_for(run: str, timeout: float, poll: float, *, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> Optional[dict]:
    """Poll every `poll` seconds until the run is finished (its run.json) or `timeout` seconds passed (None)."""
    deadline = clock() + timeout
    while True:
        info = finished(run)
        if info is not None:
            return info
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(poll, left))
