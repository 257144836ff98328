"""analysis/skew/verdict.py: judge's four tests at and just past each threshold, the outcome rule of the module
docstring for every kind (the DECISIVE path, colour's frame), evidence_label's wording, and apply_verdicts."""
import itertools
import math

import pytest

from igaudit.transforms.analysis.skew import verdict as V
from igaudit.transforms.analysis.skew.interventions import plan_tests
from igaudit.transforms.analysis.skew.rows import skew_row

NAN = math.nan


@pytest.mark.parametrize("figures, test, passes", [
    # needed: drop >= NEEDED_DROP and >= NEEDED_RATIO x the control drop
    ({"drop": 0.2, "control_drop": 0.1}, "needed", True),
    ({"drop": 0.2, "control_drop": 0.10001}, "needed", False),
    ({"drop": 0.1999, "control_drop": 0.0}, "needed", False),
    ({"drop": 0.9, "control_drop": -0.3}, "needed", True),              # controls that help count as the floor
    ({"drop": 0.9, "control_drop": None}, "needed", False),
    ({"drop": NAN, "control_drop": 0.0}, "needed", False),
    # sufficient: kept_class - kept_other >= SUFFICIENT_GAP
    ({"kept_class": 0.3, "kept_other": 0.0}, "sufficient", True),
    ({"kept_class": 0.2999, "kept_other": 0.0}, "sufficient", False),
    ({"kept_class": 0.9, "kept_other": 0.6}, "sufficient", True),
    ({"kept_class": 0.9, "kept_other": 0.6001}, "sufficient", False),
    ({"kept_class": 1.0, "kept_other": NAN}, "sufficient", False),
    # transplanted: flip >= TRANSPLANT_FLIP and flip - control >= TRANSPLANT_GAP
    ({"transplant_flip": 0.5, "transplant_control": 0.1}, "transplanted", True),
    ({"transplant_flip": 0.4999, "transplant_control": 0.0}, "transplanted", False),
    ({"transplant_flip": 0.9, "transplant_control": 0.5}, "transplanted", True),
    ({"transplant_flip": 0.9, "transplant_control": 0.5001}, "transplanted", False),
    # repeating: repeat >= REPEAT and repeat - others >= REPEAT_GAP
    ({"stamp_repeat": 0.7, "stamp_others": 0.1}, "repeating", True),
    ({"stamp_repeat": 0.6999, "stamp_others": 0.0}, "repeating", False),
    ({"stamp_repeat": 0.7, "stamp_others": 0.1001}, "repeating", False),
    ({"stamp_repeat": 1.0, "stamp_others": None}, "repeating", False),
])
def test_each_test_at_and_around_its_thresholds(figures, test, passes):
    """Only the figures of one test are given: it passes or not; the others, their figures missing, fail."""
    assert V.judge(figures) == {t: passes and t == test for t in V.TESTS}


def test_colour_is_needed_when_undoing_the_cast_costs_the_class_more_than_other_classes():
    """The zoo's cast on all of a photo class (seed 1): undoing it costs 0.71, the same division costs other
    classes 0.43 of their own (each class a colour of its own): needed for colour (1.5 times), not by the region
    ratio (2 times)."""
    f = {"drop": 0.71, "control_drop": 0.43}
    assert V.judge(f, "channel")["needed"] and not V.judge(f, "region")["needed"]
    assert V.judge({"drop": 0.645, "control_drop": 0.43}, "channel")["needed"]
    assert not V.judge({"drop": 0.26, "control_drop": 0.23}, "channel")["needed"]   # a yellow patch's class, seed 0
    assert not V.judge({"drop": 0.1999, "control_drop": 0.0}, "channel")["needed"]


def test_a_control_drop_near_zero_counts_as_the_floor(monkeypatch):
    """A ratio to ~0 means nothing: with a lower NEEDED_DROP, a drop must still be twice CONTROL_FLOOR."""
    monkeypatch.setattr(V, "NEEDED_DROP", 0.01)
    assert not V.judge({"drop": 0.039, "control_drop": 0.0})["needed"]
    assert V.judge({"drop": 0.04, "control_drop": 0.0})["needed"]


def test_colour_repeats_only_on_content_as_varied_as_the_rest():
    at = {"stamp_repeat": 0.9, "stamp_others": 0.2}
    assert V.judge(at, "channel")["repeating"]
    over = {"stamp_repeat": 0.9, "stamp_others": 0.2001}
    assert not V.judge(over, "channel")["repeating"] and V.judge(over, "region")["repeating"]
    assert V.judge(over, "outside_box")["repeating"]


def docstring_rule(t, kind, decisive=False, frame=False, nothing_else=False, moves=False):
    """The rule as the module docstring states it, written out on its own (moves: pasted, the region moves
    STAMP_TRANSPLANT_GAP more of other classes' images than equal-area pastes)."""
    need, suff, trans, rep = (t[k] for k in V.TESTS)
    if kind == "region" and ((rep and need and (suff or trans or moves)) or (decisive and need and suff and trans)
                             or (nothing_else and need and trans)):
        return "shortcut"
    if kind == "outside_box" and need and suff and rep:
        return "shortcut"
    if kind == "channel" and rep and need:
        return "shortcut"
    if (need and suff) or trans:
        return "review"
    if kind == "channel" and need + suff + frame >= 2:
        return "review"
    return "cleared"


DECISIVE_FIGURES = {"drop": 0.6, "control_drop": 0.1, "kept_class": 0.6, "kept_other": 0.0, "transplant_flip": 0.6,
                    "transplant_control": 0.0, "stamp_repeat": 0.0, "stamp_others": 0.0}


# needed, sufficient and transplanted by margins under DECISIVE, removals elsewhere costing nothing
ALONE_FIGURES = {"drop": 0.3, "control_drop": 0.05, "kept_class": 0.6, "kept_other": 0.1, "transplant_flip": 0.5,
                 "transplant_control": 0.0}


# pasted, a jittered tag moved 35% of other images against 2% for equal-area pastes (the zoo, seed 1)
MOVES_FIGURES = {"transplant_flip": 0.35, "transplant_control": 0.05}


@pytest.mark.parametrize("kind, figures, decisive, frame, nothing_else, moves", [
    ("region", None, False, False, False, False), ("region", DECISIVE_FIGURES, True, False, False, True),
    ("region", ALONE_FIGURES, False, False, True, True),
    ("region", dict(ALONE_FIGURES, control_drop=0.0501), False, False, False, True),
    ("region", dict(ALONE_FIGURES, control_drop=NAN), False, False, False, True),
    ("region", dict(ALONE_FIGURES, kept_other=0.1001), False, False, False, True),
    ("region", dict(ALONE_FIGURES, transplant_control=0.1), False, False, True, True),
    ("region", MOVES_FIGURES, False, False, False, True),
    ("region", dict(MOVES_FIGURES, transplant_control=0.0501), False, False, False, False),
    ("region", dict(MOVES_FIGURES, transplant_control=NAN), False, False, False, False),
    ("outside_box", DECISIVE_FIGURES, False, False, False, False),
    ("outside_box", ALONE_FIGURES, False, False, False, False),
    ("channel", None, False, False, False, False), ("channel", MOVES_FIGURES, False, False, False, False),
    ("channel", {"stamp_repeat": 0.7}, False, True, False, False),
    ("channel", {"stamp_repeat": 0.6999}, False, False, False, False),
    ("channel", {"stamp_repeat": NAN}, False, False, False, False)])
def test_the_outcome_rule_on_every_combination_of_tests(kind, figures, decisive, frame, nothing_else, moves):
    for passed in itertools.product((False, True), repeat=4):
        t = dict(zip(V.TESTS, passed))
        assert V.outcome(t, kind, figures) == docstring_rule(t, kind, decisive, frame, nothing_else, moves), \
            (t, kind, figures)


def test_a_frame_repeating_counts_only_with_the_transplant():
    """The zoo's clean faces: the band round aligned faces (hair, forehead) is needed, sufficient and repeating,
    not transplanted: context, a review; a frame that is a mark also flips transplants: a shortcut. A block that
    is not a frame needs either."""
    t = {"needed": True, "sufficient": True, "transplanted": False, "repeating": True}
    assert V.outcome(t, "region", frame=True) == "review"
    assert V.outcome(t, "region", frame=False) == "shortcut"
    weaker = dict(t, sufficient=False)      # a repeating frame whose pastes move others, but short of transplanted
    assert V.outcome(weaker, "region", MOVES_FIGURES, frame=True) != "shortcut"
    assert V.outcome(weaker, "region", MOVES_FIGURES, frame=False) == "shortcut"
    assert V.outcome(dict(t, transplanted=True), "region", frame=True) == "shortcut"
    assert V.outcome(dict(t, sufficient=False, transplanted=True), "region", frame=True) == "shortcut"


def test_a_region_needed_alone_is_a_shortcut_without_repeating_or_decisive_margins():
    """The transplant rule: a region that is needed, kept alone says the class, and pasted into other classes'
    images flips them while equal-area pieces flip none, is a shortcut when nothing else of the image is needed
    (removals elsewhere cost <= ALONE_CONTROL) and kept alone it keeps the class by ALONE_KEPT; when other places
    cost too (an object's parts), or kept alone it keeps the class in fewer images (one part of the evidence),
    a review."""
    tests = V.judge(ALONE_FIGURES)
    assert tests == {"needed": True, "sufficient": True, "transplanted": True, "repeating": False}
    assert not V.decisive(tests, ALONE_FIGURES) and V.alone(tests, ALONE_FIGURES)
    assert V.outcome(tests, "region", ALONE_FIGURES) == "shortcut"
    assert V.evidence_label(tests, "region", ALONE_FIGURES) == \
        "needed, sufficient, transplanted, nothing else needed; not repeating"
    assert V.outcome(dict(tests, sufficient=False), "region", ALONE_FIGURES) == "shortcut"     # the gap decides
    spread = dict(ALONE_FIGURES, control_drop=0.06)
    assert V.judge(spread) == tests and V.outcome(tests, "region", spread) == "review"
    part = dict(ALONE_FIGURES, kept_class=0.59)
    assert V.judge(part) == tests and V.outcome(tests, "region", part) == "review"
    untransplanted = dict(ALONE_FIGURES, transplant_flip=0.49)
    assert V.outcome(V.judge(untransplanted), "region", untransplanted) == "review"


def test_where_kept_alone_cannot_tell_nothing_else_needed_does_not_decide():
    """The zoo's two-class set of '3's and '7's: a '3''s lower arc is needed (0.69, elsewhere -0.01) and pasted
    on a '7' makes a '3' (63%, equal areas 0%), but kept alone every image is called '3' (the model's leaning
    on near-blank inputs): its figures are those of a text tag on '3's (0.72, -0.02, 1.0 vs 0.70, 52% vs 1%),
    so neither is a shortcut by this path: a review."""
    for f in ({"drop": 0.69, "control_drop": -0.01, "kept_class": 1.0, "kept_other": 1.0, "transplant_flip": 0.63,
               "transplant_control": 0.0},
              {"drop": 0.72, "control_drop": -0.02, "kept_class": 1.0, "kept_other": 0.70, "transplant_flip": 0.52,
               "transplant_control": 0.01}):
        tests = V.judge(f)
        assert tests["needed"] and tests["transplanted"] and not tests["repeating"]
        assert not V.alone(tests, f) and V.outcome(tests, "region", f) == "review"


# --- apply_verdicts ---------------------------------------------------------------

CLASSES = ["cat", "dog"]


def row(name, metric, score=3.0, **extra):
    """A label row as the candidates make it (`rows.skew_row`)."""
    return skew_row("label", name, metric, 0.5, None, score, 0.1, f"{name} {metric}", **extra)


def test_apply_verdicts_judges_a_decisive_region_and_a_colour_cast():
    rows = [row("cat", "peak_excess", region_cells=[0, 2, 0, 2], region="the top-left 2x2 cells"),
            row("dog", "channel_shift", channel=2, region="the blue channel"),
            row("dog", "grid_js", score=0.4, region_cells=[4, 6, 4, 6])]
    before = [dict(r) for r in rows]
    tests, _ = plan_tests(rows, CLASSES, 8)
    region, colour = sorted(tests, key=lambda t: t.kind != "region")
    figures = {region.test_id: dict(DECISIVE_FIGURES, sample=12, accuracy=1.0, accuracy_removed=0.2,
                                    accuracy_control=1.0, not_a_column=7),
               colour.test_id: {"drop": 0.5, "control_drop": 0.05, "kept_class": 0.2, "kept_other": 0.1,
                                "transplant_flip": NAN, "transplant_control": NAN, "stamp_repeat": 0.8,
                                "stamp_others": 0.3, "accuracy": 0.9, "accuracy_removed": 0.3}}
    cat, dog, quiet = V.apply_verdicts(rows, tests, figures, CLASSES, 8)
    assert rows == before                                               # copies, the input untouched
    assert (cat["outcome"], cat["flagged"], cat["test_id"]) == ("shortcut", True, region.test_id)
    assert cat["evidence"] == "needed, sufficient, transplanted, each decisive; not repeating"
    assert cat["drop"] == 0.6 and cat["sample"] == 12 and "not_a_column" not in cat
    assert cat["detail"].startswith("cat peak_excess; cat images: masking the top-left 2x2 cells drops accuracy "
                                    "1.00 → 0.20 (probability −0.60)")
    # colour: needed and the frame carries the channel, not sufficient: a review, never cleared
    assert (dog["outcome"], dog["flagged"]) == ("review", False)
    assert dog["evidence"] == "needed; not sufficient, not repeating"
    assert dog["transplant_flip"] is None and dog["transplanted"] is False    # NaN: a figure that does not apply
    assert "undoing the class's colour cast drops accuracy 0.90 → 0.30" in dog["detail"]
    assert quiet == rows[2] and quiet is not rows[2]


def test_apply_verdicts_reads_a_frame_from_its_cells():
    """A frame (cells with a depth) that is needed, sufficient and repeating but not transplanted is a review; a
    block with the same figures is a shortcut."""
    rows = [row("cat", "border_z", region_cells=[0, 8, 0, 8, 1], region="the frame"),
            row("dog", "peak_excess", region_cells=[0, 2, 0, 2], region="the top-left 2x2 cells")]
    tests, _ = plan_tests(rows, CLASSES, 8)
    assert len(tests) == 2 and sorted(len(t.cells) for t in tests) == [4, 5]
    f = {"drop": 0.5, "control_drop": 0.1, "kept_class": 0.9, "kept_other": 0.1, "transplant_flip": 0.1,
         "transplant_control": 0.0, "stamp_repeat": 0.9, "stamp_others": 0.0, "accuracy": 0.9,
         "accuracy_removed": 0.3, "accuracy_control": 0.9, "sample": 10}
    frame, block = V.apply_verdicts(rows, tests, {t.test_id: f for t in tests}, CLASSES, 8)
    assert frame["evidence"] == block["evidence"] == "needed, sufficient, repeating; not transplanted"
    assert (frame["outcome"], block["outcome"]) == ("review", "shortcut")


def test_apply_verdicts_says_why_a_candidate_went_untested():
    rows = [row("horse", "grid_js", region_cells=[0, 2, 0, 2]), row("cat", "border_z"),
            row("dog", "ref_predicted_js")]
    horse, cat, drift = V.apply_verdicts(rows, [], {}, CLASSES, 8)
    assert horse["evidence"] == "untested: 'horse' is not one of the model's classes"
    assert horse["detail"] == "horse grid_js; not tested: 'horse' is not one of the model's classes"
    assert cat["evidence"] == "untested: no region with excess attribution to test" and not cat["flagged"]
    assert horse["outcome"] is None and cat["outcome"] is None
    assert drift["flagged"] and drift["evidence"] == "drift: a change since the reference run (no intervention)"


def test_a_needed_stamp_that_moves_transplants_is_a_shortcut():
    """The zoo's jittered text on photos (seed 1): needed (0.38), repeating (0.92 vs 0.03), kept alone 0.10 vs 0.0,
    pasted at the region's fixed box 35% vs 2% (a tag that jitters is cut by the box): short of transplanted, a
    copied pattern the model needs that moves other images when pasted: a shortcut. Without repeating, the same
    figures are not one."""
    f = {"drop": 0.38, "control_drop": -0.0, "kept_class": 0.1, "kept_other": 0.0, "transplant_flip": 0.35,
         "transplant_control": 0.02, "stamp_repeat": 0.92, "stamp_others": 0.03}
    tests = V.judge(f)
    assert tests == {"needed": True, "sufficient": False, "transplanted": False, "repeating": True}
    assert V.moves(f) and V.outcome(tests, "region", f) == "shortcut"
    assert V.evidence_label(tests, "region", f) == \
        "needed, repeating, moves transplants; not sufficient, not transplanted"
    assert V.outcome(dict(tests, repeating=False), "region", f) == "cleared"
    assert V.outcome(tests, "region", dict(f, transplant_flip=0.31)) != "shortcut"
