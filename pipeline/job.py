"""One audit run: the checks up front, the Beam graph (which finishes itself: its last stage writes
report.html, run.json and _SUCCESS, `finalize`), then the summary, read back from what the job wrote.

Everything a user can get wrong (config, flags, model, inputs, output dir) is checked before any
work starts (`preflight`); the graph is `build`; the output contract is `run_dir`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline import exit_codes, finalize, health, live, ownership, preflight, run_dir
from igaudit.pipeline.build import build_pipeline
from igaudit.pipeline.config import Config, absolute_paths, local_paths
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.metrics import attribution_phase, query_metrics
from igaudit.pipeline.paths import is_remote
from igaudit.pipeline.runner import make_pipeline, runs_locally, use_options

log = logging.getLogger("igaudit")


class RunFailed(Exception):
    """The run finished but cannot be trusted (status failed): run.json says why, and there is no _SUCCESS."""

    def __init__(self, message: str, out_dir: Optional[str] = None):
        super().__init__(message)
        self.out_dir = out_dir


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
    change: str = ""                                          # "no change since ..." / "2 new findings, ..."
    alerts: list = dataclasses.field(default_factory=list)    # findings that raise an alert (analysis.alert_on)
    review: list = dataclasses.field(default_factory=list)    # findings to look at: not shown to be shortcuts
    resolved: list = dataclasses.field(default_factory=list)  # the reference run's shortcuts, re-tested and gone
    not_audited: list = dataclasses.field(default_factory=list)   # ... not re-tested (their class is absent)
    template_location: Optional[str] = None   # set when Dataflow only wrote the job graph (template launch)
    job_id: Optional[str] = None              # set when the job was submitted and left to run (--detach)
    job_request: object = None                # Dataflow's job request, when it was only built (--dry_run=True)
    accuracy: Optional[float] = None          # over images whose label is a model class
    warnings: list = dataclasses.field(default_factory=list)
    suspect: list = dataclasses.field(default_factory=list)   # why the run looks like a broken set-up
    exit_code: int = 0                        # what `igaudit run / audit` exits with (exit_codes.for_run)
    not_converged: int = 0                    # images whose steps: auto ended above its tolerances
    reused: int = 0                           # of the attributed: rows and files taken from the reference run

    @property
    def convergence(self) -> Optional[str]:
        """The sentence about images the step policy left short (None when none)."""
        return health.convergence_line(self.not_converged, self.attributed)

    @property
    def images_per_second(self) -> float:
        """Attributed images per second of pipeline time (start-up included)."""
        return self.attributed / self.pipeline_seconds if self.pipeline_seconds > 0 else 0.0


def run_job(cfg: Config, beam_args: list[str] = (), *, overwrite: bool = False, detach: bool = False,
            config_file: Optional[str] = None) -> RunSummary:
    """Run one audit into cfg.output.dir and return what it did. Raises UserError before any work, RunFailed
    when the finished run cannot be trusted (`health.status`). overwrite: clear a non-empty folder that is
    not an igaudit run folder (destructive). detach: submit the job and return its id without waiting (the
    job finishes itself); it is refused when output.dir holds the model, the config file (config_file) or
    anything else the run reads."""
    started = time.time()
    cfg = absolute_paths(cfg)
    options = use_options(cfg, beam_args)
    dry_run = is_dry_run(options)
    plan = preflight.check_offline(cfg, beam_args) if dry_run else preflight.check(cfg, beam_args)
    if detach and runs_locally(options.get_all_options()):
        raise UserError("--detach needs a runner whose workers outlive this process (DataflowRunner, FlinkRunner, "
                        "SparkRunner, or PortableRunner with an EXTERNAL, DOCKER or PROCESS environment); the "
                        "local runner's workers are this process")
    files, class_names = plan.files, plan.class_names
    for warning in plan.warnings:
        print(f"igaudit: warning: {warning}", file=sys.stderr, flush=True)
    out_dir = cfg.output.dir
    if overwrite:
        ownership.check_overwrite_spares(out_dir, {**local_paths(cfg), "the config file": config_file})
    if dry_run:      # Dataflow's dry run builds the job request only, offline: output.dir is not even looked at
        if not is_remote(out_dir):
            ownership.check_claimable(out_dir, overwrite=overwrite)
    else:
        ownership.claim(out_dir, overwrite=overwrite)
    log.debug("matched %d input files; classes: %s", len(files), ", ".join(class_names))
    what = "TFRecord files" if cfg.input.format == "tfrecord" else "images"
    if not dry_run:
        print(f"igaudit: {len(files)} {what} matched, {len(class_names)} classes; writing to {out_dir}", flush=True)

    # a job this process waits on: it adds the runner's metrics to run.json, then writes _SUCCESS
    waits = not (detach or dry_run or options.get_all_options().get("template_location"))
    base = finalize.base_info(cfg, plan, beam_args, started=started, launcher_succeeds=waits)
    total = None if cfg.input.format == "tfrecord" else len(files)      # records are counted as they are read
    bar = live.ProgressBar(total) if live.wants_bar(runs_locally(options.get_all_options())) else None
    with bar or contextlib.nullcontext():     # the bar's settings reach the stages built in it
        p = make_pipeline(options)
        build_pipeline(p, cfg, plan, out_dir, base)
        pipeline_started = time.time()

        def run_pipeline():
            result = p.run()
            if not (detach or dry_run):
                result.wait_until_finish()
            return result

        result = live.run_in_background(run_pipeline, bar)
    pipeline_seconds = time.time() - pipeline_started
    # A job nobody waited for: a dry run (the request only), a detached job, or a template launch (the graph
    # only, e.g. the Flex Template launcher); each finishes itself (Finalize), so nothing is read back here.
    submitted = dict(out_dir=out_dir, matched=len(files), attributed=0, rejected=0, class_names=class_names,
                     flagged=[], seconds=time.time() - started, report="", pipeline_seconds=pipeline_seconds)
    if dry_run:
        return RunSummary(**submitted, job_request=getattr(result, "job", None))
    if detach:
        return RunSummary(**submitted, job_id=job_id(result))
    template_location = options.get_all_options().get("template_location")
    if template_location:
        return RunSummary(**submitted, template_location=template_location)
    return summarize(out_dir, result, pipeline_seconds)


def is_dry_run(options) -> bool:
    """Dataflow's --dry_run=True: the job request is built from the config alone and not submitted."""
    return str(options.get_all_options().get("dry_run")).lower() == "true"


def job_id(result) -> str:
    """The submitted job's id (Dataflow's job id, a portable job service's id), or the runner's name."""
    for attribute in ("job_id", "_job_id"):
        value = getattr(result, attribute, None)
        value = value() if callable(value) else value
        if value:
            return str(value)
    return type(result).__name__


def summarize(out_dir: str, result, pipeline_seconds: float) -> RunSummary:
    """What the finished job wrote (its run.json), with the runner's metrics and timings added to run.json.
    Raises RunFailed when the job marked the run failed, or wrote no run.json."""
    run_info = run_dir.RunDir(out_dir).info()
    if run_info is None:
        raise RunFailed(f"the job ended without writing run.json into {ownership.shown(out_dir)}: the run is "
                        f"incomplete (no _SUCCESS)", out_dir)
    metrics = query_metrics(result)
    attributed = run_info["counts"]["attributed"]
    run_info["metrics"] = metrics
    run_info["timings"].update({"pipeline_seconds": round(pipeline_seconds, 3),
                                "images_per_second": round(attributed / max(pipeline_seconds, 1e-9), 3),
                                **attribution_phase(metrics, attributed)})
    finalize.write_run_json(out_dir, run_info)
    if run_info["status"] == "ok":
        finalize.write_success(out_dir, run_info)         # last: after the final run.json
    else:
        raise RunFailed(f"{run_info['reason']}; the outputs in {ownership.shown(out_dir)} are marked failed "
                        f"(run.json) and have no _SUCCESS", out_dir)
    # the wall time the report shows (start to report): the console says the same number
    return summary_of(out_dir, run_info, seconds=run_info["timings"]["total_seconds"],
                      pipeline_seconds=pipeline_seconds, metrics=metrics)


def summary_of(out_dir: str, run_info: dict, *, seconds: float, pipeline_seconds: float,
               metrics: Optional[dict] = None) -> RunSummary:
    """A complete run's summary from its run.json (`igaudit wait` reads a detached run's the same way)."""
    return RunSummary(out_dir=out_dir, class_names=run_info["class_names"], flagged=run_info["flagged"],
                      change=run_info["change"], alerts=run_info["alerts"], review=run_info["review"],
                      resolved=run_info["resolved"], not_audited=run_info["not_audited"],
                      seconds=seconds, pipeline_seconds=pipeline_seconds, metrics=metrics or {},
                      report=FileSystems.join(out_dir, run_dir.REPORT), accuracy=run_info["accuracy"],
                      warnings=run_info["warnings"], suspect=run_info.get("suspect") or [],
                      exit_code=exit_codes.for_run(run_info),
                      not_converged=run_info["counts"].get("not_converged", 0),
                      reused=run_info["counts"].get("reused", 0),
                      **{k: run_info["counts"][k] for k in ("matched", "attributed", "rejected")})
