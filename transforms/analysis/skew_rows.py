"""Skew metrics: each class against its dataset, and each class against a reference run.

Plain numpy on classes.parquet row dicts (see `transforms/aggregate.py`); no Beam,
no TensorFlow. `skew_rows` turns the class rows of one run (and optionally those
of a reference run) into skew.parquet rows (`records.skew_schema()`).

Every row carries a `score` defined so that `candidate == (score >= 1)`. A candidate of a
metric in TESTED (where attribution sits: grid_js, border_z, in_box, channel_shift, and
cluster_excess from `cluster_rows`) is only a proposal: `flagged` stays False here and the
interventions decide it (`verdict_rows`). The reference-run metrics are drift alerts, facts
about change that no intervention can confirm: their candidates are flagged as they are.

* "more is worse" metrics: score = value / threshold (for signed shifts,
  |value| / threshold);
* `in_box` ("less is worse"): score = threshold / value.

Metrics against the dataset (computed for both `group_by` groups, 'label' and
'predicted', each group on its own):

* `grid_js`      JS divergence (bits) of the class mean grid from the group's
                 mean grid (count-weighted mean of the group's class grids).
                 Needs at least 2 classes with a grid in the group.
* `border_z`     robust z of the class mean border mass against the other
                 classes' mean border masses. Needs >= 3 classes in the group;
                 one-sided: only a class with MORE border mass than the others is
                 flagged (attribution drifting to the frame is the shortcut smell;
                 less border mass just means a more central object).
* `in_box`       class mean share of attribution inside the object box; only
                 for rows that carry `mean_in_box` (manifest with boxes).
* `channel_shift` the largest excess of a channel's share of the class's |IG| over
                 the group's (count-weighted) share of that channel: attribution
                 sitting in one colour channel (a colour cast).

Candidates of region metrics carry `region_cells` (the grid block with the most excess
mass, `regions.excess_region`) and `region` (its name), where the intervention edits.

Metrics against a reference run (when `reference` is given; rows matched on
(group_by, class_name)):

* `ref_grid_js`           JS (bits) between the class mean grid now and then.
* `ref_border_shift`      mean border mass now - then (score uses |value|).
* `ref_confidence_shift`  mean confidence now - then (score uses |value|).
* `ref_accuracy_drop`     accuracy then - now; 'label' rows with both accuracies finite.
* `ref_predicted_linf`    L-inf distance (TFDV style) between the predicted-class
                          distributions of the label's images now and then; 'label' rows.
* `ref_predicted_js`      JS (bits) between the same two distributions; 'label' rows.
* `class_presence`        a class present in only one of the two runs: nothing
                          can be compared for it, and a class appearing in or
                          vanishing from the audited data (or from the model's
                          predictions) is itself worth a look, so the row is
                          always flagged (value = count now, reference = count
                          then, threshold = score = 1).

Rows that cannot be computed (grids of different sizes, a malformed grid) are
kept, with value None, score 0, flagged False and a detail saying why, so the
report shows that a comparison was skipped rather than silently missing.

Column `reference`: for the shifts/drops above, the reference run's value of the
underlying quantity (border mass, confidence, accuracy), so that
now = reference + value (or reference - value for the accuracy drop); for
class_presence the reference count; None for divergences, distances and the
dataset metrics, where there is no single counterpart value.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Mapping, Optional

import numpy as np

from igaudit.transforms.analysis.distances import aligned, counts_of, distribution, js_divergence, linf_distance, robust_z
from igaudit.transforms.analysis.regions import describe_region, percent, plural, region_name, strong_region
from igaudit.transforms.records import skew_schema

# `in_box` scores are threshold / value; a value of 0 would give an infinite
# score, so the value is taken as at least this (caps the score at threshold/1e-3).
_IN_BOX_EPS = 1e-3

DEFAULT_THRESHOLDS: dict = {
    # JS divergence in bits. Moving 20% / 30% of a class's attribution mass into
    # a 2x2 corner of a 16x16 grid gives ~0.08 / ~0.14 bits; sampling noise of a
    # class mean over ~50 images of typical (peaky) IG grids is ~0.02 bits
    # against the much larger dataset mean. 0.1 catches a real shortcut (the
    # demo's corner patch) without flagging ordinary class-to-class variety.
    "grid_js": 0.1,
    # Iglewicz & Hoaglin's cut-off for the modified (median/MAD) z-score.
    "border_z": 3.5,
    # Flag a class when less than half of its attribution falls inside the
    # object box: the model mostly looks somewhere other than the object.
    "in_box": 0.5,
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
    # planted on one class moved its shares by 0.1-0.2 (benchmarks/skew.py).
    "channel_shift": 0.06,
    # Share of a cluster's attribution where neither its class's other clusters nor the dataset look as
    # much (cluster_rows). Clusters of clean classes (objects in other places, other writing styles)
    # stayed under ~0.1 on the benchmark; a tag in a corner gave 0.2-0.4. Only a candidate.
    "cluster_excess": 0.15,
}

DATASET_METRICS = ("grid_js", "border_z", "in_box", "channel_shift", "cluster_excess")
# metric -> the intervention that decides its candidates (evidence.measure's kinds)
TESTED = {"grid_js": "region", "border_z": "region", "cluster_excess": "region", "in_box": "outside_box",
          "channel_shift": "channel"}
CHANNEL_NAMES = ("red", "green", "blue")
REFERENCE_METRICS = ("ref_grid_js", "ref_border_shift", "ref_accuracy_drop", "ref_confidence_shift",
                     "ref_predicted_linf", "ref_predicted_js", "class_presence")


def _finite(x) -> Optional[float]:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _grid_of(row: dict) -> tuple[Optional[np.ndarray], int, Optional[str]]:
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
    grids = [_grid_of(r) for r in rows]
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
    if block is None:
        return {}
    return {"region_cells": list(block), "region": region_name(*block, size, size)}


def _skipped(group_by, name, metric, threshold, why) -> dict:
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
        v = _finite(value)
        if v is None or v <= 0 or isinstance(value, bool):
            raise ValueError(f"analysis.thresholds.{key}: must be a positive number, got {value!r}")
        out[key] = v
    return out


def _dataset_rows(group_by: str, rows: list[dict], t: dict) -> list[dict]:
    out = []
    grids = {id(r): _grid_of(r) for r in rows}
    dataset, main_size = group_grid(rows)
    regions = {}
    if dataset is not None:
        for r in rows:
            name = r["class_name"]
            g, size, why = grids[id(r)]
            if g is None:
                out.append(_skipped(group_by, name, "grid_js", t["grid_js"], why))
                continue
            if size != main_size:
                out.append(_skipped(group_by, name, "grid_js", t["grid_js"],
                                    f"grid {size}x{size} vs {main_size}x{main_size} for the rest of the dataset"))
                continue
            js = js_divergence(g, dataset)
            where = describe_region(g.reshape(size, size), dataset.reshape(size, size))
            regions[name] = region_fields(g, dataset, size)
            out.append(skew_row(group_by, name, "grid_js", js, None, js / t["grid_js"], t["grid_js"],
                            f"{subject_of(group_by, name)}: {where} (JS {js:.3f} bits)", **regions[name]))

    borders = [(r["class_name"], _finite(r.get("mean_border_mass"))) for r in rows]
    borders = [(n, b) for n, b in borders if b is not None]
    if len(borders) >= 3:
        for i, (name, b) in enumerate(borders):
            others = [o for j, (_, o) in enumerate(borders) if j != i]
            z = robust_z(b, others)
            median = float(np.median(others))
            out.append(skew_row(group_by, name, "border_z", z, None, z / t["border_z"], t["border_z"],
                            f"{subject_of(group_by, name)}: mean border mass {b:.2f} vs median {median:.2f} "
                            f"across {len(others)} other classes (robust z {z:.1f})", **regions.get(name, {})))

    for r in rows:
        in_box = _finite(r.get("mean_in_box"))
        if in_box is None:
            continue
        name = r["class_name"]
        score = t["in_box"] / max(in_box, _IN_BOX_EPS)
        out.append(skew_row(group_by, name, "in_box", in_box, None, score, t["in_box"],
                        f"{subject_of(group_by, name)}: {percent(in_box)} of attribution inside the object box "
                        f"(a candidate below {percent(t['in_box'])})", region="the background around the object box"))
    out.extend(_channel_rows(group_by, rows, t))
    return out


def _channel_rows(group_by: str, rows: list[dict], t: dict) -> list[dict]:
    shares = [(r, np.asarray(r.get("mean_channel_shares") or [], np.float64)) for r in rows]
    shares = [(r, s) for r, s in shares if s.size == 3 and np.all(np.isfinite(s))]
    if len(shares) < 2:
        return []
    weights = np.array([max(float(r.get("count") or 0), 0.0) for r, _ in shares]) + 1e-12
    dataset = np.average(np.stack([s for _, s in shares]), axis=0, weights=weights)
    out = []
    for r, s in shares:
        excess = s - dataset
        ch = int(np.argmax(excess))
        value = float(excess[ch])
        name = r["class_name"]
        out.append(skew_row(group_by, name, "channel_shift", value, float(dataset[ch]), value / t["channel_shift"],
                        t["channel_shift"],
                        f"{subject_of(group_by, name)}: {percent(s[ch])} of attribution in the {CHANNEL_NAMES[ch]} "
                        f"channel vs {percent(dataset[ch])} across the dataset",
                        channel=ch, region=f"the {CHANNEL_NAMES[ch]} channel"))
    return out


def _reference_rows(group_by: str, name, cur: dict, ref: dict, t: dict) -> list[dict]:
    out = []
    subject = subject_of(group_by, name)

    g, size, why = _grid_of(cur)
    rg, rsize, rwhy = _grid_of(ref)
    if g is None or rg is None:
        out.append(_skipped(group_by, name, "ref_grid_js", t["ref_grid_js"],
                            why if g is None else f"{rwhy} in the reference run"))
    elif size != rsize:
        out.append(_skipped(group_by, name, "ref_grid_js", t["ref_grid_js"],
                            f"grid {size}x{size} in this run vs {rsize}x{rsize} in the reference run"))
    else:
        js = js_divergence(g, rg)
        where = describe_region(g.reshape(size, size), rg.reshape(size, size), against="in the reference run")
        out.append(skew_row(group_by, name, "ref_grid_js", js, None, js / t["ref_grid_js"], t["ref_grid_js"],
                        f"{subject}: {where} (JS {js:.3f} bits)"))

    b, rb = _finite(cur.get("mean_border_mass")), _finite(ref.get("mean_border_mass"))
    if b is not None and rb is not None:
        shift = b - rb
        out.append(skew_row(group_by, name, "ref_border_shift", shift, rb, abs(shift) / t["ref_border_shift"],
                        t["ref_border_shift"],
                        f"{subject}: mean border mass {b:.2f} vs {rb:.2f} in the reference run ({shift:+.2f})"))

    if group_by == "label":
        a, ra = _finite(cur.get("accuracy")), _finite(ref.get("accuracy"))
        if a is not None and ra is not None:
            drop = ra - a
            out.append(skew_row(group_by, name, "ref_accuracy_drop", drop, ra, drop / t["ref_accuracy_drop"],
                            t["ref_accuracy_drop"],
                            f"{subject}: accuracy {percent(a)} vs {percent(ra)} in the reference run "
                            f"({-100 * drop:+.0f} points)"))

    c, rc = _finite(cur.get("mean_confidence")), _finite(ref.get("mean_confidence"))
    if c is not None and rc is not None:
        shift = c - rc
        out.append(skew_row(group_by, name, "ref_confidence_shift", shift, rc,
                        abs(shift) / t["ref_confidence_shift"], t["ref_confidence_shift"],
                        f"{subject}: mean confidence {c:.2f} vs {rc:.2f} in the reference run ({shift:+.2f})"))

    if group_by == "label":
        p, rp = counts_of(cur.get("predicted_counts")), counts_of(ref.get("predicted_counts"))
        if sum(p.values()) > 0 and sum(rp.values()) > 0:
            keys, pa_, pb_ = aligned(p, rp)
            sa, sb = pa_ / pa_.sum(), pb_ / pb_.sum()
            change = _prediction_change(keys, sa, sb)
            linf = linf_distance(p, rp)
            out.append(skew_row(group_by, name, "ref_predicted_linf", linf, None, linf / t["ref_predicted_linf"],
                            t["ref_predicted_linf"], f"{subject}: {change}"))
            js = js_divergence(pa_, pb_)
            out.append(skew_row(group_by, name, "ref_predicted_js", js, None, js / t["ref_predicted_js"],
                            t["ref_predicted_js"],
                            f"{subject}: predicted-class distribution {js:.3f} bits from the reference run; "
                            f"{change}"))
    return out


def _prediction_change(keys: list, now: np.ndarray, then: np.ndarray) -> str:
    """The largest gain and the largest loss of a predicted class's share, e.g.
    "now predicted 'square' for 30% of its images (0% in the reference run), 'triangle' for 60% (90%)"."""
    diff = np.round(now - then, 12)        # rounding: ties go to the first key in sorted order
    parts = []
    for i in (int(np.argmax(diff)), int(np.argmin(diff))):
        if diff[i] != 0 and (not parts or parts[0][0] != i):
            parts.append((i, now[i], then[i]))
    if not parts:
        return "same predicted-class shares as in the reference run"
    (i, a, b), rest = parts[0], parts[1:]
    text = f"now predicted '{keys[i]}' for {percent(a)} of its images ({percent(b)} in the reference run)"
    for i, a, b in rest:
        text += f", '{keys[i]}' for {percent(a)} ({percent(b)})"
    return text


def _presence_row(group_by: str, name, cur: Optional[dict], ref: Optional[dict]) -> dict:
    n = int((cur or {}).get("count") or 0)
    rn = int((ref or {}).get("count") or 0)
    subject = subject_of(group_by, name)
    if cur is not None:
        detail = f"{subject}: {plural(n, 'image')} in this run, none in the reference run; not compared"
    else:
        detail = f"{subject}: none in this run, {plural(rn, 'image')} in the reference run; not compared"
    return skew_row(group_by, name, "class_presence", n, rn, 1.0, 1.0, detail)


def _sort_key(row: dict):
    cluster = row.get("cluster")
    return (str(row["group_by"] or ""), str(row["class_name"] or ""), -1 if cluster is None else cluster,
            row["metric"])


def skew_rows(classes: list[dict], reference: Optional[list[dict]] = None,
              thresholds: Optional[Mapping] = None) -> list[dict]:
    """classes.parquet rows (this run, optionally a reference run) -> skew.parquet rows.

    One row per (group_by, class_name, metric), keys exactly `records.skew_schema()`,
    sorted by (group_by, class_name, metric). `flagged == (score >= 1)` on every row.
    Optional input fields: `mean_in_box` (enables the in_box metric).
    `predicted_counts` may be a dict or a list of (name, count) pairs.
    """
    t = resolve_thresholds(thresholds)
    out: list[dict] = []

    groups: dict = {}
    for r in classes:
        groups.setdefault(r["group_by"], []).append(r)
    for group_by in sorted(groups, key=str):
        rows = sorted(groups[group_by], key=lambda r: str(r["class_name"]))
        out.extend(_dataset_rows(group_by, rows, t))

    if reference is not None:
        cur = {(r["group_by"], r["class_name"]): r for r in classes}
        ref = {(r["group_by"], r["class_name"]): r for r in reference}
        for key in sorted(set(cur) | set(ref), key=lambda k: (str(k[0]), str(k[1]))):
            group_by, name = key
            if key in cur and key in ref:
                out.extend(_reference_rows(group_by, name, cur[key], ref[key], t))
            else:
                out.append(_presence_row(group_by, name, cur.get(key), ref.get(key)))

    return sorted(out, key=_sort_key)


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
        s = _finite(r.get("score"))
        best.setdefault(key, [])
        if s is not None:
            best[key].append(s)
    return {key: max(scores) if scores else 0.0 for key, scores in best.items()}
