"""analysis/skew/drift.py: drift_rows on hand-made class rows: each reference metric's value, reference column, score
and wording against known answers; class_presence; which rows each grouping gets and in what order."""
import math

import pytest

from igaudit.transforms.analysis.skew.drift import drift_rows
from igaudit.transforms.analysis.skew.rows import DEFAULT_THRESHOLDS, REFERENCE_METRICS
from igaudit.transforms.records import skew_schema


def cls(name, group_by="label", grid=(1, 1, 1, 1), border=0.2, accuracy=0.8, confidence=0.7, predicted=None,
        count=10):
    """A classes row with just what drift reads (2x2 grid)."""
    return {"group_by": group_by, "class_name": name, "count": count, "grid_size": 2,
            "mean_grid": list(grid) if grid is not None else None, "mean_border_mass": border,
            "accuracy": accuracy, "mean_confidence": confidence,
            "predicted_counts": predicted if predicted is not None else {name: count}}


def by_metric(rows, name="a", group_by="label"):
    return {r["metric"]: r for r in rows if r["class_name"] == name and r["group_by"] == group_by}


def test_rows_have_the_skew_schema_and_only_reference_metrics():
    rows = drift_rows([cls("a"), cls("a", "predicted")], [cls("a"), cls("a", "predicted")])
    assert rows and all(list(r) == skew_schema().names for r in rows)
    assert {r["metric"] for r in rows} <= set(REFERENCE_METRICS)


def test_label_rows_in_order_and_predicted_rows_without_accuracy_or_predictions():
    rows = drift_rows([cls("b", "predicted"), cls("a"), cls("a", "predicted")],
                      [cls("a", "predicted"), cls("b", "predicted"), cls("a")])
    assert [(r["group_by"], r["class_name"], r["metric"]) for r in rows] == [
        ("label", "a", "ref_grid_js"), ("label", "a", "ref_border_shift"), ("label", "a", "ref_accuracy_drop"),
        ("label", "a", "ref_confidence_shift"), ("label", "a", "ref_predicted_linf"),
        ("label", "a", "ref_predicted_js"),
        ("predicted", "a", "ref_grid_js"), ("predicted", "a", "ref_border_shift"),
        ("predicted", "a", "ref_confidence_shift"),
        ("predicted", "b", "ref_grid_js"), ("predicted", "b", "ref_border_shift"),
        ("predicted", "b", "ref_confidence_shift")]


def test_disjoint_grids_are_one_bit_apart():
    rows = drift_rows([cls("a", grid=(1, 0, 0, 0))], [cls("a", grid=(0, 0, 0, 3))])
    g = by_metric(rows)["ref_grid_js"]
    assert g["value"] == pytest.approx(1.0) and g["reference"] is None
    assert g["score"] == pytest.approx(1.0 / DEFAULT_THRESHOLDS["ref_grid_js"])
    assert g["candidate"] and g["flagged"] and g["detail"].endswith("(JS 1.000 bits)")
    same = by_metric(drift_rows([cls("a", grid=(2, 2, 2, 2))], [cls("a")]))["ref_grid_js"]
    assert same["value"] == pytest.approx(0.0) and not same["flagged"]   # grids normalised first


def test_the_reference_column_gives_back_the_current_value():
    """now = reference + value for the shifts, reference - value for the accuracy drop."""
    cur = cls("a", border=0.35, accuracy=0.55, confidence=0.62)
    ref = cls("a", border=0.2, accuracy=0.8, confidence=0.7)
    m = by_metric(drift_rows([cur], [ref]))
    for metric, now in (("ref_border_shift", 0.35), ("ref_confidence_shift", 0.62)):
        assert m[metric]["reference"] + m[metric]["value"] == pytest.approx(now)
    drop = m["ref_accuracy_drop"]
    assert drop["reference"] - drop["value"] == pytest.approx(0.55)
    assert drop["value"] == pytest.approx(0.25) and drop["score"] == pytest.approx(2.5)
    assert m["ref_border_shift"]["detail"] == ("class 'a': mean border mass 0.35 vs 0.20 in the reference run "
                                               "(+0.15)")
    assert drop["detail"] == "class 'a': accuracy 55% vs 80% in the reference run (-25 points)"
    conf = m["ref_confidence_shift"]
    assert conf["value"] == pytest.approx(-0.08) and conf["score"] == pytest.approx(0.8) and not conf["flagged"]


@pytest.mark.parametrize("border, flagged", [(0.375, True), (0.125, True), (0.37, False), (0.13, False)])
def test_border_shift_scores_its_size_in_either_direction(border, flagged):
    """At a threshold of 0.125 (exact in binary) from 0.25: a shift of exactly the threshold is flagged."""
    rows = drift_rows([cls("a", border=border)], [cls("a", border=0.25)], {"ref_border_shift": 0.125})
    row = by_metric(rows)["ref_border_shift"]
    assert row["score"] == pytest.approx(abs(border - 0.25) / 0.125)
    assert row["flagged"] == flagged and row["candidate"] == flagged


def test_thresholds_divide_the_scores():
    t = {"ref_accuracy_drop": 0.5, "ref_border_shift": 0.05}
    m = by_metric(drift_rows([cls("a", border=0.3, accuracy=0.6)], [cls("a")], t))
    assert m["ref_accuracy_drop"]["score"] == pytest.approx(0.4) and m["ref_accuracy_drop"]["threshold"] == 0.5
    assert m["ref_border_shift"]["score"] == pytest.approx(2.0)
    assert m["ref_grid_js"]["threshold"] == DEFAULT_THRESHOLDS["ref_grid_js"]
    with pytest.raises(ValueError, match="unknown threshold"):
        drift_rows([cls("a")], [cls("a")], {"ref_grid": 0.1})


def test_predicted_class_distribution_distances_and_wording():
    """10 of 10 images predicted 'a' now, 5 'a' and 5 'b' then: L-inf 0.5, JS H(0.75, 0.25) - 1/2 bits."""
    m = by_metric(drift_rows([cls("a", predicted={"a": 10})], [cls("a", predicted=[("a", 5), ("b", 5)])]))
    linf, js = m["ref_predicted_linf"], m["ref_predicted_js"]
    expected_js = -0.75 * math.log2(0.75) - 0.25 * math.log2(0.25) - 0.5
    assert linf["value"] == pytest.approx(0.5) and linf["score"] == pytest.approx(5.0) and linf["reference"] is None
    assert js["value"] == pytest.approx(expected_js) and js["score"] == pytest.approx(expected_js / 0.05)
    change = "now predicted 'a' for 100% of its images (50% in the reference run), 'b' for 0% (50%)"
    assert linf["detail"] == f"class 'a': {change}"
    assert js["detail"] == (f"class 'a': predicted-class distribution {expected_js:.3f} bits from the reference run; "
                            f"{change}")


def test_same_shares_are_said_so_and_counts_in_any_form_compare():
    m = by_metric(drift_rows([cls("a", predicted=[{"key": "a", "value": 6}, {"key": "b", "value": 2}])],
                             [cls("a", predicted={"a": 30, "b": 10})]))
    assert m["ref_predicted_linf"]["value"] == pytest.approx(0.0)
    assert m["ref_predicted_linf"]["detail"] == "class 'a': same predicted-class shares as in the reference run"


def test_missing_figures_leave_their_rows_out_or_skipped():
    cur = cls("a", grid=None, border=float("nan"), accuracy=None, confidence="n/a", predicted={})
    m = by_metric(drift_rows([cur], [cls("a")]))
    assert set(m) == {"ref_grid_js"}
    g = m["ref_grid_js"]
    assert g["value"] is None and g["score"] == 0.0 and not g["candidate"]
    assert g["detail"] == "class 'a': not compared: no mean grid"
    ref_side = by_metric(drift_rows([cls("a")], [cls("a", grid=(1, 1, 1))]))["ref_grid_js"]
    assert ref_side["detail"] == "class 'a': not compared: mean grid has 3 values, not grid_size^2 in the reference run"


def test_a_class_in_one_run_only_is_a_presence_flag_and_nothing_else():
    rows = drift_rows([cls("new", count=1), cls("old", "predicted", count=4)],
                      [cls("gone", "predicted", count=3), cls("new", "predicted", count=2)])
    got = [(r["group_by"], r["class_name"], r["metric"], r["value"], r["reference"], r["score"], r["threshold"],
            r["flagged"]) for r in rows]
    assert got == [("label", "new", "class_presence", 1.0, 0.0, 1.0, 1.0, True),
                   ("predicted", "gone", "class_presence", 0.0, 3.0, 1.0, 1.0, True),
                   ("predicted", "new", "class_presence", 0.0, 2.0, 1.0, 1.0, True),
                   ("predicted", "old", "class_presence", 4.0, 0.0, 1.0, 1.0, True)]
    assert rows[0]["detail"] == "class 'new': 1 image in this run, none in the reference run; not compared"
    assert rows[1]["detail"] == "images predicted 'gone': none in this run, 3 images in the reference run; not compared"
    assert drift_rows([], []) == []
