"""Finalize: the graph's last stage. It waits on every sink, then writes report.html, run.json and _SUCCESS (last).

So a job that no launcher waits for (`--detach`, a Flex Template launch, a launcher that died) still ends
complete, or marked `status: failed` without `_SUCCESS`. The counts come from what the job wrote (the
tables) and from the job's own count of its inputs, not from the launcher's memory.

`finish_run` is the plain function (tested without Beam); `Finalize` runs it once, with the sinks' written
file names as side inputs: Beam runs it only after every sink has finished.
"""
from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline import beam_flags, exit_codes, health, run_dir
from igaudit.transforms.analysis.skew import alerting, change_line


def versions() -> dict:
    import apache_beam
    import keras
    import numpy
    import PIL
    import pyarrow
    import tensorflow as tf
    return {"python": platform.python_version(), "apache_beam": apache_beam.__version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__, "pyarrow": pyarrow.__version__,
            "pillow": PIL.__version__}


def base_info(cfg, plan, beam_args: list = (), *, started: Optional[float] = None,
              launcher_succeeds: bool = False) -> dict:
    """run.json's fixed part, known when the graph is built (`finish_run`'s base): the config, the plan's
    classes and decode spec (the report's pictures are decoded as the run decoded its inputs), the Beam
    arguments, the reference run, the start time and the thresholds finish_run applies. launcher_succeeds:
    this process waits on the job and writes _SUCCESS itself after adding the runner's metrics."""
    return {"config": cfg.to_dict(), "class_names": list(plan.class_names), "decode": plan.decode.to_dict(),
            "beam_args": list(beam_args),
            "reference": cfg.analysis.reference, "started": time.time() if started is None else started,
            "reuse_key": plan.reuse_key, "reused_from": plan.reuse_from,
            "max_rejected_share": cfg.analysis.max_rejected_share, "alert_on": cfg.analysis.alert_on,
            "launcher_succeeds": launcher_succeeds}


def finish_run(out_dir: str, base: dict, matched: int, images_files: Optional[list] = None) -> dict:
    """Read the run's tables, decide its status and warnings, write report.html, run.json and (when ok)
    _SUCCESS; return run.json's content. base: what the launcher knew at submit time (config, class
    names, Beam args, reference, `started` as epoch seconds, max_rejected_share, alert_on, and
    `launcher_succeeds`: the launcher waits, adds its metrics to run.json and writes _SUCCESS itself, so
    that _SUCCESS is always the last file written)."""
    from igaudit.pipeline.report import write_report
    from igaudit.pipeline.report_data import COLUMNS as REPORT_COLUMNS
    ours = ["image_id", "label", "label_index", "predicted", "predicted_name", "converged", "reused_from"]
    # one read of the images table serves the counts here and the report
    table = run_dir.read_images_table(out_dir, columns=list(dict.fromkeys(ours + REPORT_COLUMNS)),
                                      paths=images_files)
    rows = table.select(ours).to_pylist()
    # an image with several targets (top_k) has several rows: one per image
    images = list({r["image_id"]: r for r in rows}.values())
    # converged is null for methods without a tolerance; an image is short when any of its targets is
    not_converged = len({r["image_id"] for r in rows if r["converged"] is False})
    run = run_dir.RunDir(out_dir)
    rejected = run.table(run_dir.REJECTED_TABLE)
    findings = run.rows(run_dir.FINDINGS_TABLE, missing_ok=False)
    counts = {"matched": int(matched), "attributed": len(images), "rejected": rejected.num_rows}
    status, reason = health.status(**counts, max_rejected_share=base["max_rejected_share"])
    class_names = base["class_names"]
    run_info = {
        "status": status,
        "reason": reason,
        "suspect": health.suspect([r["label_index"] for r in images], [r["predicted_name"] for r in images],
                                  [r["predicted"] for r in images], len(class_names)),
        "fail_on_suspect": base["config"]["analysis"].get("fail_on_suspect", True),
        "warnings": health.warnings([r["label"] for r in images], [r["label_index"] for r in images],
                                    [r["predicted_name"] for r in images], len(class_names)),
        "accuracy": health.accuracy([r["label_index"] for r in images], [r["predicted"] for r in images]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": beam_flags.redacted_config(base["config"]),
        "class_names": class_names,
        "decode": base.get("decode"),
        "beam_args": beam_flags.redacted(base["beam_args"]),
        "versions": versions(),
        "counts": {**counts, "not_converged": not_converged,
                   "reused": sum(1 for r in images if r["reused_from"])},    # audit.reuse: taken from the reference
        "convergence": health.convergence_line(not_converged, len(images)),
        "reference": base["reference"],
        "reuse_key": base.get("reuse_key"), "reused_from": base.get("reused_from"),   # audit.reuse (pipeline/reuse.py)
        "change": change_line(findings, base["reference"]),
        "flagged": [finding_entry(f) for f in findings if f["flagged"] and f.get("status") != "not audited"],
        "review": [finding_entry(f) for f in findings if f["outcome"] == "review"],
        "resolved": [finding_entry(f) for f in findings if f.get("status") == "resolved"],
        "not_audited": [finding_entry(f) for f in findings if f.get("status") == "not audited"],
        "alerts": [finding_entry(f) for f in alerting(findings, base["alert_on"])],
        "timings": {"total_seconds": round(time.time() - base["started"], 3)},
        "metrics": {},
    }
    run_info["exit_code"] = exit_codes.for_run(run_info)      # what `igaudit run / audit / wait` exit with
    write_report(out_dir, run_info, table)
    write_run_json(out_dir, run_info)
    if status == "ok" and not base.get("launcher_succeeds"):
        write_success(out_dir, run_info)
    return run_info


def write_success(out_dir: str, run_info: dict) -> None:
    """_SUCCESS, after everything else (not empty: some object stores refuse zero-byte uploads)."""
    run_dir.write_text(FileSystems.join(out_dir, run_dir.SUCCESS), f"{run_info['created']}\n")


def finding_entry(finding: dict) -> dict:
    """A finding as run.json and the console list it: its id, class, edit, outcome, status and evidence."""
    return {k: finding.get(k) for k in ("finding", "class_name", "kind", "region", "outcome", "status", "evidence")}


def write_run_json(out_dir: str, run_info: dict) -> None:
    run_dir.write_text(FileSystems.join(out_dir, run_dir.RUN_JSON), json.dumps(run_info, indent=2, default=str))


class Finalize(beam.PTransform):
    """PBegin -> PCollection[dict] (run.json's content, one element), written once every sink is done.

    matched: PCollection[int], the job's count of its inputs (one element); sinks: the PCollections of
    file names the Parquet sinks return (the images sink first); base: as `finish_run`.
    """

    def __init__(self, out_dir: str, base: dict, matched, sinks: list):
        super().__init__()
        self.out_dir, self.base, self.matched, self.sinks = out_dir, base, matched, sinks

    def expand(self, pbegin):
        return (pbegin
                | "Once" >> beam.Create([None])
                | "WriteRunJsonReportSuccess" >> beam.FlatMap(
                    _finish, self.out_dir, self.base, beam.pvalue.AsSingleton(self.matched),
                    *[beam.pvalue.AsList(s) for s in self.sinks]))


def _finish(_, out_dir: str, base: dict, matched: int, images_files, *other_sinks):
    """The other sinks' file names only make Beam wait for them."""
    from igaudit.transforms import progress
    progress.count("finishing")
    progress.flush()
    yield finish_run(out_dir, base, matched, list(images_files))
