"""transforms/skew.py: FlagSkew on TestPipeline: tiny class and cluster rows become the candidate rows of
`analysis.skew.candidate_rows` (class metrics, the clusters' excess, drift, re-tests), thresholds, grid and border
passed through; only drift rows flagged."""
import math

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from igaudit.transforms.analysis.skew import candidate_rows
from igaudit.transforms.skew import FlagSkew

UNIFORM = [1.0] * 16
CORNER = [1.0] + [0.0] * 15          # all of 'c''s attribution in the top-left cell of a 4x4 grid


def cls(name, grid, count, border, accuracy=0.9):
    return {"group_by": "label", "class_name": name, "count": count, "grid_size": 4, "mean_grid": grid,
            "mean_border_mass": border, "accuracy": accuracy}


CLASSES = [cls("a", UNIFORM, 100, 0.1), cls("b", UNIFORM, 100, 0.12), cls("c", CORNER, 10, 0.5)]
CLUSTERS = [{"group_by": "label", "class_name": "a", "cluster": k, "size": n, "share": n / 100, "grid_size": 4,
             "mean_grid": grid, "region": f"cluster {k}"}
            for k, n, grid in ((0, 80, [1 / 16] * 16), (1, 20, [0.0] * 15 + [1.0]))]


def key(r):
    return r["class_name"], r["cluster"], r["metric"], r["candidate"], r["flagged"]


FINDING = {"finding": "b/region/r1-2c1-2", "flagged": True, "kind": "region", "region_cells": [0, 2, 0, 2],
           "grid_size": 8, "group_by": "label", "class_name": "b", "region": "the top-left 2x2 cells"}
EXPECTED = sorted({(name, None, metric, False, False) for name in "abc"
                   for metric in ("border_z", "grid_js", "ref_accuracy_drop", "ref_border_shift", "ref_grid_js")}
                  - {("c", None, "border_z", False, False), ("c", None, "ref_accuracy_drop", False, False)}
                  | {("c", None, "border_z", True, False), ("c", None, "ref_accuracy_drop", True, True),
                     ("a", 0, "cluster_excess", False, False), ("a", 1, "cluster_excess", True, False),
                     ("b", None, "retest_region", True, False)}, key=str)


def check(rows):
    by = {(r["class_name"], r["cluster"], r["metric"]): r for r in rows}
    js = by[("c", None, "grid_js")]
    # JS of one cell against 16 equal ones: H(17/32, 1/32 x 15) - 2 bits, under the 0.9 threshold given
    assert js["value"] == pytest.approx(17 / 32 * math.log2(32 / 17) + 15 / 32 * 5 - 2)
    assert js["threshold"] == 0.9 and js["region_cells"] == [0, 1, 0, 1]
    assert all(r["region_cells"] == [0, 4, 0, 4, 2] for r in rows if r["metric"] == "border_z")   # border 0.5
    assert by[("a", 1, "cluster_excess")]["region_cells"] == [3, 4, 3, 4]
    retest = by[("b", None, "retest_region")]
    assert retest["region_cells"] == [0, 4, 0, 4] and "finding b/region/r1-2c1-2" in retest["detail"]
    drop = by[("c", None, "ref_accuracy_drop")]
    assert drop["value"] == pytest.approx(0.4) and drop["reference"] == pytest.approx(0.9)


def test_flag_skew_proposes_candidates_flags_only_drift_and_re_tests_the_reference_findings():
    """'c' puts all its attribution in a corner and on the border, a cluster of 'a' in the opposite corner:
    candidates (border_z, cluster_excess), never flags; a grid_js threshold of 0.9 leaves 'c''s corner (0.83 bits)
    below it; border 0.5 makes border_z's frame 2 cells deep. 'c' lost 40 accuracy points since the reference run:
    a drift flag. The reference run's shortcut on 'b' (an 8x8 grid) is re-tested on this run's 16x16 grid. The rows
    are candidate_rows' on the same arguments. (One pipeline: each costs seconds.)"""
    current = [dict(c, accuracy=0.5) if c["class_name"] == "c" else c for c in CLASSES]
    kwargs = {"reference_classes": CLASSES, "reference_findings": [FINDING], "thresholds": {"grid_js": 0.9},
              "grid": 16, "border": 0.5}
    expected_rows = candidate_rows(current, CLUSTERS, CLASSES, [FINDING], {"grid_js": 0.9}, 16, 0.5)

    def matches(got):
        equal_to(expected_rows)(got)
        equal_to(EXPECTED)([key(r) for r in got])
        check(got)

    with BeamTestPipeline() as p:
        rows = (p | "Classes" >> beam.Create(current), p | "Clusters" >> beam.Create(CLUSTERS)) | FlagSkew(**kwargs)
        assert_that(rows, matches)

