"""analysis/skew/interventions.py + verdict.apply_verdicts: candidate rows -> intervention tests (one per distinct edit
of a class: overlapping regions, the same channel, the background) -> judged rows; which images a test re-scores."""
import math

from igaudit.transforms.analysis.skew.evidence import FIGURES
from igaudit.transforms.analysis.skew.interventions import attends, overlap, plan_tests, rescale_cells
from igaudit.transforms.analysis.skew.verdict import apply_verdicts
from igaudit.transforms.records import InterventionTest, skew_schema

CLASSES = ["circle", "square", "triangle"]


def row(name, metric, score=2.0, **extra):
    r = dict.fromkeys(skew_schema().names)
    r.update(group_by="label", class_name=name, metric=metric, score=score, candidate=score >= 1,
             flagged=score >= 1 and metric.startswith("ref_"), detail=f"{name}: {metric}", **extra)
    return r


def figures(**values):
    f = dict.fromkeys(FIGURES, math.nan)
    f.update(sample=40, other_sample=40, relying=36, accuracy=0.9, accuracy_removed=0.1, accuracy_control=0.9,
             confidence=0.9, drop=0.7, control_drop=0.01, kept_class=0.95, kept_other=0.1, transplant_flip=0.9,
             transplant_control=0.0, stamp_repeat=0.95, stamp_others=0.0, stamp_pixels=36, attending=36,
             class_count=40)
    f.update(values)
    return f


def test_rows_proposing_the_same_edit_share_one_test():
    cells = [0, 2, 0, 2]
    rows = [row("triangle", "grid_js", region_cells=cells, region="the top-left 2x2 cells"),
            row("triangle", "border_z", score=3.0, region_cells=[0, 3, 0, 2], region="the top-left 3x2 cells"),
            row("triangle", "cluster_excess", cluster=1, region_cells=cells, region="the top-left 2x2 cells"),
            row("triangle", "peak_excess", region_cells=[10, 12, 10, 12], region="elsewhere"),   # apart: its own
            row("circle", "channel_shift", channel=0, region="the red channel"),
            row("square", "in_box", region="the background around the object box"),
            row("square", "grid_js", score=0.5, region_cells=[4, 8, 4, 8]),          # not a candidate
            row("square", "ref_grid_js"),                                             # drift: no test
            row("elephant", "grid_js", region_cells=cells)]                           # not a model class
    tests, decided = plan_tests(rows, CLASSES, grid=16)
    assert [(t.class_name, t.kind, t.cells) for t in tests] == [
        ("circle", "channel", None), ("square", "outside_box", None), ("triangle", "region", (0, 3, 0, 2)),
        ("triangle", "region", (10, 12, 10, 12))]      # sorted by test_id; the strongest row places a test
    corner = tests[2]
    assert corner.grid == 16 and corner.class_index == 2
    assert {i for i, t in decided.items() if t == corner.test_id} == {0, 1, 2}
    assert set(decided) == {0, 1, 2, 3, 4, 5}
    assert plan_tests(rows, CLASSES, grid=16) == (tests, decided)        # planned and judged alike


def test_verdicts_judge_each_row_on_its_test_and_say_why():
    cells = [0, 2, 0, 2]
    rows = [row("triangle", "grid_js", region_cells=cells, region="the top-left 2x2 cells"),
            row("square", "grid_js", region_cells=[4, 8, 4, 8], region="the centre 4x4 cells"),
            row("circle", "grid_js", region_cells=[0, 1, 0, 16], region="the top row"),
            row("square", "ref_accuracy_drop")]
    tests, _ = plan_tests(rows, CLASSES, grid=16)
    found = {t.test_id: figures() if t.class_name == "triangle" else figures(stamp_repeat=0.1, transplant_flip=0.0)
             for t in tests if t.class_name != "circle"}          # circle's test ran on no images
    tri, square, circle, drift = apply_verdicts(rows, tests, found, CLASSES, 16)
    assert tri["flagged"] and tri["outcome"] == "shortcut" and tri["needed"] is True
    assert tri["evidence"] == "needed, sufficient, transplanted, repeating" and tri["test_id"]
    assert tri["drop"] == 0.7 and tri["sample"] == 40 and tri["attending"] == 36
    assert "masking the top-left 2x2 cells" in tri["detail"] and "the 36 triangle images that look there" in tri["detail"]
    assert not square["flagged"] and square["outcome"] == "review" and square["repeating"] is False
    assert square["evidence"] == "needed, sufficient; not transplanted, not repeating"
    assert not circle["flagged"] and circle["outcome"] is None and circle["evidence"].startswith("untested")
    assert drift["flagged"] and drift["evidence"].startswith("drift")


def test_a_region_test_uses_the_images_that_look_there():
    test = InterventionTest("t", "label", "a", 0, "region", "the top-left 2x2 cells", cells=(0, 2, 0, 2), grid=4)
    looking = [0.5, 0.1, 0, 0, 0.1, 0.1, 0, 0] + [0.2 / 8] * 8
    elsewhere = [0.0] * 8 + [1 / 8] * 8
    assert attends({"grid": looking, "grid_size": 4}, test)            # 0.7 of its mass on 1/4 of the frame
    assert not attends({"grid": elsewhere, "grid_size": 4}, test)
    assert not attends({"grid": [1 / 16] * 16, "grid_size": 4}, test)  # spread evenly: 1/4 is the area's share
    # a region on another grid size is read by its fraction of the frame
    fine = [0.0] * 64
    fine[0] = 1.0
    assert attends({"grid": fine, "grid_size": 8}, test)
    channel = InterventionTest("c", "label", "a", 0, "channel", "red", channel=0)
    assert attends({"grid": elsewhere, "grid_size": 4}, channel)


def test_frames_and_cells_on_other_grids():
    frame = (0, 16, 0, 16, 1)
    assert overlap(frame, frame, 16) == 1.0 and overlap(frame, (0, 1, 0, 16), 16) == 16 / 60   # a side of 60 cells
    assert rescale_cells((2, 4, 2, 4), 8, 16) == (4, 8, 4, 8)
    assert rescale_cells(frame, 16, 8) == (0, 8, 0, 8, 1)


def test_a_test_budget_keeps_re_tests_first_then_the_strongest_and_says_what_it_left():
    rows = [row("circle", "grid_js", score=5.0, region_cells=[0, 2, 0, 2]),
            row("square", "grid_js", score=9.0, region_cells=[0, 2, 0, 2]),
            row("triangle", "grid_js", score=2.0, region_cells=[0, 2, 0, 2]),
            row("triangle", "retest_region", score=1.0, region_cells=[8, 10, 8, 10])]
    tests, decided = plan_tests(rows, CLASSES, grid=16, max_tests=2)
    assert [(t.class_name, t.cells) for t in tests] == [("square", (0, 2, 0, 2)), ("triangle", (8, 10, 8, 10))]
    assert decided[0] is None and decided[2] is None
    judged = apply_verdicts(rows, tests, {t.test_id: figures() for t in tests}, CLASSES, 16, max_tests=2)
    assert judged[0]["evidence"].startswith("untested: beyond the first 2 tests (analysis.max_tests)")
    assert judged[1]["outcome"] == "shortcut" and judged[3]["outcome"] == "shortcut"
