"""Verdicts: candidate skew rows + intervention figures -> the final skew rows and the findings.

`CandidateTests` plans the interventions (`analysis.skew.plan_tests`); `Verdicts` judges every candidate on its
test's figures, gathers the judged rows into findings (one per shortcut) and gives each finding its status
against the reference run's findings (`analysis.skew.judge_all`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam

from igaudit.transforms.analysis.skew import judge_all, plan_tests

ROWS, FINDINGS = "rows", "findings"


class CandidateTests(beam.PTransform):
    """PCollection[skew row dict] -> PCollection holding one list[InterventionTest] (the side input); at most
    `max_tests` tests (None: no bound)."""

    def __init__(self, class_names: Sequence[str], grid: int, max_tests: Optional[int] = None):
        super().__init__()
        self.class_names, self.grid, self.max_tests = list(class_names), int(grid), max_tests

    def expand(self, rows):
        return (rows
                | "AllCandidates" >> beam.combiners.ToList()
                | "Tests" >> beam.Map(lambda r: plan_tests(r, self.class_names, self.grid, self.max_tests)[0]))


def _judge(rows, figures, tests, classes, class_names, grid, reference, max_tests):
    present = {c["class_name"] for c in classes if c.get("count")}
    judged, findings = judge_all(rows, tests, dict(figures), class_names, grid, reference, present, max_tests)
    yield from (beam.pvalue.TaggedOutput(ROWS, r) for r in judged)
    yield from (beam.pvalue.TaggedOutput(FINDINGS, f) for f in findings)


class Verdicts(beam.PTransform):
    """(PCollection[skew row dict], PCollection[(test_id, figures)], PCollection[list[InterventionTest]],
    PCollection[classes row dict]) -> {ROWS: PCollection[skew row dict] with the verdict, its evidence and
    its finding; FINDINGS: PCollection[findings row dict] with their status}.

    reference: the reference run's findings (None: no reference run, every shortcut is new); max_tests: as
    `CandidateTests`.
    """

    def __init__(self, class_names: Sequence[str], grid: int, reference: Optional[list] = None,
                 max_tests: Optional[int] = None):
        super().__init__()
        self.class_names, self.grid, self.reference, self.max_tests = list(class_names), int(grid), reference, max_tests

    def expand(self, pcolls):
        rows, figures, tests, classes = pcolls
        out = (rows
               | "AllRows" >> beam.combiners.ToList()
               | "Judge" >> beam.FlatMap(_judge, beam.pvalue.AsList(figures), beam.pvalue.AsSingleton(tests),
                                         beam.pvalue.AsList(classes), self.class_names, self.grid,
                                         self.reference, self.max_tests).with_outputs(ROWS, FINDINGS))
        return {ROWS: out[ROWS], FINDINGS: out[FINDINGS]}
