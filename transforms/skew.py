"""FlagSkew: class and cluster rows -> candidate skew rows: the class metrics, the clusters' excess, drift against
a reference run, and a re-test of each of the reference run's shortcut findings (`analysis.skew.candidate_rows`)."""
from __future__ import annotations

from typing import Mapping, Optional

import apache_beam as beam

from igaudit.transforms.analysis.skew import candidate_rows


class FlagSkew(beam.PTransform):
    """(PCollection[classes row dict], PCollection[clusters row dict]) -> PCollection[skew row dict] with
    `candidate` set and `flagged` only on drift rows (the interventions decide the rest: `Verdicts`).

    All class and cluster rows are gathered in one place: they are few and small (one grid each).
    reference_classes / reference_findings: the reference run's classes and findings rows (None: none); grid,
    border: `analysis.grid` and `analysis.border`.
    """

    def __init__(self, reference_classes: Optional[list] = None, reference_findings: Optional[list] = None,
                 thresholds: Optional[Mapping] = None, grid: int = 16, border: float = 0.1):
        super().__init__()
        self.reference_classes, self.reference_findings = reference_classes, reference_findings
        self.thresholds, self.grid, self.border = dict(thresholds or {}), int(grid), float(border)

    def expand(self, pcolls):
        classes, clusters = pcolls
        return (classes
                | "AllClasses" >> beam.combiners.ToList()
                | "SkewRows" >> beam.FlatMap(lambda c, cl: candidate_rows(c, cl, self.reference_classes,
                                                                          self.reference_findings, self.thresholds,
                                                                          self.grid, self.border),
                                             beam.pvalue.AsList(clusters)))
