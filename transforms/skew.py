"""FlagSkew: class and cluster rows -> candidate skew rows, against the dataset and a reference run
(`analysis.skew_rows` and `analysis.cluster_rows` do the work)."""
from __future__ import annotations

from typing import Mapping, Optional

import apache_beam as beam

from igaudit.transforms.analysis.cluster_rows import cluster_skew_rows
from igaudit.transforms.analysis.skew_rows import skew_rows


def candidate_rows(classes: list, clusters: list, reference: Optional[list], thresholds: dict) -> list:
    return skew_rows(classes, reference, thresholds) + cluster_skew_rows(clusters, classes, thresholds)


class FlagSkew(beam.PTransform):
    """(PCollection[classes row dict], PCollection[clusters row dict]) -> PCollection[skew row dict] with
    `candidate` set and `flagged` only on drift rows (the interventions decide the rest: `Verdicts`).

    All class and cluster rows are gathered in one place: they are few and small (one grid each).
    """

    def __init__(self, reference: Optional[list] = None, thresholds: Optional[Mapping] = None):
        super().__init__()
        self.reference = reference
        self.thresholds = dict(thresholds or {})

    def expand(self, pcolls):
        classes, clusters = pcolls
        return (classes
                | "AllClasses" >> beam.combiners.ToList()
                | "SkewRows" >> beam.FlatMap(candidate_rows, beam.pvalue.AsList(clusters), self.reference,
                                             self.thresholds))
