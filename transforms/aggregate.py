"""Per-class statistics with a mergeable CombineFn (Beam lifts it before the shuffle).

Input rows are images.parquet rows keyed by (group_by, class_name); the
accumulator holds counts, sums, sums of squares, the grid sum, predicted-class
counts and the few most confident images: nothing heavier than a grid.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import apache_beam as beam
import numpy as np

from igaudit.transforms.analysis.summarize import peak_cells

TYPICAL_IMAGES = 4
# present only for some runs or rows: quality metrics when enabled, box metrics when the manifest has boxes
_OPTIONAL = ("deletion_auc", "insertion_auc", "infidelity", "in_box", "pointing_hit")
_SCALARS = ("confidence", "completeness_gap", "abs_gap", "relative_gap", "border_mass", "concentration",
            "entropy")


@dataclasses.dataclass
class ClassAccumulator:
    count: int = 0
    correct: int = 0
    labelled: int = 0
    sums: dict = dataclasses.field(default_factory=lambda: {k: 0.0 for k in _SCALARS})
    border_sq: float = 0.0
    channel_sum: np.ndarray | None = None
    grid_sum: np.ndarray | None = None
    peak_sum: np.ndarray | None = None       # per cell: how many images have it among their strongest cells
    grid_size: int = 0
    predicted: dict = dataclasses.field(default_factory=dict)
    typical: list = dataclasses.field(default_factory=list)   # [(confidence, image_id)] best first
    optional: dict = dataclasses.field(default_factory=dict)  # metric -> [sum, count] over rows that have it


def _add_arrays(a, b):
    if a is None:
        return None if b is None else np.array(b, np.float64)
    return a if b is None else a + b


def _top(items: Iterable[tuple[float, str]]) -> list:
    # ties broken by image id so the choice does not depend on merge order
    return sorted(items, key=lambda t: (-t[0], t[1]))[:TYPICAL_IMAGES]


class ClassStatsFn(beam.CombineFn):
    """images.parquet rows -> one classes.parquet row body (without group_by/class_name)."""

    def create_accumulator(self) -> ClassAccumulator:
        return ClassAccumulator()

    def add_input(self, acc: ClassAccumulator, row: dict) -> ClassAccumulator:
        acc.count += 1
        if row["label_index"] >= 0:
            acc.labelled += 1
            acc.correct += int(bool(row["correct"]))
        values = {"confidence": row["confidence"], "completeness_gap": row["completeness_gap"],
                  "abs_gap": abs(row["completeness_gap"]), "relative_gap": row["relative_gap"],
                  "border_mass": row["border_mass"], "concentration": row["concentration"],
                  "entropy": row["entropy"]}
        for k, v in values.items():
            acc.sums[k] += float(v)
        acc.border_sq += float(row["border_mass"]) ** 2
        acc.channel_sum = _add_arrays(acc.channel_sum, row["channel_shares"])
        acc.grid_sum = _add_arrays(acc.grid_sum, row["grid"])
        acc.peak_sum = _add_arrays(acc.peak_sum, peak_cells(row["grid"]))
        acc.grid_size = int(row["grid_size"])
        name = row["predicted_name"]
        acc.predicted[name] = acc.predicted.get(name, 0) + 1
        acc.typical = _top(acc.typical + [(float(row["confidence"]), row["image_id"])])
        for k in _OPTIONAL:
            v = row.get(k)
            if v is not None and math.isfinite(v):
                total = acc.optional.setdefault(k, [0.0, 0])
                total[0] += float(v)
                total[1] += 1
        return acc

    def merge_accumulators(self, accumulators: Iterable[ClassAccumulator]) -> ClassAccumulator:
        out = ClassAccumulator()
        for acc in accumulators:
            out.count += acc.count
            out.correct += acc.correct
            out.labelled += acc.labelled
            for k in _SCALARS:
                out.sums[k] += acc.sums[k]
            out.border_sq += acc.border_sq
            out.channel_sum = _add_arrays(out.channel_sum, acc.channel_sum)
            out.grid_sum = _add_arrays(out.grid_sum, acc.grid_sum)
            out.peak_sum = _add_arrays(out.peak_sum, acc.peak_sum)
            out.grid_size = out.grid_size or acc.grid_size
            for name, n in acc.predicted.items():
                out.predicted[name] = out.predicted.get(name, 0) + n
            out.typical = _top(out.typical + acc.typical)
            for k, (total, count) in acc.optional.items():
                mine = out.optional.setdefault(k, [0.0, 0])
                mine[0] += total
                mine[1] += count
        return out

    def extract_output(self, acc: ClassAccumulator) -> dict:
        n = max(acc.count, 1)
        mean = {k: v / n for k, v in acc.sums.items()}
        variance = max(acc.border_sq / n - mean["border_mass"] ** 2, 0.0)
        return {
            "count": acc.count,
            "accuracy": acc.correct / acc.labelled if acc.labelled else float("nan"),
            "mean_confidence": mean["confidence"],
            "mean_completeness_gap": mean["completeness_gap"],
            "mean_abs_completeness_gap": mean["abs_gap"],
            "mean_relative_gap": mean["relative_gap"],
            "mean_border_mass": mean["border_mass"],
            "std_border_mass": variance ** 0.5,
            "mean_concentration": mean["concentration"],
            "mean_entropy": mean["entropy"],
            "mean_channel_shares": [] if acc.channel_sum is None else [float(v) / n for v in acc.channel_sum],
            "grid_size": acc.grid_size,
            "mean_grid": [] if acc.grid_sum is None else [float(v) / n for v in acc.grid_sum],
            "peak_share": [] if acc.peak_sum is None else [float(v) / n for v in acc.peak_sum],
            "predicted_counts": sorted(acc.predicted.items()),
            "typical_images": [image_id for _, image_id in acc.typical],
            **{f"mean_{k}": (acc.optional[k][0] / acc.optional[k][1] if acc.optional.get(k, [0, 0])[1] else None)
               for k in _OPTIONAL},
        }


def class_keys(row: dict) -> Iterable[tuple[tuple[str, str], dict]]:
    """Each image counts once under its true label (when known) and once under its prediction."""
    if row["label"] is not None:
        yield ("label", row["label"]), row
    yield ("predicted", row["predicted_name"]), row


class AggregateClasses(beam.PTransform):
    """PCollection[images row dict] -> PCollection[classes row dict], grouped by label and by prediction."""

    def expand(self, rows):
        return (rows
                | "KeyByClass" >> beam.FlatMap(class_keys)
                | "CombinePerClass" >> beam.CombinePerKey(ClassStatsFn())
                | "ToRow" >> beam.MapTuple(lambda key, stats: {"group_by": key[0], "class_name": key[1], **stats}))
