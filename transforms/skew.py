"""FlagSkew: class rows -> skew rows, against the dataset and a reference run (`analysis.skew_rows` does the work)."""
from __future__ import annotations

from typing import Mapping, Optional

import apache_beam as beam

from igaudit.transforms.analysis.skew_rows import skew_rows


class FlagSkew(beam.PTransform):
    """PCollection[classes row dict] -> PCollection[skew row dict].

    All class rows are gathered in one place: they are few and small (one grid each).
    """

    def __init__(self, reference: Optional[list] = None, thresholds: Optional[Mapping] = None):
        super().__init__()
        self.reference = reference
        self.thresholds = dict(thresholds or {})

    def expand(self, classes):
        return (classes
                | "AllClasses" >> beam.combiners.ToList()
                | "SkewRows" >> beam.FlatMap(skew_rows, self.reference, self.thresholds))
