"""Scheduled audits: dated runs, picking the reference run, exit codes; `compare` of two runs.

Exit codes (for cron, Airflow, Cloud Scheduler): 0 nothing flagged, 3 something
flagged, 1 the run failed, 2 a user error (bad config, missing model...).
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline.config import Config, absolute_paths
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.job import RunSummary, run_job
from igaudit.pipeline.run_dir import read_table
from igaudit.pipeline.runner import use_options
from igaudit.transforms.analysis.skew_rows import skew_rows

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_FLAGGED = 0, 1, 2, 3
RUN_PREFIX = "run="


def run_name(now: Optional[datetime] = None) -> str:
    """run=<UTC timestamp>; sorts in time order as text."""
    now = now or datetime.now(timezone.utc)
    return RUN_PREFIX + now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"


def completed_runs(root: str) -> list[str]:
    """Run dirs under root that have _SUCCESS, oldest first."""
    pattern = FileSystems.join(root, RUN_PREFIX + "*", "_SUCCESS")
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception:
        return []
    return sorted(m.path.rsplit("/", 1)[0] for m in matches)


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
    use_options(cfg, beam_args)           # the reference is looked for with the job's storage options
    root = cfg.output.dir
    name = run_name(now)
    ref = pick_reference(root, name, reference or cfg.analysis.reference)
    run_cfg = dataclasses.replace(
        cfg, output=dataclasses.replace(cfg.output, dir=FileSystems.join(root, name)),
        analysis=dataclasses.replace(cfg.analysis, reference=ref))
    return run_job(run_cfg, beam_args, detach=detach), ref


def exit_code_for(flagged: list) -> int:
    return EXIT_FLAGGED if flagged else EXIT_OK


def compare_runs(current: str, reference: str, thresholds: Optional[dict] = None) -> list[dict]:
    """The skew rows of `current` against `reference`, from their Parquet outputs (no IG recomputed).

    Thresholds default to the ones the current run was made with (its run.json).
    """
    for run in (current, reference):
        if not FileSystems.exists(FileSystems.join(run, "_SUCCESS")):
            raise UserError(f"'{run}' is not a complete igaudit run (no _SUCCESS): give two run output dirs")
    if thresholds is None:
        with FileSystems.open(FileSystems.join(current, "run.json")) as f:
            thresholds = json.loads(f.read().decode("utf-8"))["config"]["analysis"].get("thresholds") or {}
    classes = read_table(FileSystems.join(current, "classes.parquet")).to_pylist()
    ref_classes = read_table(FileSystems.join(reference, "classes.parquet")).to_pylist()
    return skew_rows(classes, ref_classes, thresholds)
