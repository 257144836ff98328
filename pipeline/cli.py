"""`igaudit run / audit / wait / compare / demo`. Flags igaudit does not know go to Beam's PipelineOptions
(checked). Exit codes: pipeline/exit_codes.py (the README's table). `--debug` shows tracebacks and library logs.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Optional

DEMO_CONFIG = "configs/local.yaml"


def _import_tensorflow_quietly() -> None:
    importlib.import_module("igaudit.transforms")  # sets TF_ENABLE_ONEDNN_OPTS before TensorFlow reads it
    from igaudit.transforms.quiet_import import import_tensorflow_quietly
    import_tensorflow_quietly()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="igaudit", description="Integrated Gradients audits of image datasets on Apache Beam.",
        epilog="Any other flag (e.g. --runner=PortableRunner --job_endpoint=...) is passed to Beam.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set attribution.steps=100 (repeatable)")
    common.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    run = sub.add_parser("run", parents=[common], help="run an audit from a config file (exit 0 nothing to alert, "
                                                        "3 alert, 1 failed, 2 user error)")
    run.add_argument("--config", required=True, help="YAML config, e.g. configs/local.yaml")
    run.add_argument("--overwrite", action="store_true",
                     help="DESTRUCTIVE: when output.dir is a non-empty folder that is not an igaudit run folder, "
                          "delete everything in it first (an igaudit run folder never needs this)")
    audit = sub.add_parser("audit", parents=[common],
                           help="a dated run under output.dir, compared with the newest earlier complete run; "
                                "exit 0 nothing to alert, 3 alert (analysis.alert_on), 1 failed, 2 user error")
    audit.add_argument("--config", required=True, help="YAML config, e.g. configs/audit.yaml")
    audit.add_argument("--reference", help="compare with this run dir instead of the newest earlier one")
    for command in (run, audit):
        command.add_argument("--detach", action="store_true",
                             help="submit the job and return (exit 0, printing its id) without waiting; the job "
                                  "writes report.html, run.json and _SUCCESS itself (remote runners only)")
    compare = sub.add_parser("compare", help="compare two existing runs without recomputing IG "
                                             "(exit 0 nothing to alert, 3 alert)")
    compare.add_argument("run", help="the current run's output dir")
    compare.add_argument("reference", help="the reference run's output dir")
    compare.add_argument("--output", help="also write the rows to this Parquet file")
    compare.add_argument("--debug", action="store_true", help="show tracebacks")
    wait = sub.add_parser("wait", parents=[common],
                          help="wait for a run (e.g. one started with --detach) to finish and exit with its code "
                               "(0, 1, 3, 4 as if attached; 5 still running after --timeout)")
    wait.add_argument("path", nargs="?", help="the run's output dir, or an audit's output.dir (its newest run)")
    wait.add_argument("--config", help="take output.dir, Beam's storage options and analysis.notify from this config")
    wait.add_argument("--timeout", type=_seconds, default=24 * 3600, help="seconds to wait (default: 86400)")
    wait.add_argument("--poll", type=_seconds, default=30.0, help="seconds between looks (default: 30)")
    demo = sub.add_parser("demo", parents=[common],
                          help="build the demo dataset and model if missing, then audit them")
    demo.add_argument("--config", default=DEMO_CONFIG, help=f"default: {DEMO_CONFIG}")
    return parser


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse turns the ValueError into a one-line usage error, exit 2)."""
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


_seconds.__name__ = "positive number of seconds"      # argparse names the type in its message


def _split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Everything after a bare `--` is Beam's, whatever it looks like."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, beam_args = _split_beam_args(argv)
    args, unknown = _parser().parse_known_args(ours)
    beam_args = unknown + beam_args
    import logging
    # Library warnings (Beam's optional GCP clients, TF) are noise unless debugging.
    logging.basicConfig(level=logging.INFO if args.debug else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.debug:
        # igaudit's own log lines (logger "igaudit": warnings) show while library logs stay quiet.
        ours = logging.getLogger("igaudit")
        if not any(getattr(h, "igaudit_own", False) for h in ours.handlers):  # main() may run twice
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("igaudit: %(message)s"))
            handler.igaudit_own = True
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    from igaudit.pipeline import interrupts
    interrupts.install(debug=args.debug)
    if args.debug:
        from igaudit.transforms.quiet_import import DEBUG_ENV
        os.environ[DEBUG_ENV] = "1"                # local worker processes keep TensorFlow's chatter too
    elif args.command != "wait":                   # wait reads run.json only
        _import_tensorflow_quietly()

    from igaudit.pipeline import audit, exit_codes
    from igaudit.pipeline.config import ConfigError, load_config
    from igaudit.pipeline.errors import NothingToAudit, UserError
    from igaudit.pipeline.job import RunFailed, run_job
    from igaudit.pipeline.paths import shown
    from igaudit.transforms.attribution.model_files import ModelError
    reference = cfg = None
    try:
        if args.command == "compare":
            return _compare(args)
        if args.command == "wait":
            return _wait(args, beam_args)
        if args.command == "demo":
            from igaudit.pipeline.demo import ensure_demo
            ensure_demo()
        cfg = load_config(args.config, args.overrides)
        if args.command == "audit":
            summary, reference = audit.audit(cfg, beam_args, reference=args.reference, detach=args.detach)
        else:
            summary = run_job(cfg, beam_args, overwrite=getattr(args, "overwrite", False),
                              detach=getattr(args, "detach", False), config_file=args.config)
    except NothingToAudit as e:
        if cfg.analysis.fail_on_suspect:
            print(f"igaudit: suspect: {e} (exit 4: analysis.fail_on_suspect)", file=sys.stderr)
            return _notified(args, cfg, exit_codes.SUSPECT, message=str(e))
        print(f"igaudit: warning: {e}", file=sys.stderr)
        return _notified(args, cfg, exit_codes.OK, message=str(e))
    except (ConfigError, UserError, ModelError) as e:
        print(f"igaudit: error: {e}", file=sys.stderr)
        return _notified(args, cfg, exit_codes.USER_ERROR, message=str(e))
    except RunFailed as e:
        print(f"igaudit: run failed: {e}", file=sys.stderr)
        return _notified(args, cfg, exit_codes.FAILED, run=e.out_dir, message=str(e))
    except Exception as e:  # a failed run, not a user mistake
        if args.debug:
            traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        message = f"{type(e).__name__}: {first[:500]}"
        print(f"igaudit: run failed: {message} (rerun with --debug for the traceback)", file=sys.stderr)
        return _notified(args, cfg, exit_codes.FAILED, message=message)
    if summary.template_location:
        print(f"igaudit: job graph written to {summary.template_location}; the Dataflow job will write its "
              f"outputs to {summary.out_dir} and finish them itself (report.html, run.json, then _SUCCESS)")
        return exit_codes.OK
    if summary.job_request is not None:
        transforms = getattr(summary.job_request, "proto_pipeline", None)
        count = len(transforms.components.transforms) if transforms is not None else 0
        print(f"igaudit: dry run: the Dataflow job request is built ({count} transforms) from the config alone and "
              f"not submitted; nothing on a bucket was listed, read or written (output.dir: {shown(summary.out_dir)})")
        return exit_codes.OK
    if summary.job_id:
        print(f"igaudit: submitted job {summary.job_id}; it writes {shown(summary.out_dir)} and finishes it "
              f"itself: _SUCCESS when complete, or run.json with status: failed; `igaudit wait "
              f"{shown(summary.out_dir)}` waits for it and exits with its code")
        if args.command == "audit":
            print(f"igaudit: reference run: {reference or 'none (first run)'}")
        return exit_codes.OK
    print_outcome(summary)
    if args.command == "audit":
        print(f"igaudit: reference run: {reference or 'none (first run)'}")
    print(f"igaudit: report: {shown(summary.report)}")
    # the demo shows a planted shortcut: its flag is the point, not an alert
    if args.command == "demo":
        return exit_codes.OK
    return _notified(args, cfg, summary.exit_code, run=summary.out_dir)


def print_outcome(summary) -> None:
    """What a finished run says on the console (igaudit run / audit, and wait for a detached one)."""
    from igaudit.pipeline import exit_codes
    accuracy = "" if summary.accuracy is None else f"; accuracy {summary.accuracy:.2f}"
    print(f"igaudit: {summary.change}")
    reused = f"; {summary.reused} unchanged since the reference run, reused (audit.reuse)" if summary.reused else ""
    print(f"igaudit: attributed {summary.attributed} of {summary.matched} images "
          f"({summary.rejected} rejected{reused}) in {summary.seconds:.1f} s; {summary.images_per_second:.1f} images/s"
          f"{accuracy}")
    if summary.convergence:
        print(f"igaudit: {summary.convergence}")
    for reason in summary.suspect:
        print(f"igaudit: suspect: {reason}", file=sys.stderr)
    for warning in summary.warnings:
        print(f"igaudit: warning: {warning}", file=sys.stderr)
    for line in finding_lines(summary):
        print(f"igaudit: {line}")
    if summary.exit_code == exit_codes.SUSPECT:
        print("igaudit: the run is complete but suspect (exit 4, analysis.fail_on_suspect): its findings may say "
              "more about the set-up than the model", file=sys.stderr)


def _notified(args, cfg, code: int, run: Optional[str] = None, message: Optional[str] = None) -> int:
    """Send analysis.notify's notifications for this exit code (never changing it), then return it."""
    if cfg is None or args.command == "demo":
        return code
    notify_cfg = cfg.analysis.notify
    if not (notify_cfg.command or notify_cfg.url) or code not in notify_cfg.on:
        return code
    from igaudit.pipeline import notify
    from igaudit.pipeline.run_dir import RunDir
    try:
        run_info = RunDir(run).info() if run else None
    except Exception:  # noqa: BLE001 - a run.json that cannot be read: notify without it
        run_info = None
    payload = notify.alert(code, command=args.command, run=run, run_info=run_info, message=message)
    for line in notify.send(notify_cfg, payload):
        print(f"igaudit: warning: notification failed: {line}", file=sys.stderr)
    return code


def _wait(args, beam_args: list[str]) -> int:
    from igaudit.pipeline import exit_codes, wait
    from igaudit.pipeline.config import load_config
    from igaudit.pipeline.errors import UserError
    from igaudit.pipeline.job import summary_of
    from igaudit.pipeline.paths import shown
    from igaudit.pipeline.runner import use_options
    cfg = None
    if args.config:
        cfg = load_config(args.config, args.overrides)
        use_options(cfg, beam_args)
    else:
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.options.pipeline_options import PipelineOptions
        FileSystems.set_options(PipelineOptions(beam_args))
    path = args.path or (cfg.output.dir if cfg else None)
    if not path:
        raise UserError("igaudit wait needs the run to wait on: a run or audit folder, or --config with its output.dir")
    run = wait.run_to_wait_on(path)
    print(f"igaudit: waiting for {shown(run)} (up to {args.timeout:g} s)", flush=True)
    info = wait.wait_for(run, args.timeout, args.poll)
    if info is None:
        print(f"igaudit: {shown(run)} has not finished after {args.timeout:g} s (no _SUCCESS, no failed run.json); "
              f"it may still be running: wait again, or look at the job", file=sys.stderr)
        return _notified(args, cfg, exit_codes.WAIT_TIMED_OUT, run=run, message="wait timed out")
    code = exit_codes.for_run(info)
    if code == exit_codes.FAILED:
        print(f"igaudit: run failed: {info.get('reason')}; the outputs in {shown(run)} are marked failed (run.json) "
              f"and have no _SUCCESS", file=sys.stderr)
        return _notified(args, cfg, code, run=run)
    timings = info.get("timings") or {}
    total = timings.get("total_seconds", 0.0)
    summary = summary_of(run, info, seconds=total, pipeline_seconds=timings.get("pipeline_seconds") or total)
    print_outcome(summary)
    print(f"igaudit: report: {shown(summary.report)}")
    return _notified(args, cfg, code, run=run)


def finding_line(f: dict) -> str:
    """One finding as the console shows it: "shortcut 3/region/r2-4c13-15 (new): class '3', the top-right 3x3
    cells: needed, transplanted, repeating; not sufficient"."""
    what = "drift" if f["kind"] == "drift" else f["outcome"]
    status = f" ({f['status']})" if f.get("status") else ""
    where = f", {f['region']}" if f.get("region") else ""
    return f"{what} {f['finding']}{status}: class '{f['class_name']}'{where}: {f.get('evidence') or ''}"


def finding_lines(summary) -> list[str]:
    """The findings a person must see: shortcuts (and drift), reviews, resolved and not audited ones."""
    lines = [finding_line(f) for f in summary.flagged + summary.review]
    lines += [f"resolved {f['finding']}: class '{f['class_name']}': re-tested, no longer a shortcut ({f['evidence']})"
              for f in summary.resolved]
    lines += [f"not audited {f['finding']}: {f['evidence']}" for f in summary.not_audited]
    if not summary.flagged:
        lines.insert(0, "nothing flagged" + (f" ({len(summary.review)} to review)" if summary.review else ""))
    return lines


def _compare(args) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from igaudit.pipeline import exit_codes
    from igaudit.pipeline.audit import compare_alerts, compare_runs
    from igaudit.transforms.analysis.skew import change_line
    from igaudit.transforms.records import findings_schema
    findings = compare_runs(args.run, args.reference)
    print(f"igaudit: {change_line(findings, args.reference)}")
    for f in findings:
        if f["flagged"] or f.get("status") in ("resolved", "not audited"):
            print(f"igaudit: {finding_line(f)}")
    print(f"igaudit: {len(findings)} findings, {sum(f['flagged'] for f in findings)} flagged")
    if args.output:
        pq.write_table(pa.Table.from_pylist(findings, schema=findings_schema()), args.output)
    return exit_codes.for_alerts(compare_alerts(findings, args.run))


def entry() -> None:
    """The `igaudit` command: main(), then exit with its code without the interpreter's teardown.

    Every output is written and closed when main() returns; what is left is tearing down TensorFlow's
    and Beam's modules and threads, ~1 s of a one-image run's 8 (benchmarks/RESULTS.md, startup).
    Ctrl-C exits the same way (pipeline/interrupts.py)."""
    code = main()
    import logging
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
