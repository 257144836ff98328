"""One audit run: check inputs up front, run the Beam graph, then write run.json, report.html, _SUCCESS.

Everything a user can get wrong (config, model, inputs, output dir) is checked
before any work starts and ends in a `UserError` naming the thing and the fix.
"""
from __future__ import annotations

import dataclasses
import glob
import io
import json
import logging
import os
import platform
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.build import build_pipeline, model_spec
from pipeline.config import Config
from transforms.attribute import enable_gpu_memory_growth
from transforms.models import ModelError, load_classifier
from transforms.read import label_from_uri, match_files, read_manifest
from transforms.records import ImageFile

log = logging.getLogger("igaudit")

# Everything a run writes; a rerun into the same directory removes these first.
OUTPUT_ENTRIES = ("_SUCCESS", "images", "masks", "overlays", "raw", "classes.parquet", "skew.parquet",
                  "rejected.parquet", "report.html", "run.json")


class UserError(Exception):
    """A problem the user can fix; the message names the thing and the fix."""


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


def find_inputs(cfg: Config) -> tuple[list[ImageFile], Optional[list[ImageFile]]]:
    """(all inputs, the manifest's rows or None). Raises UserError when nothing matches."""
    if cfg.input.manifest:
        try:
            files = read_manifest(cfg.input.manifest)
        except FileNotFoundError:
            raise UserError(f"input.manifest '{cfg.input.manifest}' not found: point it at a CSV, JSONL or "
                            f"Parquet file with columns uri,label") from None
        except (OSError, ValueError) as e:
            raise UserError(f"input.manifest '{cfg.input.manifest}' cannot be read: {e}") from None
        if not files:
            raise UserError(f"input.manifest '{cfg.input.manifest}' has no rows")
        return files, files
    try:
        uris = match_files(cfg.input.pattern)
    except Exception as e:  # a filesystem that cannot be listed (bad bucket, missing plugin)
        raise UserError(f"input.pattern '{cfg.input.pattern}' cannot be listed ({type(e).__name__}: {e})") from None
    if not uris:
        raise UserError(f"input.pattern '{cfg.input.pattern}' matches no files: check the glob (label = parent "
                        f"folder, e.g. data/train/*/*.png); for the demo run `igaudit demo`")
    return [ImageFile(u, label_from_uri(u), "") for u in uris], None


def resolve_class_names(cfg: Config, files: list[ImageFile]) -> list[str]:
    if cfg.model.class_names:
        try:
            with FileSystems.open(cfg.model.class_names) as f:
                names = [line.strip() for line in f.read().decode("utf-8").splitlines() if line.strip()]
        except Exception:
            raise UserError(f"model.class_names '{cfg.model.class_names}' cannot be read: give a text file with "
                            f"one class name per model output, or leave it null to use the sorted labels") from None
        if not names:
            raise UserError(f"model.class_names '{cfg.model.class_names}' is empty")
        return names
    return sorted({f.label for f in files if f.label is not None})


def check_model(cfg: Config, class_names: list[str]) -> int:
    """Load the model once here so a missing or mismatched model stops the run before any work."""
    try:
        classifier = load_classifier(model_spec(cfg))
    except ModelError as e:
        raise UserError(str(e)) from None
    n = classifier.num_classes
    if cfg.model.class_names is None and n != len(class_names):
        raise UserError(f"the model has {n} outputs but the input has {len(class_names)} labels "
                        f"({', '.join(class_names[:8])}{'...' if len(class_names) > 8 else ''}): set "
                        f"model.class_names to a file with one name per output")
    if cfg.model.class_names is not None and n != len(class_names):
        raise UserError(f"model.class_names '{cfg.model.class_names}' lists {len(class_names)} names but the "
                        f"model has {n} outputs")
    return n


def resolve_settings(cfg: Config, class_names: list[str]):
    """Attribution settings checked against the model's classes; a baseline image path is loaded here."""
    from pipeline.build import attribution_settings
    from pipeline.config import BASELINE_KINDS
    from transforms.decode import DecodeError, decode_image
    a = cfg.attribution
    baseline_image = None
    if a.baseline not in BASELINE_KINDS:
        try:
            with FileSystems.open(a.baseline) as f:
                baseline_image = decode_image(f.read(), tuple(cfg.model.input_size), cfg.model.resize)
        except (OSError, DecodeError) as e:
            raise UserError(f"attribution.baseline '{a.baseline}' is neither one of {', '.join(BASELINE_KINDS)} "
                            f"nor a readable image ({e})") from None
    if a.method == "grad_cam" and cfg.model.format not in ("auto", "keras") or (
            a.method == "grad_cam" and not cfg.model.path.endswith((".keras", ".h5"))):
        raise UserError("attribution.method grad_cam needs a Keras model (model.path ending in .keras): "
                        "SavedModel and TF-Hub models have no layers to take activations from")
    try:
        return attribution_settings(cfg, class_names, baseline_image)
    except ValueError as e:
        raise UserError(str(e)) from None


def prepare_output_dir(out_dir: str) -> None:
    """Make the dir, prove it is writable, and remove an earlier run's outputs (_SUCCESS first)."""
    try:
        FileSystems.mkdirs(out_dir)
    except OSError:
        pass  # exists already
    probe = FileSystems.join(out_dir, ".igaudit-write-test")
    try:
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except Exception as e:
        raise UserError(f"output.dir '{out_dir}' cannot be written ({type(e).__name__}): choose a writable "
                        f"directory with --set output.dir=...") from None
    # _SUCCESS goes first, so an interrupted clean-up never leaves a run that looks complete.
    success = FileSystems.join(out_dir, "_SUCCESS")
    if FileSystems.exists(success):
        FileSystems.delete([success])
    stale = [FileSystems.join(out_dir, name) for name in OUTPUT_ENTRIES]
    present = [p for p in stale if FileSystems.exists(p)]
    # Beam's sinks stage into beam-temp-* folders; a killed run leaves them behind.
    # Their files are matched (folders are not, locally); deleting a local folder removes it whole.
    leftovers = FileSystems.match([FileSystems.join(out_dir, "beam-temp-*"),
                                   FileSystems.join(out_dir, "beam-temp-*", "*")])
    present += [m.path for m in leftovers[0].metadata_list]
    present += [m.path.rsplit("/", 1)[0] for m in leftovers[1].metadata_list]
    if "://" not in out_dir:  # empty local folders match nothing above
        present += glob.glob(os.path.join(out_dir, "beam-temp-*"))
    present = sorted(set(present))
    outermost = [p for p in present if not any(p.startswith(q + "/") for q in present)]
    if outermost:
        FileSystems.delete(outermost)


def pipeline_options(cfg: Config, beam_args: list[str]) -> PipelineOptions:
    """Config `beam:` options first, then command-line Beam flags (which win)."""
    from_config = []
    for key, value in cfg.beam.items():
        if isinstance(value, bool):
            from_config.append(f"--{key}" if value else f"--no{key}")
        elif isinstance(value, list):
            from_config.extend(f"--{key}={v}" for v in value)
        else:
            from_config.append(f"--{key}={value}")
    args = from_config + list(beam_args)
    return PipelineOptions(args + worker_code_options(PipelineOptions(args).get_all_options()))


PROJECT_ROOT = Path(__file__).resolve().parents[1]
SETUP_FILE = PROJECT_ROOT / "setup.py"
_LOCAL_MASTERS = ("[local]", "[auto]")   # FlinkRunner's in-process Flink (LOOPBACK workers)


def _runner_key(runner) -> str:
    """'DataflowRunner', 'dataflow', 'apache_beam.runners...DataflowRunner', a runner object -> 'dataflow'."""
    if not runner:
        return ""
    name = (runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1].lower()
    return name[: -len("runner")] if name.endswith("runner") else name


def runs_on_remote_workers(all_options: dict) -> bool:
    """Whether the SDK workers run somewhere other than this process (so they need our code shipped)."""
    runner = _runner_key(all_options.get("runner"))
    if runner in ("dataflow", "testdataflow"):
        return True
    if runner not in ("portable", "flink", "spark"):
        return False                   # FnApiRunner (our default), DirectRunner, Prism: workers are local
    environment = (all_options.get("environment_type") or "").upper()
    if environment == "LOOPBACK":
        return False                   # workers are threads of this process
    if not environment:                # Flink/Spark default to LOOPBACK on an in-process master
        if runner == "flink" and (all_options.get("flink_master") or "[auto]").strip() in _LOCAL_MASTERS:
            return False
        if runner == "spark" and re.match(r"^local(\[.+\])?$", all_options.get("spark_master_url") or "local[4]"):
            return False
    return True                        # PortableRunner defaults to DOCKER


def _container_given(all_options: dict) -> bool:
    if all_options.get("sdk_container_image") or all_options.get("worker_harness_container_image"):
        return True
    environment = (all_options.get("environment_type") or "").upper()
    env_options = all_options.get("environment_options") or []
    return environment in ("DOCKER", "") and bool(   # unset: the portable runners' default is DOCKER
        all_options.get("environment_config")
        or any(o.startswith("docker_container_image=") for o in env_options))


def worker_code_options(all_options: dict, setup_file: Path = SETUP_FILE) -> list[str]:
    """Extra Beam flags that ship igaudit to remote workers: `--setup_file=<project>/setup.py`.

    Added only when the runner's workers are remote (Dataflow, Flink, Spark, PortableRunner
    with a non-LOOPBACK environment) and nothing else ships the code: no --setup_file, no
    --extra_package(s), no container (--sdk_container_image, or a DOCKER environment_config),
    since a container built from docker/Dockerfile already has the project installed.
    """
    if not runs_on_remote_workers(all_options):
        return []
    if all_options.get("setup_file") or all_options.get("extra_packages") or _container_given(all_options):
        return []
    if not Path(setup_file).is_file():
        log.warning("igaudit is not installed from a source checkout (no %s): remote workers will not get "
                    "its code unless you pass --sdk_container_image or --extra_package", setup_file)
        return []
    return [f"--setup_file={setup_file}"]


METRICS_NAMESPACE = "igaudit"
KNOWN_COUNTERS = ("images_read", "decoded", "attributed", "rejected_read", "rejected_decode",
                  "rejected_attribute", "gradient_samples")


def query_metrics(result) -> dict:
    """The run's counters and distributions in namespace igaudit, summed over steps.

    {"counters": {name: int}, "distributions": {name: {count, sum, min, max, mean}}}; counters that
    never moved are 0. Empty when the runner cannot report metrics.
    """
    from apache_beam.metrics.metric import MetricsFilter
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception as e:  # noqa: BLE001 - metrics are a report, never a reason to fail the run
        log.warning("cannot query metrics from the runner: %s: %s", type(e).__name__, e)
        return {}

    def value(r):
        return r.committed if r.committed is not None else r.attempted

    counters = {name: 0 for name in KNOWN_COUNTERS}
    for r in found.get("counters", []):
        counters[r.key.metric.name] = counters.get(r.key.metric.name, 0) + int(value(r) or 0)
    distributions: dict = {}
    for r in found.get("distributions", []):
        d = value(r)
        if d is None or not d.count:
            continue
        acc = distributions.setdefault(r.key.metric.name, {"count": 0, "sum": 0, "min": d.min, "max": d.max})
        acc["count"] += d.count
        acc["sum"] += d.sum
        acc["min"], acc["max"] = min(acc["min"], d.min), max(acc["max"], d.max)
    for acc in distributions.values():
        acc["mean"] = acc["sum"] / acc["count"]
    return {"counters": dict(sorted(counters.items())), "distributions": dict(sorted(distributions.items()))}


def attribution_phase(metrics: dict, attributed: int) -> dict:
    """From the first batch's start to the last batch's end (the `attribute_clock_ms` metric): the
    seconds and images/s of attribution alone, without the run's startup (imports, model load,
    graph) and wind-down (tables, report). Empty when the runner reported no such metric."""
    clock = metrics.get("distributions", {}).get("attribute_clock_ms")
    if not clock or clock["max"] <= clock["min"]:
        return {}
    seconds = (clock["max"] - clock["min"]) / 1000.0
    return {"attribution_seconds": round(seconds, 3),
            "attribution_images_per_second": round(attributed / seconds, 3)}


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """Use the requested runner; with none, the in-process FnApiRunner.

    Beam's default DirectRunner first tries to download and start a Prism
    binary, which fails offline; going straight to the FnApiRunner keeps the
    local default offline and deterministic. It honours --direct_num_workers
    and --direct_running_mode.
    """
    if options.get_all_options().get("runner"):
        return beam.Pipeline(options=options)
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision), options=options)


def read_table(path: str, columns: Optional[list[str]] = None):
    """A Parquet file on any Beam filesystem (only `columns`, when given)."""
    import pyarrow.parquet as pq
    with FileSystems.open(path) as f:
        return pq.read_table(io.BytesIO(f.read()), columns=columns)


def read_images_table(out_dir: str, columns: Optional[list[str]] = None):
    """All images/*.parquet parts as one table; pass `columns` to keep big runs small in memory."""
    import pyarrow as pa
    from transforms.records import images_schema
    paths = [m.path for m in FileSystems.match([FileSystems.join(out_dir, "images", "*.parquet")])[0].metadata_list]
    tables = [read_table(p, columns) for p in sorted(paths)]
    if tables:
        return pa.concat_tables(tables)
    schema = images_schema()
    return (schema if columns is None else pa.schema([schema.field(c) for c in columns])).empty_table()


def read_reference_classes(reference: Optional[str]) -> Optional[list[dict]]:
    """The class rows of an earlier, complete run (its _SUCCESS must exist)."""
    if not reference:
        return None
    if not FileSystems.exists(FileSystems.join(reference, "_SUCCESS")):
        raise UserError(f"analysis.reference '{reference}' is not a complete igaudit run (no _SUCCESS): point it "
                        f"at an earlier run's output dir, or set it to null")
    try:
        return read_table(FileSystems.join(reference, "classes.parquet")).to_pylist()
    except Exception as e:
        raise UserError(f"analysis.reference '{reference}': classes.parquet cannot be read ({e})") from None


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def run_job(cfg: Config, beam_args: list[str] = ()) -> RunSummary:
    """Run one audit into cfg.output.dir and return what it did. Raises UserError before any work."""
    started = time.time()
    files, manifest_files = find_inputs(cfg)
    class_names = resolve_class_names(cfg, files)
    enable_gpu_memory_growth()  # before check_model's TF ops; an in-process run's workers share this process
    check_model(cfg, class_names)
    settings = resolve_settings(cfg, class_names)
    reference = read_reference_classes(cfg.analysis.reference)
    out_dir = cfg.output.dir
    prepare_output_dir(out_dir)
    log.debug("matched %d input files; classes: %s", len(files), ", ".join(class_names))
    print(f"igaudit: {len(files)} images matched, {len(class_names)} classes; writing to {out_dir}", flush=True)

    options = pipeline_options(cfg, list(beam_args))
    p = make_pipeline(options)
    build_pipeline(p, cfg, class_names, out_dir, manifest_files, reference, settings)
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

    images = read_images_table(out_dir, columns=["image_id"])
    rejected = read_table(FileSystems.join(out_dir, "rejected.parquet"))
    skew = read_table(FileSystems.join(out_dir, "skew.parquet")).to_pylist()
    flagged = sorted({(r["group_by"], r["class_name"]) for r in skew if r["flagged"]})
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
        "flagged": [{"group_by": g, "class_name": c} for g, c in flagged],
        "timings": {"total_seconds": round(time.time() - started, 3),
                    "pipeline_seconds": round(pipeline_seconds, 3),
                    "images_per_second": round(counts["attributed"] / max(pipeline_seconds, 1e-9), 3),
                    **attribution_phase(metrics, counts["attributed"])},
        "metrics": metrics,
    }
    from pipeline.report import write_report
    report_path = write_report(out_dir, run_info)
    run_info["timings"]["total_seconds"] = round(time.time() - started, 3)
    write_text(FileSystems.join(out_dir, "run.json"), json.dumps(run_info, indent=2, default=str))
    if status != "ok":
        raise RuntimeError(f"counts do not reconcile: matched {counts['matched']} != attributed "
                           f"{counts['attributed']} + rejected {counts['rejected']}; outputs in {out_dir} are "
                           f"incomplete (no _SUCCESS)")
    write_text(FileSystems.join(out_dir, "_SUCCESS"), "")
    return RunSummary(out_dir=out_dir, class_names=class_names, flagged=run_info["flagged"],
                      seconds=time.time() - started, pipeline_seconds=pipeline_seconds, metrics=metrics,
                      report=report_path, **counts)


def absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())
