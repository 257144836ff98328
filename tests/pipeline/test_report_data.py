"""pipeline/report_data.py and the report's small helpers, without a run: the confusion table, which images a
class section shows, which comparisons moved, the audit trend, the picture sizes."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from igaudit.pipeline import report_data as data
from igaudit.pipeline.report import _trends, anchor, peak_cells
from igaudit.pipeline.report_pictures import hatch, shown_size
from igaudit.transforms.records import findings_schema, skew_schema


def test_confusion_is_classes_parquets_predicted_counts_square_and_in_class_order():
    classes = [{"group_by": "label", "class_name": "b", "accuracy": 0.5, "predicted_counts": [("a", 2), ("b", 2)]},
               {"group_by": "label", "class_name": "a", "accuracy": 1.0, "predicted_counts": [("a", 3)]},
               {"group_by": "predicted", "class_name": "a", "predicted_counts": None}]
    table = data.confusion(classes, ["a", "b", "c"])
    assert table["labels"] == ["a", "b"] and table["predicted"] == ["a", "b"]
    assert [[cell["count"] for cell in row["cells"]] for row in table["rows"]] == [[3, 0], [2, 2]]
    assert [row["total"] for row in table["rows"]] == [3, 4]
    assert table["worst"] == ("b", "a", 2, 4)


def test_largest_confusion_names_only_a_label_the_model_has_as_a_class():
    # labels "cat" / "dog" are not among the model's classes: every image is "off the diagonal", none confused
    classes = [{"group_by": "label", "class_name": "cat", "accuracy": None, "predicted_counts": [("breed0", 2)]},
               {"group_by": "label", "class_name": "dog", "accuracy": None, "predicted_counts": [("breed1", 3)]}]
    table = data.confusion(classes, ["breed0", "breed1"])
    assert table["worst"] is None
    assert table["pairs_total"] == 2                              # the table still shows them
    classes.append({"group_by": "label", "class_name": "breed1", "accuracy": 0.5,
                    "predicted_counts": [("breed0", 1), ("breed1", 1)]})
    assert data.confusion(classes, ["breed0", "breed1"])["worst"] == ("breed1", "breed0", 1, 2)


def _cols(n=10):
    labels = np.array(["x"] * n, object)
    predicted = np.array(["x"] * (n - 3) + ["y"] * 3, object)
    return {"image_id": np.array([f"i{k}" for k in range(n)], object), "uri": np.array(["u"] * n, object),
            "label": labels, "predicted_name": predicted, "confidence": np.linspace(0.1, 1.0, n),
            "outlier_score": np.arange(n, dtype=float)[::-1], "predicted_outlier_score": np.arange(n, dtype=float)}


def test_a_class_shows_typical_atypical_misclassified_and_unsure_images():
    picked = data.pick_images(_cols(), "label", "x", per_kind=2)
    ids = {kind: [r["image_id"] for r in rows] for kind, rows in picked.items()}
    assert ids["typical"] == ["i9", "i8"]          # lowest outlier score
    assert ids["atypical"] == ["i0", "i1"]         # highest
    assert ids["misclassified"] == ["i9", "i8"]    # predicted y, most confident first
    assert ids["unsure"] == ["i0", "i1"]
    by_prediction = data.pick_images(_cols(), "predicted", "y", per_kind=2)
    assert [r["image_id"] for r in by_prediction["typical"]] == ["i7", "i8"]
    assert by_prediction["typical"][0]["outlier"] == 7.0
    assert data.pick_images(_cols(), "label", "nothing") == {kind: [] for kind, _ in data.KINDS}


def test_image_columns_keep_one_row_per_image():
    table = pa.table({c: [f"{c}1", f"{c}1", f"{c}2"] if c == "image_id" else [1.0, 2.0, 3.0]
                      for c in ("image_id", "confidence")})
    cols = data.image_columns(table)
    assert list(cols["image_id"]) == ["image_id1", "image_id2"] and list(cols["confidence"]) == [1.0, 3.0]


def test_moved_comparisons_and_helpers():
    assert data.moved({"flagged": True, "score": 0.0}) and data.moved({"flagged": False, "score": 0.6})
    assert not data.moved({"flagged": False, "score": 0.1}) and not data.moved({"flagged": False, "score": None})
    assert anchor("label", "a b/c", 2) == "label-a_b_c-c2"
    grid = np.zeros((4, 4))
    grid[0, 1], grid[2, 3] = 0.7, 0.3
    assert peak_cells(grid, 2) == "(1, 2) 70%, (3, 4) 30%"
    assert shown_size(64, 64) == (128, 128) and shown_size(224, 112) == (160, 80) and shown_size(8, 8) == (16, 16)
    striped = hatch(np.zeros((8, 8, 3), np.uint8), (0, 2, 8, 6))
    assert striped[2:6].max() == 0 and striped[:2].max() > 0 and striped[6:].max() > 0


def _findings(path, attending):
    row = {"finding": "t/region/r1-2c1-2", "class_name": "t", "kind": "region", "outcome": "shortcut",
           "flagged": True, "attending": attending, "class_count": 40}
    pq.write_table(pa.Table.from_pylist([{f.name: row.get(f.name) for f in findings_schema()}], findings_schema()),
                   path)
    return row


def test_an_audit_run_plots_each_shortcut_over_the_stored_runs(tmp_path):
    """By finding id: the share of its class's images that look at its region, run by run."""
    for name, attending in (("run=20260101T000000.000Z", 2), ("run=20260201T000000.000Z", 4)):
        (tmp_path / name).mkdir()
        _findings(tmp_path / name / "findings.parquet", attending)
        (tmp_path / name / "_SUCCESS").write_text("x")
    current = tmp_path / "run=20260301T000000.000Z"
    current.mkdir()
    row = _findings(current / "findings.parquet", 8)
    trends = _trends(str(current), [row])
    assert len(trends) == 1 and trends[0]["uri"].startswith("data:image/png;base64,")
    assert [v for _, v in trends[0]["values"]] == [0.05, 0.1, 0.2]
    assert _trends(str(tmp_path / "plain"), [row]) == []      # not an audit's run: no trend


def test_trend_axes_name_each_run_by_its_time():
    from igaudit.pipeline.report_plots import _run_time
    assert _run_time("run=20260301T120501.123Z") == "2026-03-01 12:05:01"
    assert _run_time("mine") == "mine"


def test_beyond_the_matrix_limit_the_confusions_are_a_list_largest_first(monkeypatch):
    monkeypatch.setattr(data, "MATRIX_CLASSES", 2)
    classes = [{"group_by": "label", "class_name": "a", "accuracy": 0.5, "predicted_counts": [("a", 2), ("c", 2)]},
               {"group_by": "label", "class_name": "b", "accuracy": 0.25, "predicted_counts": [("a", 3), ("b", 1)]}]
    table = data.confusion(classes, ["a", "b", "c"])
    assert not table["matrix"] and all(row["cells"] == [] for row in table["rows"])
    assert [(p["label"], p["predicted"], p["count"], p["total"]) for p in table["pairs"]] == \
        [("b", "a", 3, 4), ("a", "c", 2, 4)]
    assert [(r["label"], r["correct"], r["total"]) for r in table["rows"]] == [("a", 2, 4), ("b", 1, 4)]
    assert table["worst"] == ("b", "a", 3, 4)


def test_a_run_that_attributed_nothing_still_gets_a_report_that_says_why(tmp_path):
    from igaudit.pipeline.config import from_dict
    from igaudit.pipeline.report import SECTIONS, render_report
    from igaudit.transforms.records import REJECTED_SCHEMA, classes_schema, clusters_schema
    for name, schema in (("classes", classes_schema()), ("clusters", clusters_schema()), ("skew", skew_schema()),
                         ("rejected", REJECTED_SCHEMA)):
        pq.write_table(schema.empty_table(), tmp_path / f"{name}.parquet")
    cfg = from_dict({"input": {"pattern": str(tmp_path / "none" / "*.png")}, "output": {"dir": str(tmp_path)}})
    html = render_report(str(tmp_path), {
        "status": "failed", "reason": "nothing was attributed", "warnings": [], "accuracy": None,
        "config": cfg.to_dict(), "class_names": ["a"], "beam_args": [], "versions": {}, "reference": None,
        "change": "no reference run: no flags", "counts": {"matched": 2, "attributed": 0, "rejected": 2},
        "timings": {}})
    assert "This run failed:</b> nothing was attributed" in html
    assert all(f"id={s}" in html for s, _ in SECTIONS if s != "comparison")

