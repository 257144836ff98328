"""ClusterStrategies: strategy clusters of each class's attribution grids, then every image assigned to one.

Scales with the data: a bounded sample per class (the `sample` images with the smallest hash of
their id, so the same images whatever the order of arrival or the number of workers) feeds the
clustering (`analysis.clusters`), and the fitted centres reach a second pass over every row as
a side input. Cluster statistics (size, grid sum, outlier scores, exemplars) come from a
mergeable CombineFn, like the class statistics.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterable

import apache_beam as beam
import numpy as np
from threadpoolctl import threadpool_limits

from igaudit.transforms.aggregate import class_keys
from igaudit.transforms.analysis.skew import assign, fit_clusters

EXEMPLARS = 4


def sample_key(image_id: str) -> str:
    """The order in which images enter a bounded sample: a hash of the id (stable, spread over classes)."""
    return hashlib.sha256(image_id.encode("utf-8")).hexdigest()


def _fit(element, max_clusters: int, seed: int):
    key, items = element
    grids = [grid for _, grid in sorted(items)]   # sorted by hash: the same sample in the same order
    # One BLAS thread: these matrices are small (hundreds x G*G), and OpenBLAS's threads spinning beside
    # TensorFlow's on a busy machine made one fit up to 30x slower (an SVD of 100 x 256: 1.1 s vs 5 ms).
    with threadpool_limits(1, user_api="blas"):
        return key, fit_clusters(grids, max_clusters, seed)


def assign_row(row: dict, centres: dict) -> dict:
    """The row with `cluster`/`outlier_score` (its label's class) and `predicted_cluster`/
    `predicted_outlier_score` (its predicted class) filled in where that class was clustered."""
    row = dict(row)
    for group_by, name, prefix in (("label", row["label"], ""), ("predicted", row["predicted_name"], "predicted_")):
        fitted = centres.get((group_by, name))
        if name is None or fitted is None:
            continue
        cluster, distance = assign(row["grid"], fitted)
        row[f"{prefix}cluster"], row[f"{prefix}outlier_score"] = cluster, distance
    return row


def cluster_keys(row: dict) -> Iterable[tuple[tuple, tuple]]:
    """Each image as (outlier score, image_id, grid, grid_size) under (label, class, cluster) and
    (predicted, class, cluster)."""
    if row["label"] is not None and row.get("cluster") is not None:
        yield ("label", row["label"], row["cluster"]), (row["outlier_score"], row["image_id"], row["grid"],
                                                         row["grid_size"])
    if row.get("predicted_cluster") is not None:
        yield (("predicted", row["predicted_name"], row["predicted_cluster"]),
               (row["predicted_outlier_score"], row["image_id"], row["grid"], row["grid_size"]))


@dataclasses.dataclass
class ClusterAccumulator:
    size: int = 0
    outlier_sum: float = 0.0
    grid_sum: np.ndarray | None = None
    grid_size: int = 0
    exemplars: list = dataclasses.field(default_factory=list)   # [(outlier_score, image_id)], nearest first


def _nearest(items) -> list:
    return sorted(items)[:EXEMPLARS]


class ClusterStatsFn(beam.CombineFn):
    """(outlier score, image_id, grid, grid_size) of one (group_by, class, cluster) ->
    {size, outlier_sum, grid_sum, grid_size, exemplars}."""

    def create_accumulator(self):
        return ClusterAccumulator()

    def add_input(self, acc, item):
        score, image_id, grid, grid_size = item
        acc.size += 1
        acc.outlier_sum += float(score)
        grid = np.asarray(grid, np.float64)
        acc.grid_sum = grid.copy() if acc.grid_sum is None else acc.grid_sum + grid
        acc.grid_size = int(grid_size)
        acc.exemplars = _nearest(acc.exemplars + [(float(score), image_id)])
        return acc

    def merge_accumulators(self, accumulators):
        out = ClusterAccumulator()
        for acc in accumulators:
            out.size += acc.size
            out.outlier_sum += acc.outlier_sum
            if acc.grid_sum is not None:
                out.grid_sum = acc.grid_sum.copy() if out.grid_sum is None else out.grid_sum + acc.grid_sum
            out.grid_size = out.grid_size or acc.grid_size
            out.exemplars = _nearest(out.exemplars + acc.exemplars)
        return out

    def extract_output(self, acc):
        return {"size": acc.size, "outlier_sum": acc.outlier_sum,
                "grid_sum": [] if acc.grid_sum is None else acc.grid_sum.tolist(), "grid_size": acc.grid_size,
                "exemplars": [image_id for _, image_id in acc.exemplars]}


def _is_primary(row: dict) -> bool:
    return row["target"] == row["predicted"]


class ClusterStrategies(beam.PTransform):
    """PCollection[images row dict] -> (PCollection[images row dict] with cluster, outlier_score,
    predicted_cluster, predicted_outlier_score; PCollection[cluster summary dict]: group_by, class_name,
    cluster, size, outlier_sum, grid_sum, grid_size, exemplars).

    max_clusters: per class (1: every class one cluster); sample: images per class the clustering
    sees. primary_only: fit and summarise on each image's predicted-class row only (several targets
    per image); every row is assigned.
    """

    def __init__(self, max_clusters: int, sample: int, primary_only: bool = False, seed: int = 0):
        super().__init__()
        self.max_clusters, self.sample, self.primary_only, self.seed = max_clusters, sample, primary_only, seed

    def expand(self, rows):
        primary = rows | "Primary" >> beam.Filter(_is_primary) if self.primary_only else rows
        centres = (primary
                   | "KeyByClass" >> beam.FlatMap(class_keys)
                   | "SampleKey" >> beam.MapTuple(lambda key, row: (key, (sample_key(row["image_id"]), row["grid"])))
                   | "SamplePerClass" >> beam.combiners.Top.PerKey(self.sample, key=lambda item: item[0],
                                                                    reverse=True)
                   | "FitClusters" >> beam.Map(_fit, self.max_clusters, self.seed))
        assigned = rows | "AssignClusters" >> beam.Map(assign_row, beam.pvalue.AsDict(centres))
        summarised = assigned | "PrimaryAssigned" >> beam.Filter(_is_primary) if self.primary_only else assigned
        summaries = (summarised
                     | "KeyByCluster" >> beam.FlatMap(cluster_keys)
                     | "CombinePerCluster" >> beam.CombinePerKey(ClusterStatsFn())
                     | "ToSummary" >> beam.MapTuple(lambda key, stats: {"group_by": key[0], "class_name": key[1],
                                                                         "cluster": int(key[2]), **stats}))
        return assigned, summaries
