"""The config schema: the one declaration of every option, its default and its allowed values.

Each section is a frozen dataclass; each field carries its default and its check (which
cleans the value, e.g. a YAML list into a tuple, or raises ValueError saying what would be
accepted). The checks run whenever a section is built, from YAML or in code, so a section
object is always valid. The engines receive these section objects as they are (no copy into
a second settings type). Allowed values come from the modules that implement them
(`transforms.attribution.registry`, `transforms.imaging.render` ...), all importable without
TensorFlow, so parsing a config never imports it.

Why dataclasses and not pydantic: they come with Python, pickle as they are for Beam's
workers, and a field's check sits beside its default; pydantic would add a dependency with
its own version constraints next to Beam's and TensorFlow's for no feature used here.

YAML is read with a safe loader; every problem a user can cause ends in one `ConfigError`
whose message names the field and what would be accepted.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from igaudit.transforms.analysis.skew_rows import resolve_thresholds
from igaudit.transforms.attribution.choices import (AUTO_RULES, BASELINE_KINDS, FORMATS, METHODS, OUTPUTS,
                                                    PRECISIONS, RULE_CHOICES, SCORES, SMOOTHINGS)
from igaudit.transforms.attribution.quality import RANKINGS
from igaudit.transforms.imaging.colormaps import CMAP_CHOICES, DIVERGING, resolve_cmap
from igaudit.transforms.imaging.decode import DEFAULT_MAX_PIXELS, RESIZE_MODES
from igaudit.transforms.imaging.render import OVERLAYS, POLARITIES


class ConfigError(Exception):
    """A bad config: the message names the field and the fix."""


class FieldError(ValueError):
    """A field's value failed its check: which field, the value, and what is expected."""

    def __init__(self, field: str, value: Any, expected: str):
        super().__init__(f"{field}: {expected}; got {value!r}")
        self.field, self.value, self.expected = field, value, expected


# -- field checkers: each returns the cleaned value or raises ValueError(what is expected)
def _int(lo: int = 1) -> Callable[[Any], int]:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"expected an integer >= {lo}")
        return v
    return check


def _float(lo: float, hi: float) -> Callable[[Any], float]:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ValueError(f"expected a number in [{lo}, {hi}]")
        return float(v)
    return check


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v):
        if v not in options:
            raise ValueError(f"expected one of: {', '.join(options)}")
        return v
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _str(v):
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    return v


def _path(v):
    """A path or URL as text (a pathlib.Path given in code is taken as its text)."""
    return _str(os.fspath(v) if isinstance(v, os.PathLike) else v)


def _opt(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def _or_auto(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapped(v):
        if v == "auto":
            return v
        try:
            return check(v)
        except ValueError as e:
            raise ValueError(f"{e}, or auto") from None
    return wrapped


def _pair(kind: type, positive: bool = False) -> Callable[[Any], tuple]:
    def check(v):
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)):
            raise ValueError(f"expected a list of two numbers, like [{'64, 64' if kind is int else '0, 1'}]")
        if not all(math.isfinite(x) for x in v):   # .inf/.nan would otherwise slip through or crash int()
            raise ValueError("expected two finite numbers")
        if kind is int and any(int(x) != x for x in v):
            raise ValueError("expected two whole numbers")
        if positive and any(x <= 0 for x in v):
            raise ValueError("expected two positive numbers")
        return tuple(kind(x) for x in v)
    return check


def _range_pair(v):
    lo, hi = _pair(float)(v)
    if not lo < hi:
        raise ValueError("expected [low, high] with low < high, e.g. [0, 1], [-1, 1] or [0, 255]")
    return (lo, hi)


def _baseline(v):
    """A baseline kind, or the path of a baseline image (checked when the run starts)."""
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected one of {', '.join(BASELINE_KINDS)} or the path of an image")
    return v


def _target(v):
    """predicted | label | top_k | a class name | a class index (checked against the model's classes later)."""
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "" or (isinstance(v, int) and v < 0):
        raise ValueError("expected predicted, label, top_k, a class name or a class index")
    return v


def _thresholds(v):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("expected a mapping of threshold names to numbers")
    resolve_thresholds(v)  # raises ValueError naming the bad threshold
    return dict(v)


def _colour(v):
    if (not isinstance(v, (list, tuple)) or len(v) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v)):
        raise ValueError("expected three integers in [0, 255], like [0, 255, 0]")
    return tuple(v)


def _field(default, check):
    return dataclasses.field(default=default, metadata={"check": check})


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
class InputConfig(_Section):
    pattern: Optional[str] = _field(None, _opt(_path))
    manifest: Optional[str] = _field(None, _opt(_path))
    max_pixels: int = _field(DEFAULT_MAX_PIXELS, _int(1))


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    path: str = _field("models/demo.keras", _path)
    input_size: tuple = _field((64, 64), _pair(int, positive=True))
    input_range: tuple = _field((0.0, 1.0), _range_pair)
    output: str = _field("logits", _choice(*OUTPUTS))
    class_names: Optional[str] = _field(None, _opt(_path))
    resize: str = _field("pad", _choice(*RESIZE_MODES))
    format: str = _field("auto", _choice(*FORMATS))
    signature: str = _field("serving_default", _str)
    share_across_processes: bool = _field(False, _bool)
    # Keras models: the compute dtype (Keras mixed precision: float32 variables, float16 / bfloat16 math)
    precision: str = _field("float32", _choice(*PRECISIONS))


@dataclasses.dataclass(frozen=True)
class AttributionConfig(_Section):
    method: str = _field("integrated_gradients", _choice(*METHODS))
    # With smoothing, unset steps / rule default to 50 / trapezoid instead (`from_dict`).
    steps: Any = _field("auto", _or_auto(_int(1)))
    tolerance: float = _field(0.01, _float(1e-6, 1.0))
    pixel_tolerance: float = _field(0.03, _float(1e-6, 1e3))
    max_steps: int = _field(128, _int(2))
    rule: str = _field("adaptive", _choice(*RULE_CHOICES))
    baseline: str = _field("black", _baseline)
    baseline_samples: int = _field(1, _int(1))
    blur_sigma: float = _field(5.0, _float(0.1, 1000.0))
    baseline_stdev: float = _field(0.15, _float(0.0, 10.0))
    references: int = _field(16, _int(1))
    target: Any = _field("predicted", _target)
    k: int = _field(1, _int(1))
    score: str = _field("probability", _choice(*SCORES))
    smoothing: str = _field("none", _choice(*SMOOTHINGS))
    samples: int = _field(25, _int(1))
    stdev: float = _field(0.15, _float(0.0, 10.0))
    layer: Optional[str] = _field(None, _opt(_str))
    window: int = _field(8, _int(1))
    stride: int = _field(4, _int(1))
    fill: float = _field(0.0, _float(-1e6, 1e6))
    batch_size: int = _field(16, _int(1))
    chunk_size: Any = _field(64, _or_auto(_int(1)))
    memory_mb: Optional[float] = _field(None, _opt(_float(1.0, 1e7)))
    jit_compile: bool = _field(False, _bool)


@dataclasses.dataclass(frozen=True)
class QualityConfig(_Section):
    enabled: bool = _field(False, _bool)
    steps: int = _field(20, _int(2))
    ranking: str = _field("positive", _choice(*RANKINGS))
    infidelity_samples: int = _field(10, _int(1))
    infidelity_stdev: float = _field(0.1, _float(1e-6, 10.0))


@dataclasses.dataclass(frozen=True)
class OutputConfig(_Section):
    dir: str = _field("out/demo", _path)
    masks: bool = _field(True, _bool)
    overlays: bool = _field(True, _bool)
    raw: bool = _field(False, _bool)


@dataclasses.dataclass(frozen=True)
class AnalysisConfig(_Section):
    grid: int = _field(16, _int(2))
    border: float = _field(0.1, _float(0.0, 0.5))
    reference: Optional[str] = _field(None, _opt(_path))   # an earlier run's output dir to compare against
    thresholds: dict = dataclasses.field(default_factory=dict, metadata={"check": _thresholds})


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
    polarity: str = _field("absolute", _choice(*POLARITIES))
    clip_upper: float = _field(99.0, _float(0.0, 100.0))
    clip_lower: float = _field(0.0, _float(0.0, 100.0))
    cmap: str = _field("auto", _choice(*CMAP_CHOICES))
    overlay: str = _field("heat", _choice(*OVERLAYS))
    image_weight: float = _field(0.4, _float(0.0, 1.0))
    masked_keep: float = _field(0.2, _float(0.0, 1.0))
    outline_top: float = _field(0.1, _float(0.0, 1.0))
    outline_regions: int = _field(3, _int(1))
    outline_color: tuple = _field((0, 255, 0), _colour)
    outline_width: int = _field(1, _int(1))

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
    beam: dict = dataclasses.field(default_factory=dict)   # extra Beam pipeline options

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTION_TYPES = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "beam"}
_SECTIONS = [f.name for f in dataclasses.fields(Config)]


# Keys that were replaced: a config still using one stops with what to write instead.
_RENAMED = {("model", "mixed_precision"): "config key 'model.mixed_precision' was replaced by 'model.precision': "
                                          "write model.precision: mixed_float16 (for true) or float32 (for false); "
                                          "mixed_bfloat16 is the third choice"}


def _build_section(name: str, cls, raw: Any):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config section '{name}' must be a mapping of keys to values")
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if (name, key) in _RENAMED:
            raise ConfigError(_RENAMED[name, key])
        if key not in fields:
            raise ConfigError(f"unknown config key '{name}.{key}'; known keys in '{name}': {', '.join(fields)}")
    try:
        return cls(**raw)
    except FieldError as e:
        raise ConfigError(f"bad value for '{name}.{e.field}': {e.value!r} ({e.expected})") from None


def _resolve_steps(a: AttributionConfig, given: dict) -> AttributionConfig:
    """Default step policy: `steps: auto, rule: adaptive` (benchmarks/RESULTS.md, "Rules"), except
    with smoothing, which averages IG over noisy copies on one fixed grid: unset steps / rule
    are then 50 / trapezoid. `given`: the attribution keys the config sets."""
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


def from_dict(raw: Any) -> Config:
    """Validate a parsed config mapping into a `Config`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a YAML mapping with sections input, model, "
                          "attribution, output, analysis, beam")
    unknown = [k for k in raw if k not in _SECTIONS]
    if unknown:
        raise ConfigError(f"unknown config section '{unknown[0]}'; known sections: {', '.join(_SECTIONS)}")
    sections = {name: _build_section(name, cls, raw.get(name)) for name, cls in _SECTION_TYPES.items()}
    beam_options = raw.get("beam") or {}
    if not isinstance(beam_options, dict):
        raise ConfigError("config section 'beam' must be a mapping of Beam pipeline option names to values")
    sections["attribution"] = _resolve_steps(sections["attribution"], raw.get("attribution") or {})
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


def load_config(path: Optional[str | Path], overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read a YAML config (safe loader), apply overrides, validate."""
    raw: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{path}' not found: pass --config with the path of a YAML "
                              f"file such as configs/local.yaml")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file '{path}' cannot be read as UTF-8 text ({e})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            first = str(e).splitlines()[0] if str(e) else "parse error"
            raise ConfigError(f"config file '{path}' is not valid YAML ({first})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file '{path}' must be a YAML mapping of sections")
    for assignment in overrides:
        apply_override(raw, assignment)
    return from_dict(raw)
