"""Notifications without a wrapper: `analysis.notify` runs a command and/or POSTs to a URL when a run exits
with one of the codes in `notify.on` (default 1 failed, 3 alert, 4 suspect).

Both receive the same JSON alert (`alert`): the exit code and its meaning, the run folder and report, the
run's status, why it is suspect, its change line and the findings that alert. The command runs in a shell
with the JSON on its stdin and IGAUDIT_EXIT_CODE, IGAUDIT_RUN and IGAUDIT_REPORT in its environment; the
URL gets it as the body of a POST (Content-Type: application/json). A notification that fails (a command
exiting non-zero, a URL that does not answer 2xx within `notify.timeout`) is reported as one warning line
and never changes the run's exit code.
"""
from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline.exit_codes import MEANINGS
from igaudit.pipeline.run_dir import REPORT

def alert(code: int, *, command: str, run: Optional[str] = None, run_info: Optional[dict] = None,
          message: Optional[str] = None) -> dict:
    """The JSON both the command and the URL receive. run_info: the run's run.json (None when the run
    stopped before writing one); message: the console's error line, if the run did not finish."""
    info = run_info or {}
    report = FileSystems.join(run, REPORT) if run and info.get("status") == "ok" else None
    return {"igaudit": command, "exit_code": code, "meaning": MEANINGS[code], "run": run,
            "report": report, "status": info.get("status"), "reason": info.get("reason") or message,
            "suspect": info.get("suspect") or [], "change": info.get("change"),
            "alerts": info.get("alerts") or [], "accuracy": info.get("accuracy"),
            "counts": info.get("counts")}


def send(notify, payload: dict) -> list[str]:
    """Run notify.command and POST to notify.url when payload's exit code is in notify.on; returns one line
    per notification that failed (the caller prints them). Never raises."""
    if payload["exit_code"] not in notify.on:
        return []
    body = json.dumps(payload, indent=2, default=str).encode("utf-8")
    failures = []
    if notify.command:
        failures += _run_command(notify.command, body, payload, notify.timeout)
    if notify.url:
        failures += _post(notify.url, body, notify.timeout)
    return failures


def _run_command(command: str, body: bytes, payload: dict, timeout: float) -> list[str]:
    env = {**os.environ, "IGAUDIT_EXIT_CODE": str(payload["exit_code"]), "IGAUDIT_RUN": payload["run"] or "",
           "IGAUDIT_REPORT": payload["report"] or ""}
    try:
        done = subprocess.run(command, shell=True, input=body, env=env, timeout=timeout,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired:
        return [f"analysis.notify.command did not finish within {timeout:g} s (notify.timeout)"]
    except OSError as e:
        return [f"analysis.notify.command could not start: {e}"]
    if done.returncode:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return [f"analysis.notify.command exited {done.returncode}" + (f": {said[-1][:300]}" if said else "")]
    return []


def url_host(url: str) -> str:
    """A URL's host (and port): all of it that may be shown, its path (a webhook token) and any user and
    password before the host being secrets."""
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[2]


def redacted_url(url: str) -> str:
    """scheme://host/***: the URL as run.json and the report keep it."""
    return f"{urllib.parse.urlsplit(url).scheme}://{url_host(url)}/***"


def _post(url: str, body: bytes, timeout: float) -> list[str]:
    host = url_host(url)
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "igaudit"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if not 200 <= response.status < 300:
                return [f"analysis.notify.url: {host} answered {response.status}"]
    except urllib.error.HTTPError as e:
        return [f"analysis.notify.url: {host} answered {e.code} {e.reason}"]
    except Exception as e:  # noqa: BLE001 - unreachable, refused, timed out, bad TLS: all one warning
        reason = getattr(e, "reason", None) or e
        return [f"analysis.notify.url: {host} could not be reached ({type(e).__name__}: {reason})"]
    return []
