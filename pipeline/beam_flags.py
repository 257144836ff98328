"""Beam flags, checked before any work: an unknown flag or runner is a user error naming the closest known
one (Beam itself would drop an unknown flag with a log line), and a flag the chosen runner ignores is a
warning.

Known flags are those Beam's own PipelineOptions classes declare (every runner's options live there).
"""
from __future__ import annotations

import difflib
import re
from functools import lru_cache

from apache_beam.options import pipeline_options as po

from igaudit.pipeline.errors import UserError

# What `--runner` may name (case-insensitive; the "Runner" suffix optional), besides a dotted class path.
# No runner at all means Beam's in-process FnApiRunner (pipeline/runner.py: make_pipeline).
RUNNERS = ("DirectRunner", "FnApiRunner", "PrismRunner", "PortableRunner", "FlinkRunner", "SparkRunner",
           "DataflowRunner")
REFUSED_RUNNERS = {
    "dask": "Beam's DaskRunner runs but silently loses data (the last batch of each partition in RunInference, "
            "all but the last of two sinks); use the default local runner, --direct_num_workers=N "
            "--direct_running_mode=multi_processing, or PortableRunner / FlinkRunner / SparkRunner / DataflowRunner",
}
_LOCAL = ("", "direct", "fnapi", "switchingdirect", "bundlebaseddirect", "testdirect")
_PORTABLE = ("portable", "flink", "spark", "prism")
# Option classes (or single flags) that only some runners read.
_CLASS_RUNNERS = {
    "DirectOptions": _LOCAL,
    "FlinkRunnerOptions": ("flink",),
    "SparkRunnerOptions": ("spark",),
    "PrismRunnerOptions": ("prism",),
    "KafkaStreamsRunnerOptions": ("kafkastreams",),
    "JobServerOptions": _PORTABLE,
    "PortableOptions": _PORTABLE + ("dataflow", "testdataflow"),
}
_DATAFLOW_WORKER_FLAGS = ("--num_workers", "--max_num_workers", "--machine_type", "--worker_machine_type",
                          "--disk_size_gb", "--worker_disk_type", "--autoscaling_algorithm", "--worker_region",
                          "--worker_zone", "--dataflow_service_options", "--service_account_email")


def _option_classes():
    seen, todo = [], [po.PipelineOptions]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


@lru_cache(maxsize=1)
def known_flags() -> dict[str, str]:
    """'--flag' -> the name of the PipelineOptions class that declares it."""
    flags = {}
    for cls in _option_classes():
        parser = po._BeamArgumentParser(allow_abbrev=False)  # noqa: SLF001 - Beam's own option parser
        try:
            cls._add_argparse_args(parser)  # noqa: SLF001 - how Beam collects its options
        except Exception:  # noqa: BLE001 - an options class that cannot register here is not offered
            continue
        for action in parser._actions:  # noqa: SLF001
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    flags.setdefault(flag, cls.__name__)
    return flags


def runner_key(runner) -> str:
    """'DataflowRunner', 'dataflow', 'apache_beam.runners...DataflowRunner', a runner object -> 'dataflow'."""
    if not runner:
        return ""
    name = (runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1].lower()
    return name[: -len("runner")] if name.endswith("runner") else name


def _closest(name: str, flags: dict) -> str:
    """'; did you mean X?' with the closest Beam flag or igaudit config key, or ''."""
    from igaudit.pipeline.config import config_keys
    def ratio(a, b):
        return difflib.SequenceMatcher(None, a, b).ratio()

    bare = name.lstrip("-")
    options = [(ratio(name, f), f) for f in flags]
    options += [(max(ratio(bare, key.split(".")[1]), ratio(bare, key.replace(".", ""))), f"--set {key}=...")
                for key in config_keys()]
    score, best = max(options, key=lambda o: o[0])     # ties: the first (Beam flags, then config order)
    return f"; did you mean {best}?" if score >= 0.6 else ""


def _flag_names(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def check(args: list[str]) -> list[str]:
    """Raise UserError for an unknown flag or runner; return warnings for flags the runner ignores."""
    flags = known_flags()
    for name in _flag_names(args):
        if name not in flags:
            raise UserError(f"unknown Beam flag {name}{_closest(name, flags)} (Beam flags go after --; igaudit's own "
                            f"options are config keys: --set section.key=value)")
    runner = ""
    for i, arg in enumerate(args):
        if arg == "--runner" and i + 1 < len(args):
            runner = args[i + 1]
        elif arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
    key = runner_key(runner) if runner else ""
    if key in REFUSED_RUNNERS:
        raise UserError(f"--runner={runner} is not supported: {REFUSED_RUNNERS[key]}")
    if runner and "." not in runner and key not in {runner_key(r) for r in RUNNERS} | set(_LOCAL):
        close = difflib.get_close_matches(runner, RUNNERS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UserError(f"unknown runner {runner!r}{hint}; runners: {', '.join(RUNNERS)} (no --runner: the local "
                        f"in-process runner)")
    warnings = []
    shown = runner or "the local runner"
    for name in _flag_names(args):
        readers = _CLASS_RUNNERS.get(flags[name])
        if name in _DATAFLOW_WORKER_FLAGS:
            readers = ("dataflow", "testdataflow")
        if readers is not None and key not in readers:
            warnings.append(f"Beam flag {name} is ignored by {shown}")
    return warnings


_SECRET = re.compile(r"secret|password|passwd|token|access_key|key_id|credential|api_key", re.I)


def redacted(beam_args) -> list[str]:
    """Beam arguments fit to write into run.json and a report that gets mailed around: secrets' values
    replaced by *** (`--flag=value` and `--flag value` forms)."""
    out, hide_next = [], False
    for arg in beam_args or []:
        if hide_next and not arg.startswith("--"):
            out.append("***")
        elif "=" in arg and _SECRET.search(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
        hide_next = arg.startswith("--") and "=" not in arg and bool(_SECRET.search(arg))
    return out


def redacted_config(config: dict) -> dict:
    """The config as a dict with the values of secret-named options in its `beam` section replaced by ***,
    and the notification URL's path and query (a webhook URL is its own secret) too."""
    beam = {k: ("***" if _SECRET.search(str(k)) else v) for k, v in (config.get("beam") or {}).items()}
    out = {**config, "beam": beam} if config.get("beam") else config
    notify = (config.get("analysis") or {}).get("notify") or {}
    if notify.get("url"):
        from igaudit.pipeline.notify import redacted_url
        out = {**out, "analysis": {**out["analysis"], "notify": {**notify, "url": redacted_url(notify["url"])}}}
    return out
