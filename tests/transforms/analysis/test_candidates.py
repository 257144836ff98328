"""analysis/candidates.py: candidate rows -> intervention tests (shared by rows proposing the same edit) -> verdicts."""
import math

from igaudit.transforms.analysis.candidates import apply_verdicts, intervention_tests
from igaudit.transforms.analysis.evidence import FIGURES
from igaudit.transforms.records import skew_schema

CLASSES = ["circle", "square", "triangle"]


def row(name, metric, score=2.0, **extra):
    r = dict.fromkeys(skew_schema().names)
    r.update(group_by="label", class_name=name, metric=metric, score=score, candidate=score >= 1,
             flagged=score >= 1 and metric.startswith("ref_"), detail=f"{name}: {metric}", **extra)
    return r


def figures(**values):
    f = dict.fromkeys(FIGURES, math.nan)
    f.update(sample=40, other_sample=40, accuracy=0.9, accuracy_removed=0.1, accuracy_control=0.9, confidence=0.9,
             drop=0.7, control_drop=0.01, kept_class=0.95, kept_other=0.1, stamp_repeat=0.95, stamp_others=0.0,
             transplant_flip=0.6)
    f.update(values)
    return f


def test_rows_proposing_the_same_edit_share_one_test():
    cells = [0, 2, 0, 2]
    rows = [row("triangle", "grid_js", region_cells=cells, region="the top-left 2x2 cells"),
            row("triangle", "border_z", region_cells=cells, region="the top-left 2x2 cells"),
            row("triangle", "cluster_excess", cluster=1, region_cells=cells, region="the top-left 2x2 cells"),
            row("circle", "channel_shift", channel=0, region="the red channel"),
            row("square", "in_box", region="the background around the object box"),
            row("square", "grid_js", score=0.5, region_cells=[4, 8, 4, 8]),          # not a candidate
            row("square", "ref_grid_js"),                                             # drift: no test
            row("elephant", "grid_js", region_cells=cells)]                           # not a model class
    tests = intervention_tests(rows, CLASSES, grid=16)
    assert [(t.class_name, t.kind, t.cluster) for t in tests] == [
        ("circle", "channel", None), ("square", "outside_box", None), ("triangle", "region", 1),
        ("triangle", "region", None)]     # sorted by test_id
    tri = next(t for t in tests if t.class_name == "triangle" and t.cluster is None)
    assert tri.cells == (0, 2, 0, 2) and tri.grid == 16 and tri.class_index == 2


def test_verdicts_flag_only_artifacts_and_say_why():
    cells = [0, 2, 0, 2]
    rows = [row("triangle", "grid_js", region_cells=cells, region="the top-left 2x2 cells"),
            row("square", "grid_js", region_cells=[4, 8, 4, 8], region="the centre 4x4 cells"),
            row("circle", "grid_js", region_cells=[0, 1, 0, 16], region="the top row"),
            row("square", "ref_accuracy_drop")]
    tests = intervention_tests(rows, CLASSES, grid=16)
    found = {t.test_id: figures() if t.class_name == "triangle" else figures(stamp_repeat=0.1)
             for t in tests if t.class_name != "circle"}          # circle's test ran on no images
    out = apply_verdicts(rows, tests, found, CLASSES)
    tri, square, circle, drift = out
    assert tri["flagged"] and tri["evidence"] == "needed, sufficient, stamped" and tri["needed"] is True
    assert tri["drop"] == 0.7 and tri["sample"] == 40 and "masking the top-left 2x2 cells" in tri["detail"]
    assert not square["flagged"] and square["stamped"] is False and square["evidence"] == "needed; sufficient; not stamped"
    assert not circle["flagged"] and circle["evidence"].startswith("untested")
    assert drift["flagged"] and drift["evidence"].startswith("drift")
    assert all(list(r) == skew_schema().names for r in out)
