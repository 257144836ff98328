"""clusters.parquet rows, and the `cluster_excess` candidates: clusters whose evidence sits apart (numpy only).

A cluster's *excess* is the share of its attribution that sits where neither its class's other
clusters nor the dataset look as much: the sum over cells of max(0, cluster - max(other
clusters, dataset)), each a mean grid summing to 1. Mass where either of those looks is not
excess (objects moving around the frame make clusters too, but the dataset looks everywhere
they go). A cluster with enough excess is a candidate; its region is the block of strong
excess (`regions.strong_region`), and the interventions decide it.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from igaudit.transforms.analysis.regions import describe_region
from igaudit.transforms.analysis.skew_rows import group_grid, region_fields, resolve_thresholds, skew_row, subject_of

EXEMPLARS = 4


def _mean_grid(summary: dict) -> np.ndarray:
    g = np.asarray(summary["grid_sum"], np.float64)
    return g / g.sum() if g.sum() > 0 else np.full(g.size, 1.0 / max(g.size, 1))


def contrast_grid(cluster: int, grids: dict, sizes: dict, dataset: np.ndarray) -> np.ndarray:
    """Cell-wise max of the other clusters' size-weighted mean grid and the dataset grid (not renormalised)."""
    others = [c for c in grids if c != cluster]
    rest = np.average(np.stack([grids[c] for c in others]), axis=0, weights=[sizes[c] for c in others])
    return np.maximum(rest, dataset)


def excess_share(grid: np.ndarray, contrast: np.ndarray) -> float:
    """Share of `grid`'s mass above `contrast`, cell by cell."""
    return float(np.maximum(np.asarray(grid) - np.asarray(contrast), 0.0).sum())


def cluster_table(summaries: list[dict], classes: list[dict]) -> list[dict]:
    """Cluster summaries ({group_by, class_name, cluster, size, outlier_sum, grid_sum, grid_size,
    exemplars}) -> clusters.parquet rows, sorted by (group_by, class_name, cluster)."""
    counts = {(c["group_by"], c["class_name"]): int(c["count"]) for c in classes}
    datasets = {g: group_grid([c for c in classes if c["group_by"] == g]) for g in {c["group_by"] for c in classes}}
    by_class: dict = {}
    for s in summaries:
        by_class.setdefault((s["group_by"], s["class_name"]), []).append(s)
    out = []
    for key in sorted(by_class, key=lambda k: (str(k[0]), str(k[1]))):
        members = sorted(by_class[key], key=lambda s: s["cluster"])
        size = int(members[0]["grid_size"])
        grids = {s["cluster"]: _mean_grid(s) for s in members}
        sizes = {s["cluster"]: int(s["size"]) for s in members}
        dataset, dataset_size = datasets.get(key[0], (None, 0))
        total = counts.get(key) or sum(sizes.values())
        for s in members:
            c = s["cluster"]
            region = None
            if dataset is not None and dataset_size == size:
                region = describe_region(grids[c].reshape(size, size), dataset.reshape(size, size))
            out.append({"group_by": key[0], "class_name": key[1], "cluster": int(c), "size": sizes[c],
                        "share": sizes[c] / total if total else None,
                        "mean_outlier_score": float(s["outlier_sum"]) / max(sizes[c], 1),
                        "grid_size": size, "mean_grid": grids[c].tolist(), "region": region,
                        "exemplars": list(s["exemplars"])[:EXEMPLARS]})
    return out


def cluster_skew_rows(clusters: list[dict], classes: list[dict], thresholds: Optional[Mapping] = None) -> list[dict]:
    """One `cluster_excess` row per cluster of a class that has more than one cluster."""
    t = resolve_thresholds(thresholds)["cluster_excess"]
    datasets = {g: group_grid([c for c in classes if c["group_by"] == g]) for g in {c["group_by"] for c in classes}}
    by_class: dict = {}
    for r in clusters:
        by_class.setdefault((r["group_by"], r["class_name"]), []).append(r)
    out = []
    for (group_by, name), members in sorted(by_class.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        dataset, dataset_size = datasets.get(group_by, (None, 0))
        size = int(members[0]["grid_size"])
        if len(members) < 2 or dataset is None or dataset_size != size:
            continue
        grids = {r["cluster"]: np.asarray(r["mean_grid"], np.float64) for r in members}
        sizes = {r["cluster"]: int(r["size"]) for r in members}
        for r in members:
            c = r["cluster"]
            contrast = contrast_grid(c, grids, sizes, dataset)
            excess = excess_share(grids[c], contrast)
            share = r["share"] if r["share"] is not None else float("nan")
            out.append(skew_row(group_by, name, "cluster_excess", excess, None, excess / t, t,
                            f"{subject_of(group_by, name)}, cluster {c} ({sizes[c]} images, {100 * share:.0f}% of the "
                            f"class): {r['region']}; {100 * excess:.0f}% of its attribution sits where neither the "
                            f"class's other clusters nor the dataset look as much",
                            cluster=int(c), **region_fields(grids[c], contrast, size)))
    return out
