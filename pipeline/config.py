"""The config schema: YAML (safe-loaded), `--set key=value` overrides, validation.

Every problem a user can cause ends in one `ConfigError` whose message names
the field and what would be accepted.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from transforms.ig import OUTPUTS, RULES, SCORES
from transforms.methods import ADAPTIVE_RULES as AUTO_RULES  # the rules steps: auto can refine
from transforms.methods import METHODS

# `adaptive` refines each image's grid (transforms.refine); the others are fixed quadrature rules.
RULE_CHOICES = ("adaptive",) + RULES


class ConfigError(Exception):
    """A bad config: the message names the field and the fix."""


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


def _opt_str(v):
    return None if v is None else _str(v)


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


BASELINE_KINDS = ("black", "white", "uniform", "gaussian", "blur", "mean")


def _or_auto(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapped(v):
        if v == "auto":
            return v
        try:
            return check(v)
        except ValueError as e:
            raise ValueError(f"{e}, or auto") from None
    return wrapped


def _opt(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


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


def _field(default, check):
    return dataclasses.field(default=default, metadata={"check": check})


@dataclasses.dataclass(frozen=True)
class InputConfig:
    pattern: Optional[str] = _field(None, _opt_str)
    manifest: Optional[str] = _field(None, _opt_str)
    max_pixels: int = _field(64_000_000, _int(1))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    path: str = _field("models/demo.keras", _str)
    input_size: tuple = _field((64, 64), _pair(int, positive=True))
    input_range: tuple = _field((0.0, 1.0), _range_pair)
    output: str = _field("logits", _choice(*OUTPUTS))
    class_names: Optional[str] = _field(None, _opt_str)
    resize: str = _field("pad", _choice("pad", "crop", "stretch"))
    format: str = _field("auto", _choice("auto", "keras", "saved_model", "hub"))
    signature: str = _field("serving_default", _str)
    share_across_processes: bool = _field(False, _bool)
    mixed_precision: bool = _field(False, _bool)


@dataclasses.dataclass(frozen=True)
class AttributionConfig:
    method: str = _field("integrated_gradients", _choice(*METHODS))
    # With smoothing, unset steps / rule default to 50 / trapezoid instead (from_dict).
    steps: Any = _field("auto", _or_auto(_int(1)))
    tolerance: float = _field(0.01, _float(1e-6, 1.0))
    pixel_tolerance: float = _field(0.08, _float(1e-6, 1e3))
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
    smoothing: str = _field("none", _choice("none", "smoothgrad", "smoothgrad_sq", "vargrad"))
    samples: int = _field(25, _int(1))
    stdev: float = _field(0.15, _float(0.0, 10.0))
    layer: Optional[str] = _field(None, _opt_str)
    window: int = _field(8, _int(1))
    stride: int = _field(4, _int(1))
    fill: float = _field(0.0, _float(-1e6, 1e6))
    batch_size: int = _field(16, _int(1))
    chunk_size: Any = _field(64, _or_auto(_int(1)))
    memory_mb: Optional[float] = _field(None, _opt(_float(1.0, 1e7)))
    jit_compile: bool = _field(False, _bool)


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    enabled: bool = _field(False, _bool)
    steps: int = _field(20, _int(2))
    ranking: str = _field("positive", _choice("positive", "absolute"))
    infidelity_samples: int = _field(10, _int(1))
    infidelity_stdev: float = _field(0.1, _float(1e-6, 10.0))


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    dir: str = _field("out/demo", _str)
    masks: bool = _field(True, _bool)
    overlays: bool = _field(True, _bool)
    raw: bool = _field(False, _bool)


def _thresholds(v):
    from transforms.skew import resolve_thresholds
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("expected a mapping of threshold names to numbers")
    resolve_thresholds(v)  # raises ValueError naming the bad threshold
    return dict(v)


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    grid: int = _field(16, _int(2))
    border: float = _field(0.1, _float(0.0, 0.5))
    reference: Optional[str] = _field(None, _opt_str)   # an earlier run's output dir to compare against
    thresholds: dict = dataclasses.field(default_factory=dict, metadata={"check": _thresholds})


@dataclasses.dataclass(frozen=True)
class Config:
    input: InputConfig = dataclasses.field(default_factory=InputConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    attribution: AttributionConfig = dataclasses.field(default_factory=AttributionConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    analysis: AnalysisConfig = dataclasses.field(default_factory=AnalysisConfig)
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)
    render: dict = dataclasses.field(default_factory=dict)  # transforms.render.RenderOptions fields
    beam: dict = dataclasses.field(default_factory=dict)   # extra Beam pipeline options

    def render_options(self):
        from transforms.render import RenderOptions
        return RenderOptions(**self.render)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = [f.name for f in dataclasses.fields(Config)]
_SECTION_TYPES = {"input": InputConfig, "model": ModelConfig, "attribution": AttributionConfig,
                  "output": OutputConfig, "analysis": AnalysisConfig, "quality": QualityConfig}


def _build_section(name: str, cls, raw: Any):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config section '{name}' must be a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"unknown config key '{name}.{key}'; known keys in '{name}': "
                              f"{', '.join(fields)}")
        try:
            values[key] = fields[key].metadata["check"](value)
        except ValueError as e:
            raise ConfigError(f"bad value for '{name}.{key}': {value!r} ({e})") from None
    return cls(**values)


def _render_section(raw: Any) -> dict:
    """The `render:` mapping, checked by building RenderOptions from it."""
    from transforms.render import RenderOptions
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("config section 'render' must be a mapping of keys to values")
    known = [f.name for f in dataclasses.fields(RenderOptions)]
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown config key 'render.{key}'; known keys in 'render': {', '.join(known)}")
    try:
        RenderOptions(**raw)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"bad value in 'render': {e}") from None
    return dict(raw)


def _resolve_steps(a: "AttributionConfig", given: dict) -> "AttributionConfig":
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
    cfg = Config(beam=dict(beam_options), render=_render_section(raw.get("render")), **sections)
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
