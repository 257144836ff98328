"""One audit run: the checks up front, the Beam graph, then run.json, report.html and _SUCCESS.

Everything a user can get wrong (config, model, inputs, output dir) is checked before any
work starts (`preflight`); the graph is `build`; the output contract is `run_dir`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline import preflight, run_dir
from igaudit.pipeline.build import build_pipeline
from igaudit.pipeline.config import Config
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.metrics import attribution_phase, query_metrics
from igaudit.pipeline.report import write_report
from igaudit.pipeline.runner import make_pipeline, pipeline_options
from igaudit.transforms.analysis.status import alerting, change_line

log = logging.getLogger("igaudit")


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
    change: str = ""                                          # "no change since ..." / "2 new flags, ..."
    alerts: list = dataclasses.field(default_factory=list)    # flags that raise an alert (analysis.alert_on)
    template_location: Optional[str] = None   # set when Dataflow only wrote the job graph (template launch)

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


def run_job(cfg: Config, beam_args: list[str] = ()) -> RunSummary:
    """Run one audit into cfg.output.dir and return what it did. Raises UserError before any work."""
    started = time.time()
    plan = preflight.check(cfg)
    files, class_names = plan.files, plan.class_names
    out_dir = cfg.output.dir
    run_dir.prepare_output_dir(out_dir)
    log.debug("matched %d input files; classes: %s", len(files), ", ".join(class_names))
    print(f"igaudit: {len(files)} images matched, {len(class_names)} classes; writing to {out_dir}", flush=True)

    options = pipeline_options(cfg, list(beam_args))
    p = make_pipeline(options)
    build_pipeline(p, cfg, plan, out_dir, reference_skew=read_reference_skew(cfg.analysis.reference))
    pipeline_started = time.time()
    result = p.run()
    result.wait_until_finish()
    pipeline_seconds = time.time() - pipeline_started
    template_location = options.get_all_options().get("template_location")
    if template_location:
        # A template launch (e.g. the Flex Template launcher) only writes the job graph; the job runs
        # later, so there is nothing to read back, report or mark complete here.
        return RunSummary(out_dir=out_dir, matched=len(files), attributed=0, rejected=0, class_names=class_names,
                          flagged=[], seconds=time.time() - started, report="", pipeline_seconds=pipeline_seconds,
                          template_location=template_location)
    metrics = query_metrics(result)

    images = run_dir.read_images_table(out_dir, columns=["image_id"])
    rejected = run_dir.read_table(FileSystems.join(out_dir, "rejected.parquet"))
    skew = run_dir.read_table(FileSystems.join(out_dir, "skew.parquet")).to_pylist()
    flagged = [flag_entry(r) for r in sorted(skew, key=_flag_order) if r["flagged"]]
    change = change_line(skew, cfg.analysis.reference)
    alerts = [flag_entry(r) for r in alerting(skew, cfg.analysis.alert_on)]
    # an image with several targets (top_k) has several rows: count images
    attributed = len(set(images.column("image_id").to_pylist()))
    counts = {"matched": len(files), "attributed": attributed, "rejected": rejected.num_rows}
    status = "ok" if counts["matched"] == counts["attributed"] + counts["rejected"] else "count_mismatch"
    run_info = {
        "status": status,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
        "class_names": class_names,
        "beam_args": list(beam_args),
        "versions": _versions(),
        "counts": counts,
        "reference": cfg.analysis.reference,
        "change": change,
        "flagged": flagged,
        "resolved": [flag_entry(r) for r in skew if r.get("status") == "resolved"],
        "alerts": alerts,
        "timings": {"total_seconds": round(time.time() - started, 3),
                    "pipeline_seconds": round(pipeline_seconds, 3),
                    "images_per_second": round(counts["attributed"] / max(pipeline_seconds, 1e-9), 3),
                    **attribution_phase(metrics, counts["attributed"])},
        "metrics": metrics,
    }
    report_path = write_report(out_dir, run_info)
    run_info["timings"]["total_seconds"] = round(time.time() - started, 3)
    run_dir.write_text(FileSystems.join(out_dir, "run.json"), json.dumps(run_info, indent=2, default=str))
    if status != "ok":
        raise RuntimeError(f"counts do not reconcile: matched {counts['matched']} != attributed "
                           f"{counts['attributed']} + rejected {counts['rejected']}; outputs in {out_dir} are "
                           f"incomplete (no _SUCCESS)")
    run_dir.write_text(FileSystems.join(out_dir, run_dir.SUCCESS), "")
    return RunSummary(out_dir=out_dir, class_names=class_names, flagged=flagged, change=change, alerts=alerts,
                      seconds=time.time() - started, pipeline_seconds=pipeline_seconds, metrics=metrics,
                      report=report_path, **counts)


def _flag_order(row: dict):
    return (row["group_by"] != "label", row["group_by"], row["class_name"], row.get("cluster") or -1, row["metric"])


def flag_entry(row: dict) -> dict:
    """A flag as run.json and the console list it: where, which metric, its status."""
    return {k: row.get(k) for k in ("group_by", "class_name", "cluster", "metric", "status")}


def read_reference_skew(reference: Optional[str]) -> Optional[list]:
    """The reference run's skew rows (preflight has checked it is complete), or None."""
    if not reference:
        return None
    try:
        return run_dir.read_table(FileSystems.join(reference, "skew.parquet")).to_pylist()
    except Exception as e:
        raise UserError(f"analysis.reference '{reference}': skew.parquet cannot be read ({e})") from None


def absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())
