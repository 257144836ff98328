"""One audit run: the checks up front, the Beam graph, then run.json, report.html and _SUCCESS.

Everything a user can get wrong (config, model, inputs, output dir) is checked before any
work starts (`preflight`); the graph is `build`; the output contract is `run_dir`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline import health, live, ownership, preflight, run_dir
from igaudit.pipeline.build import build_pipeline
from igaudit.pipeline.config import Config
from igaudit.pipeline.metrics import attribution_phase, query_metrics
from igaudit.pipeline.report import write_report
from igaudit.pipeline.runner import make_pipeline, pipeline_options, runs_locally

log = logging.getLogger("igaudit")


class RunFailed(Exception):
    """The run finished but cannot be trusted (status failed): run.json says why, and there is no _SUCCESS."""


@dataclasses.dataclass
class RunSummary:
    out_dir: str
    matched: int
    attributed: int
    rejected: int
    class_names: list
    flagged: list
    seconds: float
    report: str
    pipeline_seconds: float = 0.0
    metrics: dict = dataclasses.field(default_factory=dict)   # {"counters": {...}, "distributions": {...}}
    template_location: Optional[str] = None   # set when Dataflow only wrote the job graph (template launch)
    accuracy: Optional[float] = None          # over images whose label is a model class
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Attributed images per second of pipeline time (start-up included)."""
        return self.attributed / self.pipeline_seconds if self.pipeline_seconds > 0 else 0.0


def _versions() -> dict:
    import numpy
    import PIL
    import pyarrow
    import tensorflow as tf
    import keras
    return {"python": platform.python_version(), "apache_beam": beam.__version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__, "pyarrow": pyarrow.__version__,
            "pillow": PIL.__version__}


def run_job(cfg: Config, beam_args: list[str] = (), *, overwrite: bool = False) -> RunSummary:
    """Run one audit into cfg.output.dir and return what it did. Raises UserError before any work, RunFailed
    when the finished run cannot be trusted (`health.status`). overwrite: clear a non-empty folder that is
    not an igaudit run folder (destructive)."""
    started = time.time()
    plan = preflight.check(cfg, beam_args)
    files, class_names = plan.files, plan.class_names
    for warning in plan.warnings:
        print(f"igaudit: warning: {warning}", file=sys.stderr, flush=True)
    out_dir = cfg.output.dir
    ownership.claim(out_dir, overwrite=overwrite)
    log.debug("matched %d input files; classes: %s", len(files), ", ".join(class_names))
    print(f"igaudit: {len(files)} images matched, {len(class_names)} classes; writing to {out_dir}", flush=True)

    options = pipeline_options(cfg, list(beam_args))
    bar = live.ProgressBar(len(files)) if live.wants_bar(runs_locally(options.get_all_options())) else None
    with bar or contextlib.nullcontext():     # the bar's settings reach the stages built in it
        p = make_pipeline(options)
        build_pipeline(p, cfg, plan, out_dir)
        pipeline_started = time.time()

        def run_pipeline():
            result = p.run()
            result.wait_until_finish()
            return result

        result = live.run_in_background(run_pipeline, bar)
    pipeline_seconds = time.time() - pipeline_started
    template_location = options.get_all_options().get("template_location")
    if template_location:
        # A template launch (e.g. the Flex Template launcher) only writes the job graph; the job runs
        # later, so there is nothing to read back, report or mark complete here.
        return RunSummary(out_dir=out_dir, matched=len(files), attributed=0, rejected=0, class_names=class_names,
                          flagged=[], seconds=time.time() - started, report="", pipeline_seconds=pipeline_seconds,
                          template_location=template_location)
    metrics = query_metrics(result)

    columns = ["image_id", "label", "label_index", "predicted", "predicted_name"]
    # an image with several targets (top_k) has several rows: one per image
    images = list({r["image_id"]: r for r in run_dir.read_images_table(out_dir, columns=columns).to_pylist()}.values())
    rejected = run_dir.read_table(FileSystems.join(out_dir, "rejected.parquet"))
    skew = run_dir.read_table(FileSystems.join(out_dir, "skew.parquet")).to_pylist()
    flagged = sorted({(r["group_by"], r["class_name"]) for r in skew if r["flagged"]})
    counts = {"matched": len(files), "attributed": len(images), "rejected": rejected.num_rows}
    status, reason = health.status(**counts, max_rejected_share=cfg.analysis.max_rejected_share)
    accuracy = health.accuracy([r["label_index"] for r in images], [r["predicted"] for r in images])
    warnings = health.warnings([r["label"] for r in images], [r["label_index"] for r in images],
                               [r["predicted_name"] for r in images], [r["predicted"] for r in images],
                               len(class_names))
    run_info = {
        "status": status,
        "reason": reason,
        "warnings": warnings,
        "accuracy": accuracy,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
        "class_names": class_names,
        "beam_args": list(beam_args),
        "versions": _versions(),
        "counts": counts,
        "reference": cfg.analysis.reference,
        "flagged": [{"group_by": g, "class_name": c} for g, c in flagged],
        "timings": {"total_seconds": round(time.time() - started, 3),
                    "pipeline_seconds": round(pipeline_seconds, 3),
                    "images_per_second": round(counts["attributed"] / max(pipeline_seconds, 1e-9), 3),
                    **attribution_phase(metrics, counts["attributed"])},
        "metrics": metrics,
    }
    report_path = write_report(out_dir, run_info)
    run_info["timings"]["total_seconds"] = round(time.time() - started, 3)
    run_dir.write_text(FileSystems.join(out_dir, run_dir.RUN_JSON), json.dumps(run_info, indent=2, default=str))
    if status != "ok":
        raise RunFailed(f"{reason}; the outputs in {ownership.shown(out_dir)} are marked failed (run.json) and "
                        f"have no _SUCCESS")
    # not empty: some object stores refuse zero-byte uploads
    run_dir.write_text(FileSystems.join(out_dir, run_dir.SUCCESS), f"{run_info['created']}\n")
    return RunSummary(out_dir=out_dir, class_names=class_names, flagged=run_info["flagged"],
                      seconds=time.time() - started, pipeline_seconds=pipeline_seconds, metrics=metrics,
                      report=report_path, accuracy=accuracy, warnings=warnings, **counts)


def absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())
