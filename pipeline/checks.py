"""Field checks for the config schema (pipeline/config.py): each returns the cleaned value (a YAML list as a
tuple, an int as a float...) or raises ValueError saying what would be accepted."""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

from igaudit.transforms.analysis.skew import resolve_thresholds
from igaudit.transforms.attribution.choices import BASELINE_KINDS


def field(default, check, *, local_path: bool = False):
    """A config field: its default and its check; `local_path`: a relative local path in it is taken from the
    current directory and made absolute when the config is loaded (so workers anywhere read the same file)."""
    return dataclasses.field(default=default, metadata={"check": check, "local_path": local_path})


def integer(lo: int = 1) -> Callable[[Any], int]:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"expected an integer >= {lo}")
        return v
    return check


def number(lo: float, hi: float) -> Callable[[Any], float]:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ValueError(f"expected a number in [{lo}, {hi}]")
        return float(v)
    return check


def choice(*options: str) -> Callable[[Any], str]:
    def check(v):
        if v not in options:
            raise ValueError(f"expected one of: {', '.join(options)}")
        return v
    return check


def boolean(v):
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def text(v):
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    return v


def path(v):
    """A path or URL as text (a pathlib.Path given in code is taken as its text)."""
    return text(os.fspath(v) if isinstance(v, os.PathLike) else v)


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def or_auto(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapped(v):
        if v == "auto":
            return v
        try:
            return check(v)
        except ValueError as e:
            raise ValueError(f"{e}, or auto") from None
    return wrapped


def pair(kind: type, positive: bool = False) -> Callable[[Any], tuple]:
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


def range_pair(v):
    lo, hi = pair(float)(v)
    if not lo < hi:
        raise ValueError("expected [low, high] with low < high, e.g. [0, 1], [-1, 1] or [0, 255]")
    return (lo, hi)


def baseline(v):
    """A baseline kind, or the path of a baseline image (checked when the run starts)."""
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected one of {', '.join(BASELINE_KINDS)} or the path of an image")
    return v


def target(v):
    """predicted | label | top_k | a class name | a class index (checked against the model's classes later)."""
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "" or (isinstance(v, int) and v < 0):
        raise ValueError("expected predicted, label, top_k, a class name or a class index")
    return v


def thresholds(v):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("expected a mapping of threshold names to numbers")
    resolve_thresholds(v)  # raises ValueError naming the bad threshold
    return dict(v)


def colour(v):
    if (not isinstance(v, (list, tuple)) or len(v) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v)):
        raise ValueError("expected three integers in [0, 255], like [0, 255, 0]")
    return tuple(v)


def section(cls) -> Callable[[Any], Any]:
    """A nested section (a dataclass of its own fields): from a mapping, or as given."""
    def check(v):
        if isinstance(v, cls):
            return v
        if not isinstance(v, dict):
            raise ValueError(f"expected a mapping with keys {', '.join(f.name for f in dataclasses.fields(cls))}")
        unknown = [k for k in v if k not in {f.name for f in dataclasses.fields(cls)}]
        if unknown:
            raise ValueError(f"unknown key '{unknown[0]}'; known keys: "
                             f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        try:
            return cls(**v)
        except ValueError as e:
            raise ValueError(str(e)) from None
    return check


def url(v):
    """An http(s) URL."""
    v = text(v)
    if not v.startswith(("http://", "https://")) or not v.split("://", 1)[1]:
        raise ValueError("expected an http:// or https:// URL")
    return v


def exit_codes(v):
    """A list of igaudit exit codes (0-5), as a sorted tuple."""
    codes = v if isinstance(v, (list, tuple)) else [v]
    if not codes or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 5 for x in codes):
        raise ValueError("expected a list of exit codes from 0 to 5, like [1, 3, 4]")
    return tuple(sorted(set(codes)))
