"""Everything a user can get wrong, checked before any work starts: inputs, classes, model, settings.

Each problem ends in a `UserError` naming the thing and the fix.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline import beam_flags, reuse
from igaudit.pipeline.config import Config
from igaudit.pipeline.errors import NothingToAudit, UserError
from igaudit.pipeline.ownership import check_not_over_inputs, glob_base
from igaudit.pipeline.paths import is_remote, shown
from igaudit.pipeline.runner import config_flags
from igaudit.pipeline.run_dir import CLASSES_TABLE, FINDINGS_TABLE, RunDir
from igaudit.transforms.attribution.choices import BASELINE_KINDS
from igaudit.transforms.attribution.model_files import content_hash
from igaudit.transforms.attribution.targets import TargetSpec, parse_target
from igaudit.transforms.imaging.decode import DecodeSpec
from igaudit.transforms.read import label_from_uri, match_files, read_manifest
from igaudit.transforms.records import ImageFile


def find_inputs(cfg: Config) -> tuple[list[ImageFile], Optional[list[ImageFile]]]:
    """(all inputs, the manifest's rows or None). Raises UserError when nothing matches."""
    if cfg.input.manifest:
        try:
            files = read_manifest(cfg.input.manifest)
        except FileNotFoundError:
            raise UserError(f"input.manifest '{shown(cfg.input.manifest)}' not found: point it at a CSV, JSONL or "
                            f"Parquet file with columns uri,label (relative paths are relative to the current "
                            f"directory)") from None
        except (OSError, ValueError) as e:
            raise UserError(f"input.manifest '{cfg.input.manifest}' cannot be read: {e}") from None
        if not files:
            raise NothingToAudit(f"nothing to audit: input.manifest '{cfg.input.manifest}' has no rows")
        return files, files
    try:
        uris = match_files(cfg.input.pattern)
    except Exception as e:  # a filesystem that cannot be listed (bad bucket, missing plugin)
        raise UserError(f"input.pattern '{cfg.input.pattern}' cannot be listed ({type(e).__name__}: {e})") from None
    if not uris and cfg.input.format == "tfrecord":
        raise NothingToAudit(f"nothing to audit: input.pattern '{shown(cfg.input.pattern)}' matches no TFRecord "
                             f"files (relative paths are relative to the current directory)")
    if cfg.input.format == "tfrecord":         # the shards; their records are counted by the job
        return [ImageFile(u, None, "") for u in uris], None
    base = glob_base(cfg.input.pattern)
    if not uris and not is_remote(cfg.input.pattern) and not os.path.isdir(shown(base)):
        raise UserError(f"input.pattern '{shown(cfg.input.pattern)}': the folder '{base}' does not exist: check the "
                        f"path (relative paths are relative to the current directory); for the demo run "
                        f"`igaudit demo`")
    if not uris:
        raise NothingToAudit(f"nothing to audit: input.pattern '{shown(cfg.input.pattern)}' matches no files: check "
                             f"the glob (label = parent folder, e.g. data/train/*/*.png; relative paths are "
                             f"relative to the current directory); for the demo run `igaudit demo`")
    return [ImageFile(u, label_from_uri(u), "") for u in uris], None


def resolve_class_names(cfg: Config, files: list[ImageFile]) -> list[str]:
    if cfg.input.format == "tfrecord" and not cfg.model.class_names:
        raise UserError("input.format tfrecord: set model.class_names to a text file with the model's classes, "
                        "one per line in output order (the labels are only read from the records during the run)")
    if cfg.model.class_names:
        try:
            with FileSystems.open(cfg.model.class_names) as f:
                names = [line.strip() for line in f.read().decode("utf-8").splitlines() if line.strip()]
        except Exception:
            raise UserError(f"model.class_names '{shown(cfg.model.class_names)}' cannot be read: give a text file "
                            f"with one class name per model output, or leave it null to use the sorted "
                            f"labels") from None
        if not names:
            raise UserError(f"model.class_names '{cfg.model.class_names}' is empty")
        return names
    return sorted({f.label for f in files if f.label is not None})


def check_model(cfg: Config, class_names: list[str]):
    """Load the model here so a missing or mismatched model stops the run before any work; returns it."""
    from igaudit.transforms.attribution.models import ModelError, enable_gpu_memory_growth, load_classifier
    enable_gpu_memory_growth()  # before the first TF op; an in-process run's workers share this process
    try:
        classifier = load_classifier(cfg.model)
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
    return classifier


def resolve_attribution(cfg: Config, class_names: list[str],
                        input_shape: tuple) -> tuple[TargetSpec, Optional[np.ndarray]]:
    """`attribution.target` checked against the model's classes, and the baseline image decoded (to the
    model's input shape) when `attribution.baseline` is a path."""
    from igaudit.transforms.imaging.decode import DecodeError
    a = cfg.attribution
    baseline_image = None
    if a.baseline not in BASELINE_KINDS:
        try:
            with FileSystems.open(a.baseline) as f:
                baseline_image = decode_spec(cfg, input_shape).decode(f.read())
        except (OSError, DecodeError) as e:
            raise UserError(f"attribution.baseline '{shown(a.baseline)}' is neither one of "
                            f"{', '.join(BASELINE_KINDS)} nor a readable image ({e})") from None
    if a.method == "grad_cam" and cfg.model.format not in ("auto", "keras") or (
            a.method == "grad_cam" and not cfg.model.path.endswith((".keras", ".h5"))):
        raise UserError("attribution.method grad_cam needs a Keras model (model.path ending in .keras): "
                        "SavedModel and TF-Hub models have no layers to take activations from")
    try:
        target = parse_target(a.target, class_names, k=a.k, num_classes=len(class_names))
    except ValueError as e:
        raise UserError(str(e)) from None
    return target, baseline_image


def read_reference(reference: Optional[str]) -> tuple[Optional[list[dict]], Optional[list[dict]], list[str]]:
    """(class rows, findings rows, warnings) of an earlier, complete run (its _SUCCESS must exist), or
    (None, None, []). A run made before findings.parquet existed gives no findings, and a warning."""
    if not reference:
        return None, None, []
    run = RunDir(reference)
    if not run.complete:
        raise UserError(f"analysis.reference '{shown(reference)}' is not a complete igaudit run (no _SUCCESS): point it "
                        f"at an earlier run's output dir, or set it to null")
    tables, warnings = {}, []
    for name in (CLASSES_TABLE, FINDINGS_TABLE):
        if name == FINDINGS_TABLE and not run.has(name):
            warnings.append(f"the reference run '{shown(reference)}' has no {name} (an older igaudit made "
                            f"it): its flags are not re-tested, and every finding of this run counts as new")
            tables[name] = []
            continue
        try:
            tables[name] = run.rows(name, missing_ok=False)
        except Exception as e:
            raise UserError(f"analysis.reference '{shown(reference)}': {name} cannot be read ({e})") from None
    return tables[CLASSES_TABLE], tables[FINDINGS_TABLE], warnings


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """What the checks found, for the run to use: inputs, classes, the resolved target and baseline image,
    the reference run's class rows and findings."""
    files: list
    manifest_files: Optional[list]
    class_names: list
    input_shape: tuple              # (H, W, C) the model takes
    target: TargetSpec
    baseline_image: Optional[np.ndarray]
    reference_classes: Optional[list]
    reference_findings: Optional[list]
    warnings: list                  # a flag the runner ignores, a reference without findings
    decode: DecodeSpec              # how every stage decodes an input for this model (`decode_spec`)
    reuse_key: str = ""             # the model and the settings that shape rows (`reuse.reuse_key`); run.json
    reuse_from: Optional[str] = None   # the reference run whose unchanged images are reused (audit.reuse)


def decode_spec(cfg: Config, input_shape: tuple) -> DecodeSpec:
    """The one decode spec of a run: the model's size and channels, `model.resize`, `input.max_pixels`."""
    return DecodeSpec(tuple(input_shape[:2]), cfg.model.resize, cfg.input.max_pixels, int(input_shape[2]))


def check(cfg: Config, beam_args: list[str] = ()) -> Plan:
    """Every check that can fail before any work, in the order a user would fix them."""
    warnings = beam_flags.check(config_flags(cfg) + list(beam_args))
    files, manifest_files = find_inputs(cfg)
    check_not_over_inputs(cfg.output.dir, cfg.input.pattern, cfg.input.manifest, (f.uri for f in files))
    return _plan(cfg, files, manifest_files, resolve_class_names(cfg, files), warnings)


def plan_for(cfg: Config, class_names: Optional[list] = None) -> Plan:
    """A plan for `build.AuditImages` in a pipeline of your own: the checks of `check` that do not list the
    inputs (the model, the attribution settings, the reference run). class_names: the model's classes in
    output order (default: `model.class_names`, else the sorted labels of `cfg.input`'s images)."""
    files = [] if class_names or cfg.model.class_names else find_inputs(cfg)[0]
    names = list(class_names) if class_names else resolve_class_names(cfg, files)
    return _plan(cfg, files, None, names, [])


def _plan(cfg: Config, files: list, manifest_files: Optional[list], class_names: list, warnings: list) -> Plan:
    """The checks once the classes are known: the model, the attribution settings, the reference run."""
    classifier = check_model(cfg, class_names)
    target, baseline_image = resolve_attribution(cfg, class_names, classifier.input_shape)
    reference_classes, reference_findings, reference_warnings = read_reference(cfg.analysis.reference)
    decode = decode_spec(cfg, classifier.input_shape)
    key = reuse.reuse_key(cfg, class_names, decode.to_dict(), content_hash(cfg.model.path))
    reference_info = RunDir(cfg.analysis.reference).info() if cfg.analysis.reference else None
    reuse_from, why_not = reuse.reuse_source(cfg, key, reference_info)
    return Plan(files, manifest_files, class_names, classifier.input_shape, target, baseline_image,
                reference_classes, reference_findings, warnings + reference_warnings + [why_not] * bool(why_not),
                decode, key, reuse_from)


def _on_a_bucket(path: Optional[str]) -> bool:
    return bool(path) and is_remote(path)


def check_offline(cfg: Config, beam_args: list[str] = ()) -> Plan:
    """A dry run's checks, from the config alone: nothing on a bucket is listed or read (the inputs are matched
    by the job itself; a local model, class-name file or manifest is still read). What the job request is
    built without is said in the plan's warnings."""
    warnings = beam_flags.check(config_flags(cfg) + list(beam_args))
    m = cfg.model
    manifest_files = None
    if cfg.input.manifest:
        if _on_a_bucket(cfg.input.manifest):
            manifest_files = []
            warnings.append(f"dry run: input.manifest '{cfg.input.manifest}' is not read; the job request lists "
                            f"none of its rows")
        else:
            manifest_files = find_inputs(cfg)[1]
    if m.class_names and not _on_a_bucket(m.class_names):
        class_names = resolve_class_names(cfg, [])
    elif manifest_files and not m.class_names:
        class_names = resolve_class_names(cfg, manifest_files)
    else:
        class_names = []
        warnings.append("dry run: the class names come from the bucket (labels or model.class_names) and are not "
                        "read; the job request is built with none")
    if _on_a_bucket(m.path):
        if not m.input_size:
            raise UserError(f"a dry run reads nothing from the bucket, so the model '{m.path}' is not loaded: set "
                            f"model.input_size (height, width) for the job request to be built")
        input_shape = (m.input_size[0], m.input_size[1], 3)
    else:
        input_shape = check_model(cfg, class_names).input_shape if class_names else load_local_shape(cfg)
    a = cfg.attribution
    if a.baseline not in BASELINE_KINDS and _on_a_bucket(a.baseline):
        raise UserError(f"a dry run reads nothing from the bucket: attribution.baseline '{a.baseline}' is an image "
                        f"there; check the job with a baseline kind ({', '.join(BASELINE_KINDS)})")
    try:
        target, baseline_image = resolve_attribution(cfg, class_names or ["?"], input_shape)
    except UserError as e:
        raise UserError(f"{e} (a dry run checks attribution.target against the class names it could read)") from None
    if cfg.analysis.reference:
        warnings.append(f"dry run: the reference run '{cfg.analysis.reference}' is not read")
    return Plan([], manifest_files, class_names, input_shape, target, baseline_image, None, None, warnings,
                decode_spec(cfg, input_shape))


def load_local_shape(cfg: Config) -> tuple:
    """A local model's input shape (H, W, C), loaded without checking its outputs against class names."""
    from igaudit.transforms.attribution.models import ModelError, load_classifier
    try:
        return load_classifier(cfg.model).input_shape
    except ModelError as e:
        raise UserError(str(e)) from None
