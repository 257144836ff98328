"""Verdicts: candidate skew rows + intervention figures -> the final skew rows: verdict, evidence, status.

`analysis.candidates.apply_verdicts` flags a candidate only when its intervention says "artifact";
`analysis.status.with_status` compares the flags with the reference run's.
"""
from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam

from igaudit.transforms.analysis.candidates import apply_verdicts, intervention_tests
from igaudit.transforms.analysis.status import with_status


def candidate_tests(rows: list, class_names: Sequence[str], grid: int) -> list:
    return intervention_tests(rows, class_names, grid)


def _final(rows: list, figures: list, tests: list, class_names: list, reference: Optional[list]) -> list:
    judged = apply_verdicts(rows, tests, dict(figures), class_names)
    return with_status(judged, reference)


class CandidateTests(beam.PTransform):
    """PCollection[skew row dict] -> PCollection holding one list[InterventionTest] (the side input)."""

    def __init__(self, class_names: Sequence[str], grid: int):
        super().__init__()
        self.class_names, self.grid = list(class_names), int(grid)

    def expand(self, rows):
        return (rows
                | "AllCandidates" >> beam.combiners.ToList()
                | "Tests" >> beam.Map(candidate_tests, self.class_names, self.grid))


class Verdicts(beam.PTransform):
    """(PCollection[skew row dict], PCollection[(test_id, figures)], PCollection[list[InterventionTest]])
    -> PCollection[skew row dict] with the verdict (`flagged`), its evidence and `status`.

    reference: the reference run's skew rows (None: no reference run, every flag is new).
    """

    def __init__(self, class_names: Sequence[str], reference: Optional[list] = None):
        super().__init__()
        self.class_names, self.reference = list(class_names), reference

    def expand(self, pcolls):
        rows, figures, tests = pcolls
        return (rows
                | "AllRows" >> beam.combiners.ToList()
                | "Judge" >> beam.FlatMap(_final, beam.pvalue.AsList(figures), beam.pvalue.AsSingleton(tests),
                                          self.class_names, self.reference))
