"""The method registry: attribution method name -> the module implementing it. Importing this costs no TensorFlow.

Each method lives in the module of the same name in this package and exposes
`explain(explainer, batch) -> MethodResult`, plus two facts the pipeline needs before running it:
`COMPLETENESS` (whether its attributions sum to F(x) - F(x')) and `NEEDS_REFERENCES` (whether its
baselines come from the dataset, so it cannot be warmed up before the data arrives). Method modules
never import this one, so the lazy import below makes no cycle.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from igaudit.transforms.attribution.choices import METHODS


def method(name: str) -> ModuleType:
    """The module implementing attribution method `name`."""
    if name not in METHODS:
        raise ValueError(f"unknown attribution method {name!r}; expected one of {', '.join(METHODS)}")
    return importlib.import_module(f"{__package__}.{name}")
