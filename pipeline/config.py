"""The config schema: the one declaration of every option, its default and its allowed values.

Each section is a frozen dataclass; each field carries its default and its check (`checks`: it
cleans the value, e.g. a YAML list into a tuple, or raises ValueError saying what would be
accepted). The checks run whenever a section is built, from YAML or in code, so a section
object is always valid. The engines receive these section objects as they are (no copy into
a second settings type). Allowed values come from the modules that implement them
(`transforms.attribution.choices`, `transforms.imaging.render` ...), all importable without
TensorFlow, so parsing a config never imports it.

Why dataclasses and not pydantic: they come with Python, pickle as they are for Beam's workers, and a field's
check sits beside its default; pydantic would add a dependency (its own version constraints) for no feature used.

YAML is read with a safe loader; every problem a user can cause ends in one `ConfigError` naming the field.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, Optional

import yaml

from igaudit.pipeline import checks as c
from igaudit.transforms.analysis.skew import ALERT_ON, DEFAULT_MAX_CLUSTERS
from igaudit.transforms.attribution.choices import (AUTO_RULES, BASELINE_KINDS, FORMATS, METHODS, OUTPUTS,
                                                    PRECISIONS, RULE_CHOICES, SCORES, SMOOTHINGS, ignored_settings)
from igaudit.transforms.attribution.quality import RANKINGS
from igaudit.transforms.imaging.colormaps import CMAP_CHOICES, DIVERGING, resolve_cmap
from igaudit.transforms.imaging.decode import DEFAULT_MAX_PIXELS, RESIZE_MODES
from igaudit.transforms.imaging.render import OVERLAYS, POLARITIES

INPUT_FORMATS, LAYOUTS = ("files", "tfrecord"), ("files", "shards")     # LAYOUTS: output.layout, transforms/artifacts.py


class ConfigError(Exception):
    """A bad config: the message names the field and the fix."""


class FieldError(ValueError):
    """A field's value failed its check: which field, the value, and what is expected."""

    def __init__(self, field: str, value: Any, expected: str):
        super().__init__(f"{field}: {expected}; got {value!r}")
        self.field, self.value, self.expected = field, value, expected


class _Section:
    """Runs every field's check when a section is built (and `_validate`, for checks across fields)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is None:
                continue
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, check(value))
            except ValueError as e:
                raise FieldError(f.name, value, str(e)) from None
        self._validate()

    def _validate(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class TFRecordConfig(_Section):
    """The tf.train.Example feature keys of `input.format: tfrecord` (TFDS's, TF Object Detection's names)."""
    image: str = c.field("image/encoded", c.text)             # the encoded image bytes
    label_text: str = c.field("image/class/text", c.text)     # the label as text, or else ...
    label_index: str = c.field("image/class/label", c.text)   # ... as an index into model.class_names
    id: str = c.field("image/filename", c.text)               # else the shard's name and record position


@dataclasses.dataclass(frozen=True)
class InputConfig(_Section):
    pattern: Optional[str] = c.field(None, c.optional(c.path), local_path=True)
    manifest: Optional[str] = c.field(None, c.optional(c.path), local_path=True)
    max_pixels: int = c.field(DEFAULT_MAX_PIXELS, c.integer(1))
    format: str = c.field("files", c.choice(*INPUT_FORMATS))   # files: images (pattern or manifest) | tfrecord
    tfrecord: TFRecordConfig = dataclasses.field(default_factory=TFRecordConfig,
                                                 metadata={"check": c.section(TFRecordConfig)})

    def _validate(self) -> None:
        if self.format == "tfrecord" and self.manifest:
            raise FieldError("manifest", self.manifest, "input.format tfrecord reads input.pattern (a glob of "
                                                        "TFRecord shards), not a manifest")


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    path: str = c.field("models/demo.keras", c.path, local_path=True)
    input_size: Optional[tuple] = c.field(None, c.optional(c.pair(int, positive=True)))   # None: the model's own
    input_range: tuple = c.field((0.0, 1.0), c.range_pair)
    output: str = c.field("logits", c.choice(*OUTPUTS))
    class_names: Optional[str] = c.field(None, c.optional(c.path), local_path=True)
    resize: str = c.field("pad", c.choice(*RESIZE_MODES))
    format: str = c.field("auto", c.choice(*FORMATS))
    signature: str = c.field("serving_default", c.text)
    share_across_processes: bool = c.field(False, c.boolean)
    # Keras models: the compute dtype (Keras mixed precision: float32 variables, float16 / bfloat16 math)
    precision: str = c.field("float32", c.choice(*PRECISIONS))


@dataclasses.dataclass(frozen=True)
class AttributionConfig(_Section):
    method: str = c.field("integrated_gradients", c.choice(*METHODS))
    # With smoothing, unset steps / rule default to 50 / trapezoid instead (`from_dict`).
    steps: Any = c.field("auto", c.or_auto(c.integer(1)))
    tolerance: float = c.field(0.01, c.number(1e-6, 1.0))
    pixel_tolerance: float = c.field(0.03, c.number(1e-6, 1e3))
    max_steps: int = c.field(128, c.integer(2))
    rule: str = c.field("adaptive", c.choice(*RULE_CHOICES))
    baseline: str = c.field("black", c.baseline, local_path=True)
    baseline_samples: int = c.field(1, c.integer(1))
    blur_sigma: float = c.field(5.0, c.number(0.1, 1000.0))
    baseline_stdev: float = c.field(0.15, c.number(0.0, 10.0))
    references: int = c.field(16, c.integer(1))
    target: Any = c.field("predicted", c.target)
    k: int = c.field(1, c.integer(1))
    score: str = c.field("probability", c.choice(*SCORES))
    smoothing: str = c.field("none", c.choice(*SMOOTHINGS))
    samples: int = c.field(25, c.integer(1))
    stdev: float = c.field(0.15, c.number(0.0, 10.0))
    layer: Optional[str] = c.field(None, c.optional(c.text))
    window: int = c.field(8, c.integer(1))
    stride: int = c.field(4, c.integer(1))
    fill: float = c.field(0.0, c.number(-1e6, 1e6))
    batch_size: int = c.field(16, c.integer(1))
    chunk_size: Any = c.field(64, c.or_auto(c.integer(1)))
    memory_mb: Optional[float] = c.field(None, c.optional(c.number(1.0, 1e7)))
    jit_compile: bool = c.field(False, c.boolean)


@dataclasses.dataclass(frozen=True)
class QualityConfig(_Section):
    enabled: bool = c.field(False, c.boolean)
    steps: int = c.field(20, c.integer(2))
    ranking: str = c.field("positive", c.choice(*RANKINGS))
    infidelity_samples: int = c.field(10, c.integer(1))
    infidelity_stdev: float = c.field(0.1, c.number(1e-6, 10.0))


@dataclasses.dataclass(frozen=True)
class OutputConfig(_Section):
    dir: str = c.field("out/demo", c.path, local_path=True)
    masks: bool = c.field(True, c.boolean)
    overlays: bool = c.field(True, c.boolean)
    raw: bool = c.field(False, c.boolean)
    layout: str = c.field("files", c.choice(*LAYOUTS))


@dataclasses.dataclass(frozen=True)
class NotifyConfig(_Section):
    """Who hears about a finished run, on the exit codes in `on` (pipeline/notify.py): a shell command and/or
    a URL, each given the alert as JSON. A notification that fails never changes the run's outcome."""
    command: Optional[str] = c.field(None, c.optional(c.text))
    url: Optional[str] = c.field(None, c.optional(c.url))
    on: tuple = c.field((1, 3, 4), c.exit_codes)        # failed, alert, suspect
    timeout: float = c.field(30.0, c.number(1.0, 3600.0))   # seconds the command or the POST may take


@dataclasses.dataclass(frozen=True)
class AnalysisConfig(_Section):
    grid: int = c.field(16, c.integer(2))
    border: float = c.field(0.1, c.number(0.0, 0.5))
    reference: Optional[str] = c.field(None, c.optional(c.path), local_path=True)   # an earlier run to compare with
    # A run that rejects more than this share of its inputs fails (status failed, no _SUCCESS, exit 1).
    max_rejected_share: float = c.field(0.5, c.number(0.0, 1.0))
    thresholds: dict = dataclasses.field(default_factory=dict, metadata={"check": c.thresholds})
    alert_on: str = c.field("new", c.choice(*ALERT_ON))                # which flags make run / audit exit 3
    fail_on_suspect: bool = c.field(True, c.boolean)                   # a suspect run exits 4 (else it warns)
    notify: NotifyConfig = dataclasses.field(default_factory=NotifyConfig, metadata={"check": c.section(NotifyConfig)})
    max_clusters: int = c.field(DEFAULT_MAX_CLUSTERS, c.integer(1))    # strategy clusters per class (1: none)
    cluster_sample: int = c.field(500, c.integer(8))                   # images per class the clustering sees
    intervention_sample: int = c.field(64, c.integer(4))               # images per candidate (and of other classes)
    max_tests: int = c.field(300, c.integer(1))                        # intervention tests per run (re-tests first)


@dataclasses.dataclass(frozen=True)
class AuditConfig(_Section):
    keep: Optional[int] = c.field(None, c.optional(c.integer(1)))   # keep the newest N complete runs; null: keep all
    reuse: bool = c.field(True, c.boolean)     # take unchanged images from the reference run (pipeline/reuse.py)


@dataclasses.dataclass(frozen=True)
class RenderConfig(_Section):
    """How an attribution map becomes a mask and an overlay. Defaults: the TensorFlow IG tutorial's look.

    polarity      absolute: sum over channels of |a|; positive: sum of max(a, 0); negative: sum of
                  max(-a, 0) (so positive + negative = absolute); both: the signed sum of a, shown with
                  a diverging colour map (negative one colour, positive the other, zero neutral).
    clip_upper    percentile of the map's magnitude that maps to full intensity (larger values saturate).
    clip_lower    percentile below which the map shows as zero; the range between the two percentiles
                  is stretched linearly. 0 means no floor: zero attribution is zero intensity.
    cmap          inferno | viridis (sequential) | pink_green | red_green (diverging) | auto (inferno,
                  or pink_green for polarity both). A diverging map with a one-signed polarity uses its
                  half from neutral to the positive colour (negative polarity: the negative colour).
    overlay       heat: colour map blended over the image; heat_gray: the same over a grayscale copy;
                  masked: image pixels kept where attribution is in the top `masked_keep` fraction,
                  black elsewhere; outlines: borders of the largest `outline_regions` regions of the
                  top `outline_top` fraction (after a 3x3 opening and closing), drawn over the image.
    image_weight  weight of the image in the heat blends (heat weight is 1 - image_weight).
    """
    polarity: str = c.field("absolute", c.choice(*POLARITIES))
    clip_upper: float = c.field(99.0, c.number(0.0, 100.0))
    clip_lower: float = c.field(0.0, c.number(0.0, 100.0))
    cmap: str = c.field("auto", c.choice(*CMAP_CHOICES))
    overlay: str = c.field("heat", c.choice(*OVERLAYS))
    image_weight: float = c.field(0.4, c.number(0.0, 1.0))
    masked_keep: float = c.field(0.2, c.number(0.0, 1.0))
    outline_top: float = c.field(0.1, c.number(0.0, 1.0))
    outline_regions: int = c.field(3, c.integer(1))
    outline_color: tuple = c.field((0, 255, 0), c.colour)
    outline_width: int = c.field(1, c.integer(1))

    def _validate(self) -> None:
        if self.polarity == "both" and resolve_cmap(self.cmap, self.polarity) not in DIVERGING:
            raise FieldError("cmap", self.cmap, f"polarity 'both' needs a diverging colour map "
                                                f"({', '.join(DIVERGING)})")
        if not self.clip_lower < self.clip_upper:
            raise FieldError("clip_lower", self.clip_lower, f"clip_lower and clip_upper must satisfy "
                                                            f"clip_lower < clip_upper ({self.clip_upper!r})")


@dataclasses.dataclass(frozen=True)
class Config:
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    attribution: AttributionConfig = dataclasses.field(default_factory=AttributionConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    analysis: AnalysisConfig = dataclasses.field(default_factory=AnalysisConfig)
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)
    audit: AuditConfig = dataclasses.field(default_factory=AuditConfig)
    beam: dict = dataclasses.field(default_factory=dict)   # extra Beam pipeline options

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTION_TYPES = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "beam"}
_SECTIONS = [f.name for f in dataclasses.fields(Config)]


# Keys that were replaced: a config still using one stops with what to write instead.
_RENAMED = {("model", "mixed_precision"): "config key 'model.mixed_precision' was replaced by 'model.precision': "
                                          "write model.precision: mixed_float16 (for true) or float32 (for false); "
                                          "mixed_bfloat16 is the third choice"}


def config_keys() -> list[str]:
    """Every option as section.key."""
    return [f"{name}.{f.name}" for name, cls in _SECTION_TYPES.items() for f in dataclasses.fields(cls)]


def _build_section(name: str, cls, raw: Any, where: dict):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config section '{name}'{where.get((name,), '')} must be a mapping of keys to values")
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if (name, key) in _RENAMED:
            raise ConfigError(_RENAMED[name, key])
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{name}.{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{name}.{key}'{where.get((name, key), '')}{hint}; known keys in "
                              f"'{name}': {', '.join(fields)}")
    try:
        return cls(**raw)
    except FieldError as e:
        raise ConfigError(f"bad value for '{name}.{e.field}'{where.get((name, e.field), '')}: {e.value!r} "
                          f"({e.expected})") from None


def _resolve_steps(a: AttributionConfig, given: dict) -> AttributionConfig:
    """Default step policy: `steps: auto, rule: adaptive` (benchmarks/RESULTS.md, "Rules"), except with smoothing
    (IG over noisy copies on one fixed grid): unset steps / rule are then 50 / trapezoid. `given`: keys set."""
    smoothed = a.method == "integrated_gradients" and a.smoothing != "none"
    steps = a.steps if "steps" in given or not smoothed else 50
    rule = a.rule if "rule" in given or not smoothed else "trapezoid"
    if smoothed and (steps == "auto" or rule == "adaptive"):
        raise ConfigError("attribution.smoothing averages IG over noisy copies on one fixed grid, so it needs "
                          "a number of steps and a fixed rule: set attribution.steps (e.g. 50) and "
                          "attribution.rule (e.g. trapezoid), not auto / adaptive")
    if steps == "auto" and rule not in AUTO_RULES:
        raise ConfigError(f"attribution.steps: auto refines with rule {' / '.join(AUTO_RULES)}, got rule "
                          f"'{rule}': set attribution.rule to one of those, or attribution.steps to a number")
    return dataclasses.replace(a, steps=steps, rule=rule)


def from_dict(raw: Any, where: Optional[dict] = None) -> Config:
    """A parsed config mapping validated into a `Config`; where: (section,) or (section, key) -> where it was
    written (" (configs/x.yaml, line 7)"), added to messages. An attribution setting the method ignores fails."""
    where, raw = where or {}, {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a YAML mapping with sections input, model, "
                          "attribution, output, analysis, quality, render, audit, beam")
    unknown = [k for k in raw if k not in _SECTIONS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), _SECTIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown config section '{unknown[0]}'{where.get((unknown[0],), '')}{hint}; known "
                          f"sections: {', '.join(_SECTIONS)}")
    sections = {name: _build_section(name, cls, raw.get(name), where) for name, cls in _SECTION_TYPES.items()}
    beam_options = raw.get("beam") or {}
    if not isinstance(beam_options, dict):
        raise ConfigError("config section 'beam' must be a mapping of Beam pipeline option names to values")
    a = sections["attribution"]
    given = {k: getattr(a, k) for k in raw.get("attribution") or {}}
    for key in ignored_settings(a.method, given, AttributionConfig()):
        raise ConfigError(f"attribution.{key}{where.get(('attribution', key), '')} is not used by method "
                          f"'{a.method}': remove it, or choose a method that uses it")
    sections["attribution"] = _resolve_steps(a, raw.get("attribution") or {})
    cfg = Config(beam=dict(beam_options), **sections)
    if bool(cfg.input.pattern) == bool(cfg.input.manifest):
        raise ConfigError("set exactly one of 'input.pattern' (a glob like data/train/*/*.png) "
                          "or 'input.manifest' (a CSV/JSONL/Parquet file with columns uri,label)")
    return cfg


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `section.key=value` override in place; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects section.key=value, got {assignment!r}")
    dotted, text = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set expects section.key=value (e.g. attribution.steps=100), got {assignment!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    section = raw.setdefault(parts[0], {})
    if section is None:
        section = raw[parts[0]] = {}
    if not isinstance(section, dict):
        raise ConfigError(f"config section '{parts[0]}' must be a mapping")
    section[parts[1]] = value


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys (a repeated key would silently win otherwise)."""

def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose keys YAML 1.1 would read as booleans (`on:`, `yes:`) keep their text: keys are names."""
    loader.flatten_mapping(node)        # YAML merge keys (<<), as construct_mapping does
    seen, out = {}, {}
    for key_node, value_node in node.value:
        key = key_node.value if key_node.tag == "tag:yaml.org,2002:bool" else loader.construct_object(key_node, deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"duplicate key '{key}' at line {line} (first at line {seen[key]}): keep one of them")
        seen[key], out[key] = line, loader.construct_object(value_node, deep=deep)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _key_lines(node, label: str) -> dict:
    """(section,) and (section, key) -> " (label, line N)" for the top two levels of a YAML document."""
    where: dict = {}
    if not isinstance(node, yaml.MappingNode):
        return where
    for key_node, value_node in node.value:
        section = key_node.value
        where[(section,)] = f" ({label}, line {key_node.start_mark.line + 1})"
        if isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                where[(section, sub_key.value)] = f" ({label}, line {sub_key.start_mark.line + 1})"
    return where


def parse_yaml(text: str, label: str) -> tuple[Any, dict]:
    """(data, where) from YAML text; errors name the line and column."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), _key_lines(node, label)
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "an unknown place"
        raise ConfigError(f"{label} is not valid YAML at {at}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{label} is not valid YAML ({str(e).splitlines()[0] if str(e) else 'parse error'})") from None
    finally:
        loader.dispose()


def _path_fields(cfg: Config):
    """(section, field, value) for every set field declared `local_path` whose value is not a baseline kind."""
    for name in _SECTION_TYPES:
        section = getattr(cfg, name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if f.metadata.get("local_path") and isinstance(value, str) and value not in BASELINE_KINDS:
                yield name, f.name, value


def local_paths(cfg: Config) -> dict:
    """{'model.path': value, ...}: every file or folder the config names, output.dir aside."""
    return {f"{section}.{field}": value for section, field, value in _path_fields(cfg)
            if (section, field) != ("output", "dir")}


def absolute_paths(cfg: Config) -> Config:
    """The config with every relative local path (fields declared `local_path`) made absolute from the current
    directory; bucket paths, URLs and baseline kinds stay as they are."""
    changes: dict = {}
    for section, field, value in _path_fields(cfg):
        if "://" not in value and not os.path.isabs(value):
            changes.setdefault(section, {})[field] = os.path.abspath(value)
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **fields)
                                       for section, fields in changes.items()})


def load_config(path: Optional[str | Path], overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read a YAML config (safe loader, duplicate keys refused), apply overrides, validate.

    Relative local paths in the config (inputs, model, output...) are relative to the current directory,
    like those given with --set; a run makes them absolute (`absolute_paths`) before anything reads them, so
    workers with another current directory read the same files, and messages show the path tried."""
    raw: Any = {}
    where: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p.absolute()}' not found: pass --config with the path of a YAML "
                              f"file such as configs/local.yaml")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file '{path}' cannot be read as UTF-8 text ({e})") from None
        raw, where = parse_yaml(text, f"config file '{path}'")
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config file '{path}' must be a YAML mapping of sections")
    for assignment in overrides:
        apply_override(raw, assignment)
        section, key = assignment.split("=", 1)[0].strip().split(".")
        where[(section, key)] = f" (--set {assignment})"
    return from_dict(raw, where)
