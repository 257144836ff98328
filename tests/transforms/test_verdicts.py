"""transforms/verdicts.py: CandidateTests and Verdicts on TestPipeline: candidate rows -> one list of intervention
tests (one per distinct edit, at most max_tests) -> judged rows naming their findings, and findings with their
status against the reference run's."""
import math

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from igaudit.transforms.analysis.skew.evidence import FIGURES
from igaudit.transforms.analysis.skew.rows import skew_row
from igaudit.transforms.records import InterventionTest
from igaudit.transforms.verdicts import FINDINGS, ROWS, CandidateTests, Verdicts

CLASS_NAMES = ["cat", "dog", "fox"]
CAT_TEST = InterventionTest("label/cat/region/0-2-0-2", "label", "cat", 0, "region", "the top-left 2x2 cells",
                            cells=(0, 2, 0, 2), grid=16)
DOG_TEST = InterventionTest("label/dog/channel/0", "label", "dog", 1, "channel", "the red channel", grid=16, channel=0)


def row(name, metric, score, **extra):
    return skew_row("label", name, metric, score / 10, None, score, 0.1, f"{name}: {metric}", **extra)


ROWS_IN = [row("cat", "peak_excess", 3.0, region_cells=[0, 2, 0, 2], region="the top-left 2x2 cells"),
           row("cat", "grid_js", 2.0, region_cells=[0, 3, 0, 2], region="the top-left 3x2 cells"),   # the same mark
           row("dog", "channel_shift", 1.5, channel=0, region="the red channel"),
           row("fox", "grid_js", 1.2, region_cells=[8, 10, 8, 10], region="the centre 2x2 cells"),  # over budget
           row("dog", "ref_accuracy_drop", 4.0),
           row("fox", "border_z", 0.3)]


def figures(**values):
    """evidence.measure's figures: NaN where a figure does not apply."""
    return {**dict.fromkeys(FIGURES, math.nan), "accuracy": 0.9, "accuracy_removed": 0.1, **values}


FIGURES_IN = [(CAT_TEST.test_id, figures(drop=0.7, control_drop=0.0, kept_class=0.9, kept_other=0.1,
                                         transplant_flip=0.8, transplant_control=0.0, stamp_repeat=0.9,
                                         stamp_others=0.0)),
              (DOG_TEST.test_id, figures(drop=0.05, control_drop=0.04, kept_class=0.1, kept_other=0.1,
                                         stamp_repeat=0.3, stamp_others=0.1))]


def finding(fid, name):
    return {"finding": fid, "class_name": name, "kind": "region", "region_cells": [0, 2, 0, 2], "grid_size": 16,
            "group_by": "label", "outcome": "shortcut", "flagged": True, "detail": f"{name} corner"}


REFERENCE = [finding("CAT-1", "cat"), finding("HORSE-1", "horse")]


def check_rows(rows):
    got = sorted(((r["class_name"], r["metric"], r["outcome"], r["flagged"], r["finding"]) for r in rows), key=str)
    assert got == sorted([("cat", "peak_excess", "shortcut", True, "CAT-1"),      # a standing finding keeps its id
                          ("cat", "grid_js", "shortcut", True, "CAT-1"),
                          ("dog", "channel_shift", "cleared", False, "dog/channel/red"),
                          ("fox", "grid_js", None, False, None),
                          ("dog", "ref_accuracy_drop", None, True, "dog/drift"),
                          ("fox", "border_z", None, False, None)], key=str), got
    by = {(r["class_name"], r["metric"]): r for r in rows}
    assert by[("cat", "grid_js")]["test_id"] == CAT_TEST.test_id and by[("cat", "grid_js")]["drop"] == 0.7
    assert by[("fox", "grid_js")]["evidence"] == ("untested: beyond the first 2 tests (analysis.max_tests): raise "
                                                  "it to test this one")
    assert by[("dog", "channel_shift")]["evidence"] == "not needed, not sufficient, not repeating"
    assert by[("fox", "border_z")] == ROWS_IN[5]                          # not a candidate: as it came


def check_findings(findings):
    got = [(f["finding"], f["kind"], f["outcome"], f["flagged"], f["status"])
           for f in sorted(findings, key=lambda f: f["finding"])]
    assert got == [("CAT-1", "region", "shortcut", True, "standing"),
                   ("HORSE-1", "region", "shortcut", True, "not audited"),
                   ("dog/channel/red", "channel", "cleared", False, None),
                   ("dog/drift", "drift", "drift", True, "new")], got
    horse = next(f for f in findings if f["finding"] == "HORSE-1")
    assert horse["evidence"] == "not audited: no 'horse' image in this run"
    cat = next(f for f in findings if f["finding"] == "CAT-1")
    assert cat["rows"] == 2 and cat["metrics"] == ["grid_js", "peak_excess"]


def test_candidate_tests_then_verdicts_judge_gather_and_give_status():
    """The cat's two overlapping regions share one test, the dog's red channel another; max_tests 2 leaves the
    fox's weaker candidate untested. The cat's shortcut matches the reference run's CAT-1 (standing, its id kept);
    the reference's horse, absent now, is not audited; the dog's drift row is a new drift finding.
    (One pipeline: each costs seconds.)"""
    classes = [{"class_name": name, "count": 20} for name in CLASS_NAMES] + [{"class_name": "horse", "count": 0}]
    with BeamTestPipeline() as p:
        rows = p | "Rows" >> beam.Create(ROWS_IN)
        tests = rows | CandidateTests(CLASS_NAMES, 16, max_tests=2)
        out = ((rows, p | "Figures" >> beam.Create(FIGURES_IN), tests, p | "Classes" >> beam.Create(classes))
               | Verdicts(CLASS_NAMES, 16, reference=REFERENCE, max_tests=2))
        tagged = [pcoll | f"Tag{tag}" >> beam.Map(lambda x, tag=tag: (tag, x))
                  for tag, pcoll in (("tests", tests), (ROWS, out[ROWS]), (FINDINGS, out[FINDINGS]))]
        assert_that(tagged | beam.Flatten(), check)      # one assert_that: each adds stages, and seconds


def check(tagged):
    """The three outputs, each by its own check."""
    equal_to([[CAT_TEST, DOG_TEST]])([x for tag, x in tagged if tag == "tests"])
    check_rows([x for tag, x in tagged if tag == ROWS])
    check_findings([x for tag, x in tagged if tag == FINDINGS])
