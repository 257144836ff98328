"""analysis/skew/rows.py: the skew row (candidate == score >= 1, flagged only for untested metrics), thresholds and
their validation, grids read from class rows, the group's mean grid, region fields, skipped rows, class scores."""
import math

import numpy as np
import pytest

from igaudit.transforms.analysis.skew import rows as R
from igaudit.transforms.records import skew_schema


def test_metric_tables_agree():
    """Dataset metrics are all decided by an intervention, reference metrics never; every metric a row can carry
    that is scored against a threshold has a default."""
    assert set(R.TESTED.values()) == {"region", "outside_box", "channel"}
    assert set(R.DATASET_METRICS) <= set(R.TESTED) and set(R.DATASET_METRICS) <= set(R.DEFAULT_THRESHOLDS)
    assert not set(R.REFERENCE_METRICS) & set(R.TESTED)
    assert set(R.REFERENCE_METRICS) - set(R.DEFAULT_THRESHOLDS) == {"class_presence"}
    assert R.CHANNEL_NAMES == ("red", "green", "blue")


@pytest.mark.parametrize("raw, expected", [(None, None), ("abc", None), (float("nan"), None), (math.inf, None),
                                           ([1], None), ("2.5", 2.5), (np.float32(0.5), 0.5), (3, 3.0)])
def test_finite(raw, expected):
    assert R.finite(raw) == expected


def test_subject_names_the_grouping():
    assert R.subject_of("label", "cat") == "class 'cat'"
    assert R.subject_of("predicted", 3) == "images predicted '3'"


@pytest.mark.parametrize("score, candidate", [(1.0, True), (0.999999, False), (7.5, True), (0.0, False)])
def test_a_row_is_a_candidate_exactly_when_its_score_reaches_one(score, candidate):
    for metric in ("grid_js", "ref_grid_js"):
        r = R.skew_row("label", "a", metric, 0.3, None, score, 0.1, "d")
        assert r["candidate"] is candidate
        assert r["flagged"] is (candidate and metric == "ref_grid_js")      # a proposal until tested


def test_skew_row_fills_every_column_and_casts_numbers():
    r = R.skew_row("predicted", "a", "channel_shift", np.float32(0.25), 1, np.int64(2), 1, "detail",
                   channel=0, region="the red channel")
    assert list(r) == skew_schema().names
    assert (r["value"], r["reference"], r["score"], r["threshold"]) == (0.25, 1.0, 2.0, 1.0)
    assert all(type(r[k]) is float for k in ("value", "reference", "score", "threshold"))
    assert r["channel"] == 0 and r["region"] == "the red channel" and r["detail"] == "detail"
    assert r["outcome"] is None and r["test_id"] is None and r["needed"] is None     # intervention columns empty
    assert R.skew_row("label", "a", "grid_js", None, None, 0, 0.1, "d")["value"] is None


def test_skipped_rows_keep_the_reason_and_never_propose():
    r = R.skipped("predicted", "b", "ref_grid_js", 0.1, "no mean grid")
    assert r["value"] is None and r["score"] == 0.0 and r["threshold"] == 0.1
    assert not r["candidate"] and not r["flagged"]
    assert r["detail"] == "images predicted 'b': not compared: no mean grid"


def test_resolve_thresholds_overrides_and_validates():
    t = R.resolve_thresholds({"grid_js": 2, "border_z": None, "in_box": "0.5"})
    assert t["grid_js"] == 2.0 and type(t["grid_js"]) is float
    assert t["border_z"] == R.DEFAULT_THRESHOLDS["border_z"]                 # None keeps the default
    assert t["in_box"] == 0.5 and set(t) == set(R.DEFAULT_THRESHOLDS)
    assert R.resolve_thresholds(None) == R.DEFAULT_THRESHOLDS and R.DEFAULT_THRESHOLDS["grid_js"] == 0.1
    for bad in (0, -0.1, math.nan, math.inf, True, "x"):
        with pytest.raises(ValueError, match="analysis.thresholds.grid_js: must be a positive number"):
            R.resolve_thresholds({"grid_js": bad})
    with pytest.raises(ValueError, match="unknown threshold; known: border_z, channel_shift"):
        R.resolve_thresholds({"gridjs": 0.1})


def test_grid_of_normalises_and_says_why_not():
    g, size, why = R.grid_of({"mean_grid": [1, 2, 3, 4]})                   # size from a square count
    assert size == 2 and why is None and g.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert R.grid_of({"mean_grid": [1] * 9, "grid_size": 2})[2] == "mean grid has 9 values, not grid_size^2"
    assert R.grid_of({"mean_grid": [1, 2, 3]})[::2] == (None, "mean grid has 3 values, not grid_size^2")
    assert R.grid_of({"mean_grid": [], "grid_size": 4}) == (None, 4, "no mean grid")
    assert R.grid_of({"grid_size": 4}) == (None, 4, "no mean grid")
    g, _, why = R.grid_of({"mean_grid": [0, 0, 0, 0], "grid_size": 2})
    assert g is None and why.startswith("mean grid unusable (") and "positive total mass" in why
    assert R.grid_of({"mean_grid": [1, -1, 1, 1]})[0] is None


def grid_row(grid, count):
    return {"mean_grid": list(grid), "grid_size": int(round(math.sqrt(len(grid)))), "count": count}


def test_group_grid_is_the_count_weighted_mean_of_the_commonest_size():
    rows = [grid_row([1, 0, 0, 0], 3), grid_row([0, 0, 0, 5], 1), grid_row([1] * 9, 2)]
    g, size = R.group_grid(rows)
    assert size == 2 and g.tolist() == pytest.approx([0.75, 0, 0, 0.25])
    # the 3x3 grid now has more images, but is alone: no group grid
    assert R.group_grid(rows[:2] + [grid_row([1] * 9, 5)]) == (None, 3)
    # a tie of images: the smaller size; counts of 0 weigh as equals
    g, size = R.group_grid([grid_row([1, 0, 0, 0], 0), grid_row([0, 1, 0, 0], 0), grid_row([1] * 9, 2),
                            grid_row([0, 0, 0, 0], 9)])                       # an unusable grid is no vote
    assert size == 2 and g.tolist() == pytest.approx([0.5, 0.5, 0, 0])
    assert R.group_grid([]) == (None, 0) and R.group_grid([{"mean_grid": None}]) == (None, 0)


def test_region_fields_name_the_block_of_most_excess():
    g = np.ones((8, 8))
    g[:2, :2] = 10
    assert R.region_fields(g.ravel(), np.ones(64), 8) == {"region_cells": [0, 2, 0, 2],
                                                          "region": "the top-left 2x2 cells"}
    assert R.region_fields(np.ones(64), np.full(64, 3.0), 8) == {}          # the same shares: nowhere
    assert R.block_fields((0, 8, 0, 8, 1), 8) == {"region_cells": [0, 8, 0, 8, 1], "region": "the frame, 1 cell deep"}
    assert R.block_fields(None, 8) == {}


def score_row(name, metric, score, group_by="label"):
    return {"group_by": group_by, "class_name": name, "metric": metric, "score": score}


def test_class_skew_scores_take_each_class_best_and_ignore_missing_scores():
    rows = [score_row("a", "grid_js", 0.4), score_row("a", "ref_grid_js", 3.0), score_row("a", "border_z", None),
            score_row("b", "grid_js", float("nan")), score_row("a", "grid_js", 1.5, "predicted")]
    assert R.class_skew_scores(rows) == {("label", "a"): 3.0, ("label", "b"): 0.0, ("predicted", "a"): 1.5}
    assert R.class_skew_scores(rows, R.DATASET_METRICS) == {("label", "a"): 0.4, ("label", "b"): 0.0,
                                                            ("predicted", "a"): 1.5}
    assert R.class_skew_scores(rows, ["in_box"]) == {}
