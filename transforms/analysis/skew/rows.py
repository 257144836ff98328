"""The skew row, its thresholds and the metric names: what every part of the skew chain shares (numpy only).

A skew row (`records.skew_schema()`) is one metric's reading for a class (or one cluster of it) under a
grouping ('label': images by their true label; 'predicted': by the model's prediction). Every row carries
a `score` defined so that `candidate == (score >= 1)`: "more is worse" metrics score value / threshold
(signed shifts |value| / threshold), `in_box` ("less is worse") threshold / value. A candidate of a
metric in TESTED is only a proposal, which the interventions decide (`verdict`); the reference-run
metrics (REFERENCE_METRICS, `drift`) are facts about change, flagged as they are.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Mapping, Optional

import numpy as np

from igaudit.transforms.analysis.distances import distribution
from igaudit.transforms.analysis.regions import cells_name, strong_region
from igaudit.transforms.records import skew_schema

DEFAULT_THRESHOLDS: dict = {
    # JS divergence in bits. Moving 20% / 30% of a class's attribution mass into
    # a 2x2 corner of a 16x16 grid gives ~0.08 / ~0.14 bits; sampling noise of a
    # class mean over ~50 images of typical (peaky) IG grids is ~0.02 bits
    # against the much larger dataset mean. 0.1 catches a real shortcut (the
    # demo's corner patch) without flagging ordinary class-to-class variety.
    "grid_js": 0.1,
    # Modified (median/MAD) z-score of a class's border mass. Iglewicz & Hoaglin's outlier cut-off is 3.5; a
    # candidate only asks for a test of the frame, so lower: a frame on part of a class raises it less.
    "border_z": 2.5,
    # A class whose attribution is not all inside the object boxes has its background tested. 1.0: every
    # class with boxes (IG with a black baseline gives a swapped background half of a class's attribution or
    # less, and a clean class's still a fifth: the share alone tells little; the interventions decide).
    "in_box": 1.0,
    # Same scale as grid_js. Two independent samples of ~20 images of the same
    # class differ by ~0.05-0.08 bits at 16x16, so a tighter threshold would
    # flag small classes on noise when the audited data changes between runs.
    "ref_grid_js": 0.1,
    # Ten percentage points of attribution mass moving into / out of the border band.
    "ref_border_shift": 0.1,
    # Ten accuracy points lost for a class. Sampling noise of the difference for
    # a class of 100 images at 80% accuracy is ~0.06, so this is ~1.8 standard errors.
    "ref_accuracy_drop": 0.1,
    # Mean softmax confidence moving by 0.1 in either direction.
    "ref_confidence_shift": 0.1,
    # TFDV's examples use 0.01 for whole-dataset features with many thousands of
    # rows; a class has tens to hundreds of images, where a share's sampling
    # noise alone is ~0.05. 0.1: a tenth of a label's images changed predicted class.
    "ref_predicted_linf": 0.1,
    # ~0.05 bits is what 10% of a label's images moving from the (only) predicted
    # class to a new one gives; a softer, whole-distribution companion of the L-inf.
    "ref_predicted_js": 0.05,
    # Share of a class's |IG| in one channel above the dataset's share of that channel. IG channel
    # shares of natural and synthetic classes stay within ~0.03 of each other; a colour cast
    # planted on one class moved its shares by 0.1-0.2 (the skew benchmark before the zoo).
    "channel_shift": 0.06,
    # Share of a cluster's attribution where neither its class's other clusters nor the dataset look as
    # much (cluster_rows). Clusters of clean classes (objects in other places, other writing styles)
    # stayed under ~0.1 on the benchmark; a tag in a corner gave 0.2-0.4. Only a candidate.
    "cluster_excess": 0.15,
    # Share of a class's images whose strongest cells (the top PEAK_SHARE of the grid) fall in a block, above
    # the share of other classes' images whose do: a mark on a third of a class gives ~0.3, wherever its
    # class's mean grid is dominated by the object. Generous: only a candidate, the interventions decide.
    "peak_excess": 0.2,
}

DATASET_METRICS = ("grid_js", "border_z", "in_box", "channel_shift", "cluster_excess", "peak_excess")
# metric -> the intervention that decides its candidates (evidence.measure's kinds)
TESTED = {"grid_js": "region", "border_z": "region", "cluster_excess": "region", "peak_excess": "region",
          "in_box": "outside_box", "retest_region": "region", "retest_channel": "channel",
          "retest_outside_box": "outside_box",
          "channel_shift": "channel"}
CHANNEL_NAMES = ("red", "green", "blue")
REFERENCE_METRICS = ("ref_grid_js", "ref_border_shift", "ref_accuracy_drop", "ref_confidence_shift",
                     "ref_predicted_linf", "ref_predicted_js", "class_presence")




def finite(x) -> Optional[float]:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def grid_of(row: dict) -> tuple[Optional[np.ndarray], int, Optional[str]]:
    """(normalised flat grid or None, grid size, why not usable)."""
    size = int(row.get("grid_size") or 0)
    raw = row.get("mean_grid")
    if raw is None or len(raw) == 0:
        return None, size, "no mean grid"
    a = np.asarray(raw, np.float64).ravel()
    if size <= 0:
        side = int(round(math.sqrt(a.size)))
        size = side if side * side == a.size else 0
    if size <= 0 or a.size != size * size:
        return None, size, f"mean grid has {a.size} values, not grid_size^2"
    try:
        return distribution(a), size, None
    except ValueError as e:
        return None, size, f"mean grid unusable ({e})"


def subject_of(group_by: str, name) -> str:
    return f"images predicted '{name}'" if group_by == "predicted" else f"class '{name}'"


def skew_row(group_by, name, metric, value, reference, score, threshold, detail, **extra) -> dict:
    """A skew row with every column of `records.skew_schema()` (intervention columns empty)."""
    score = float(score)
    row = dict.fromkeys(skew_schema().names)
    candidate = bool(score >= 1.0)
    row.update(group_by=group_by, class_name=name, metric=metric,
               value=None if value is None else float(value),
               reference=None if reference is None else float(reference),
               score=score, threshold=float(threshold), candidate=candidate,
               flagged=candidate and metric not in TESTED, detail=detail, **extra)
    return row


def group_grid(rows: list[dict]) -> tuple[Optional[np.ndarray], int]:
    """(the group's count-weighted mean grid, its size): the grid of the size most images have, over the
    class rows with a usable grid of that size; None when fewer than 2 such classes."""
    grids = [grid_of(r) for r in rows]
    sizes = Counter()
    for r, (g, size, _) in zip(rows, grids):
        if g is not None:
            sizes[size] += max(int(r.get("count") or 0), 0) or 1
    if not sizes:
        return None, 0
    main_size = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    usable = [(r, g) for r, (g, size, _) in zip(rows, grids) if g is not None and size == main_size]
    if len(usable) < 2:
        return None, main_size
    weights = np.array([max(float(r.get("count") or 0), 0.0) for r, _ in usable])
    if weights.sum() <= 0:
        weights = np.ones(len(usable))
    return np.average(np.stack([g for _, g in usable]), axis=0, weights=weights), main_size


def region_fields(grid: np.ndarray, contrast: np.ndarray, size: int) -> dict:
    """{'region_cells', 'region'}: the block an intervention edits, where `grid` exceeds `contrast` most
    (`regions.strong_region`; empty when nowhere)."""
    block = strong_region(grid.reshape(size, size), contrast.reshape(size, size))
    return block_fields(block, size)


def block_fields(block, size: int) -> dict:
    if block is None:
        return {}
    return {"region_cells": list(block), "region": cells_name(block, size, size)}


def skipped(group_by, name, metric, threshold, why) -> dict:
    """A row that could not be computed: kept (value None, score 0) with why, so a report shows that a
    comparison was skipped rather than silently missing."""
    return skew_row(group_by, name, metric, None, None, 0.0, threshold,
                    f"{subject_of(group_by, name)}: not compared: {why}")


def resolve_thresholds(thresholds: Optional[Mapping] = None) -> dict:
    """DEFAULT_THRESHOLDS overridden by `thresholds` (None values keep the default)."""
    out = dict(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in DEFAULT_THRESHOLDS:
            raise ValueError(f"analysis.thresholds.{key}: unknown threshold; "
                             f"known: {', '.join(sorted(DEFAULT_THRESHOLDS))}")
        if value is None:
            continue
        v = finite(value)
        if v is None or v <= 0 or isinstance(value, bool):
            raise ValueError(f"analysis.thresholds.{key}: must be a positive number, got {value!r}")
        out[key] = v
    return out


def class_skew_scores(rows: Iterable[dict], metrics: Optional[Iterable[str]] = None) -> dict:
    """{(group_by, class_name): the largest score among the class's skew rows} (NaN/None scores ignored).

    `metrics` limits which rows count, e.g. DATASET_METRICS for skew within this run only.
    """
    wanted = None if metrics is None else set(metrics)
    best: dict = {}
    for r in rows:
        if wanted is not None and r["metric"] not in wanted:
            continue
        key = (r["group_by"], r["class_name"])
        s = finite(r.get("score"))
        best.setdefault(key, [])
        if s is not None:
            best[key].append(s)
    return {key: max(scores) if scores else 0.0 for key, scores in best.items()}
