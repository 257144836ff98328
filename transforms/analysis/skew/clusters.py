"""Strategy clusters of one class's attribution grids, and the clusters' candidates (numpy only).

A shortcut carried by part of a class (a watermark on a fifth of its photos: SpRAy,
Lapuschkin et al. 2019, "Unmasking Clever Hans predictors") is diluted in the class's
mean grid. Clustering the class's per-image grids finds the group of images whose
evidence sits somewhere else.

Each grid (G x G, sums to 1) is embedded as its square root: Euclidean distance
between embeddings is then sqrt(2) x the Hellinger distance of the two
distributions, which neither a few peaky cells nor a diffuse grid dominates. The
number of clusters comes from the data: k-means (k-means++ start, seeded) for
k = 2..max_clusters; a k is kept when its most distinct cluster stands out (`standout`)
by at least MIN_SILHOUETTE_GAIN more than k-means achieves on groupless data of the same
spread (`null_standout`) and every cluster holds at least MIN_CLUSTER_SIZE images and
MIN_CLUSTER_SHARE of the class, else the class is one cluster. Clusters are numbered by
size (0 = largest), so the same sample always gives the same numbering.

A cluster's *excess* (`cluster_rows`, the `cluster_excess` candidates) is the share of its attribution
that sits where neither its class's other clusters nor the dataset look as much: the sum over cells of
max(0, cluster - max(other clusters, dataset)), each a mean grid summing to 1. Mass where either of
those looks is not excess (objects moving around the frame make clusters too, but the dataset looks
everywhere they go). Its region is the block of strong excess (`regions.strong_region`).
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from igaudit.transforms.analysis.regions import describe_region
from igaudit.transforms.analysis.skew.rows import group_grid, region_fields, resolve_thresholds, skew_row, subject_of

# How far the most distinct cluster stands out beyond groupless data of the same spread. Synthetic IG-like
# grids (tests/transforms/analysis/skew/test_clusters.py's blobs, 12 seeds): groupless classes of 30 to 200
# images reached at most 0.07 (averaged over _NULL_DRAWS draws); a tagged group of 10-15 of 30 images 0.05-0.21,
# of 12 among 60 0.16-0.28. 0.1 splits most small tagged classes and no groupless one there; the findings do not
# depend on it (a mark's test runs on the images that look at its region). A k whose score is within _SIMPLER
# of the best is preferred when it is smaller.
_SIMPLER = 0.03
MIN_SILHOUETTE_GAIN = 0.1
_NULL_DRAWS = 4
MIN_CLUSTER_SIZE = 4
MIN_CLUSTER_SHARE = 0.1
DEFAULT_MAX_CLUSTERS = 4
EXEMPLARS = 4
_RESTARTS = 4
_ITERATIONS = 60


def embed(grids) -> np.ndarray:
    """(n, G*G) grids -> their square roots after normalising each to sum 1 (rows of zeros stay zero)."""
    g = np.clip(np.asarray(grids, np.float64).reshape(len(grids), -1), 0.0, None)
    totals = g.sum(axis=1, keepdims=True)
    return np.sqrt(np.divide(g, totals, out=np.zeros_like(g), where=totals > 0))


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d, 0.0)


def kmeans(x: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(centres (k, D), labels (n,), inertia): the best of a few seeded k-means++ starts."""
    best = None
    for restart in range(_RESTARTS):
        rng = np.random.default_rng([seed, k, restart])
        centres = [x[rng.integers(len(x))]]
        for _ in range(1, k):
            d = _squared_distances(x, np.array(centres)).min(1)
            p = d / d.sum() if d.sum() > 0 else np.full(len(x), 1.0 / len(x))
            centres.append(x[rng.choice(len(x), p=p)])
        centres = np.array(centres)
        for _ in range(_ITERATIONS):
            labels = _squared_distances(x, centres).argmin(1)
            moved = np.array([x[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)])
            if np.allclose(moved, centres):
                break
            centres = moved
        labels = _squared_distances(x, centres).argmin(1)
        inertia = float(_squared_distances(x, centres)[np.arange(len(x)), labels].sum())
        if best is None or inertia < best[2] - 1e-12:
            best = (centres, labels, inertia)
    return best


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (Rousseeuw 1987) of a labelling with >= 2 clusters; 0 for singletons."""
    return float(silhouettes(x, labels).mean())


def standout(x: np.ndarray, labels: np.ndarray) -> float:
    """The mean silhouette of the most distinct cluster: how well the best-separated group stands out
    (a compact group of tagged images beside a diffuse rest scores high, the mean silhouette does not)."""
    s = silhouettes(x, labels)
    return float(max(s[labels == j].mean() for j in np.unique(labels)))


def silhouettes(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each point's silhouette (Rousseeuw 1987); 0 for points alone in their cluster (and for every point
    when there is one cluster). Per-cluster distance sums for all points at once: one (n x n) @ (n x k)."""
    d = np.sqrt(_squared_distances(x, x))
    _, own = np.unique(labels, return_inverse=True)
    own = own.reshape(-1)
    members = np.eye(own.max() + 1)[own]                    # n x k, one-hot
    sizes = members.sum(0)
    if len(sizes) < 2:
        return np.zeros(len(x))
    sums = d @ members                                      # n x k: each point's distance sum to each cluster
    rows = np.arange(len(x))
    alone = sizes[own] <= 1
    a = sums[rows, own] / np.maximum(sizes[own] - 1, 1)     # mean distance to the rest of its own cluster
    others = sums / sizes
    others[rows, own] = np.inf
    b = others.min(1)                                       # mean distance to the nearest other cluster
    top = np.maximum(a, b)
    scores = np.divide(b - a, top, out=np.zeros(len(x)), where=top > 0)
    scores[alone] = 0.0
    return scores


def null_standout(x: np.ndarray, k: int, seed: int = 0) -> float:
    """How far a cluster stands out (`standout`) when k-means splits groupless data of the same spread as x:
    Gaussian draws with x's mean and covariance (seeded), averaged over _NULL_DRAWS draws."""
    mean = x.mean(0)
    centred = x - mean
    # sample through the SVD (the covariance is low rank: n images in G*G dimensions)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    scale = singular / np.sqrt(max(len(x) - 1, 1))
    scores = []
    for draw in range(_NULL_DRAWS):
        rng = np.random.default_rng([seed, k, draw, 7])
        fake = mean + (rng.standard_normal((len(x), len(scale))) * scale) @ vt
        scores.append(standout(fake, kmeans(fake, k, seed)[1]))
    return float(np.mean(scores))


def fit_clusters(grids, max_clusters: int = DEFAULT_MAX_CLUSTERS, seed: int = 0) -> np.ndarray:
    """Cluster centres (k, G*G) in the embedded space, largest cluster first; k = 1 is a valid answer."""
    x = embed(grids)
    n = len(x)
    one = x.mean(0, keepdims=True)
    smallest = max(MIN_CLUSTER_SIZE, int(np.ceil(MIN_CLUSTER_SHARE * n)))
    scored = []
    for k in range(2, max_clusters + 1):
        if n < k * smallest:
            break
        centres, labels, _ = kmeans(x, k, seed)
        sizes = np.bincount(labels, minlength=k)
        if sizes.min() < smallest:
            continue
        scored.append((standout(x, labels) - null_standout(x, k, seed), k, centres[np.argsort(-sizes, kind="stable")]))
    if not scored or max(s for s, _, _ in scored) < MIN_SILHOUETTE_GAIN:
        return one
    best = max(s for s, _, _ in scored)
    return next(centres for s, _, centres in scored if s >= best - _SIMPLER)


def assign(grid, centres: np.ndarray) -> tuple[int, float]:
    """(nearest cluster, its Hellinger distance in [0, 1]) for one grid."""
    d = _squared_distances(embed([grid]), np.asarray(centres, np.float64))[0]
    j = int(np.argmin(d))
    return j, float(np.sqrt(d[j] / 2.0))


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


def cluster_rows(clusters: list[dict], classes: list[dict], thresholds: Optional[Mapping] = None) -> list[dict]:
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
