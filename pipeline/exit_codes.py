"""igaudit's exit codes (the README's table), and the one function that turns a finished run into one.

  0    complete, nothing to alert on
  1    failed: it crashed, or finished without being trustworthy (run.json says why; no _SUCCESS)
  2    a user error, found before any work: bad config, flag, model, inputs or output.dir; nothing touched
  3    complete, with an alert: a finding of the kind analysis.alert_on names (default: new ones)
  4    complete but suspect: accuracy at most 1.5x chance, one class taking at least 90% of the predictions,
       or nothing to audit (the inputs matched nothing); only under analysis.fail_on_suspect (the default),
       else such a run exits 0 or 3 and only warns
  5    `igaudit wait` gave up: the run had not finished within --timeout (it may still be running)
  130  interrupted by Ctrl-C (SIGINT); 143: stopped by SIGTERM
"""
from __future__ import annotations

OK, FAILED, USER_ERROR, ALERT, SUSPECT, WAIT_TIMED_OUT = 0, 1, 2, 3, 4, 5
INTERRUPTED, TERMINATED = 130, 143
MEANINGS = {OK: "complete, nothing to alert on", FAILED: "failed", USER_ERROR: "user error, nothing touched",
            ALERT: "complete, with an alert", SUSPECT: "complete but suspect",
            WAIT_TIMED_OUT: "still running after igaudit wait's timeout", INTERRUPTED: "interrupted",
            TERMINATED: "terminated"}


def for_run(run_info: dict) -> int:
    """The code a finished run exits with, from its run.json: failed, then suspect, then alert, then ok."""
    if run_info.get("status") != "ok":
        return FAILED
    if run_info.get("suspect") and run_info.get("fail_on_suspect", True):
        return SUSPECT
    return ALERT if run_info.get("alerts") else OK


def for_alerts(alerts: list) -> int:
    """3 when there is a finding to alert on, else 0 (`igaudit compare`)."""
    return ALERT if alerts else OK
