"""Scheduled audits: dated runs, picking the reference run, retention; `compare` of two runs.

`audit.keep: N` keeps the newest N complete runs and deletes older ones, only folders igaudit wrote and
only the files it wrote there. Exit codes: pipeline/exit_codes.py.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline.config import Config, absolute_paths
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.job import RunSummary, is_dry_run, run_job
from igaudit.pipeline import ownership
from igaudit.pipeline.paths import shown
from igaudit.pipeline.run_dir import (CLASSES_TABLE, FINDINGS_TABLE, MARKER, RUN_PREFIX, MissingTable, RunDir,
                                      completed_runs, runs_holding)
from igaudit.pipeline.runner import use_options
from igaudit.transforms.analysis.skew import alerting, compare_findings


def run_name(now: Optional[datetime] = None) -> str:
    """run=<UTC timestamp>; sorts in time order as text."""
    now = now or datetime.now(timezone.utc)
    return RUN_PREFIX + now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"


def pick_reference(root: str, before: str, named: Optional[str] = None) -> Optional[str]:
    """The named run, or the newest completed run under root older than `before`."""
    if named:
        return named
    earlier = [r for r in completed_runs(root) if r.rsplit("/", 1)[-1] < before]
    return earlier[-1] if earlier else None


def audit(cfg: Config, beam_args: list[str] = (), reference: Optional[str] = None,
          now: Optional[datetime] = None, detach: bool = False) -> tuple[RunSummary, Optional[str]]:
    """One dated run under cfg.output.dir, compared against the reference run. Returns (summary, reference).
    The run folder and the reference are chosen here, when the job is submitted (also with detach)."""
    cfg = absolute_paths(cfg)
    options = use_options(cfg, beam_args)     # the reference is looked for with the job's storage options
    root = cfg.output.dir
    name = run_name(now)
    named = reference or cfg.analysis.reference
    ref = named if is_dry_run(options) else pick_reference(root, name, named)   # a dry run lists nothing
    run_cfg = dataclasses.replace(
        cfg, output=dataclasses.replace(cfg.output, dir=FileSystems.join(root, name)),
        analysis=dataclasses.replace(cfg.analysis, reference=ref))
    summary = run_job(run_cfg, beam_args, detach=detach)
    if cfg.audit.keep and not is_dry_run(options):
        for run in prune_runs(root, cfg.audit.keep):
            print(f"igaudit: audit.keep={cfg.audit.keep}: removed {shown(run)} (igaudit's files in it)", flush=True)
    return summary, ref


def is_igaudit_run(run: str) -> bool:
    """A complete run igaudit wrote: named run=<timestamp>, igaudit's marker, _SUCCESS and its run.json."""
    if not run.rstrip("/").rsplit("/", 1)[-1].startswith(RUN_PREFIX) or not ownership.is_run_dir(run):
        return False
    folder = RunDir(run)
    try:
        info = folder.info()
    except Exception:
        return False
    return (isinstance(info, dict) and info.get("status") == "ok" and {"config", "versions", "counts"} <= set(info)
            and folder.complete)


def prune_runs(root: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` complete igaudit runs under root, and igaudit's incomplete runs
    (interrupted or failed: a marker, no _SUCCESS) older than the newest complete one; returns the runs
    deleted, oldest first. The newest complete run is never deleted (keep >= 1).

    Only what the run recorded writing is deleted (pipeline/ownership.py), _SUCCESS first so a run
    half deleted never looks complete; a file someone else put in the folder stays, and so does the
    folder then. Folders without igaudit's marker, and incomplete runs newer than the newest complete
    one (perhaps still running), are never touched."""
    runs = [r for r in completed_runs(root) if is_igaudit_run(r)]
    if not runs:
        return []
    doomed = runs[:-max(keep, 1)]
    newest = runs[-1].rstrip("/").rsplit("/", 1)[-1]
    doomed += [r for r in runs_holding(root, MARKER) if r not in runs and r.rstrip("/").rsplit("/", 1)[-1] < newest]
    doomed.sort()
    for run in doomed:
        ownership.remove_run(run)
    return doomed


def compare_runs(current: str, reference: str, thresholds: Optional[dict] = None) -> list[dict]:
    """The findings of `current` against `reference`, from their Parquet outputs (no IG recomputed, nothing
    re-tested): the current run's own findings (its interventions ran with it) with their status against
    the reference run's shortcut findings, and drift findings recomputed from the two runs' class rows. A
    reference shortcut is `resolved` only where the current run tested its edit and did not find it.

    Thresholds default to the ones the current run was made with (its run.json).
    """
    runs = RunDir(current), RunDir(reference)
    for run in runs:
        if not run.complete:
            raise UserError(f"'{run.path}' is not a complete igaudit run (no _SUCCESS): give two run output dirs")
    if thresholds is None:
        thresholds = dict(runs[0].config().analysis.thresholds or {})

    def rows(run, name):
        try:
            return run.rows(name, missing_ok=False)
        except MissingTable:
            raise UserError(f"'{run.path}' has no {name}: it was made by an older igaudit; run it again to "
                            f"compare") from None
    return compare_findings(rows(runs[0], CLASSES_TABLE), rows(runs[1], CLASSES_TABLE),
                            rows(runs[0], FINDINGS_TABLE), rows(runs[1], FINDINGS_TABLE), thresholds)


def compare_alerts(rows: list, current: str) -> list:
    """The findings that alert under the current run's analysis.alert_on."""
    return alerting(rows, RunDir(current).config().analysis.alert_on)
