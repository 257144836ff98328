"""analysis/skew/candidates.py and drift.py: the candidate rows of a run, against the other classes and against a
reference run (no Beam)."""
import numpy as np
import pyarrow as pa
import pytest

from igaudit.transforms.analysis.skew import DEFAULT_THRESHOLDS, candidate_rows, class_skew_scores
from igaudit.transforms.analysis.skew.rows import TESTED
from igaudit.transforms.records import classes_schema, skew_schema

G = 8
CLASSES = ("circle", "cross", "square", "triangle")


def skew_rows(classes, reference=None, thresholds=None):
    return candidate_rows(classes, [], reference, None, thresholds)


def check_rows(rows):
    """Invariants every skew_rows output must satisfy."""
    assert rows == sorted(rows, key=lambda r: (r["group_by"], r["class_name"], r["metric"]))
    keys = [(r["group_by"], r["class_name"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))
    for r in rows:
        assert list(r) == skew_schema().names
        assert r["candidate"] == (r["score"] >= 1), r
        # metrics about where attribution sits are only candidates until the interventions decide them
        assert r["flagged"] == (r["candidate"] and r["metric"] not in TESTED), r
        assert isinstance(r["detail"], str) and r["detail"]
    table = pa.Table.from_pylist(rows, schema=skew_schema())
    assert table.num_rows == len(rows)
    return rows


def uniform_grid(rng, noise=0.05):
    g = np.full(G * G, 1.0 / (G * G)) * (1 + noise * rng.uniform(-1, 1, G * G))
    return g / g.sum()


def corner_grid(share=0.7):
    g = np.full((G, G), (1 - share) / (G * G - 4))
    g[:2, :2] = share / 4
    return g.ravel()


def class_row(name, grid, group_by="label", count=50, accuracy=0.9, confidence=0.8, border=0.12,
              predicted=None, **extra):
    row = {
        "group_by": group_by, "class_name": name, "count": count,
        "accuracy": accuracy if group_by == "label" else float("nan"),
        "mean_confidence": confidence, "mean_completeness_gap": 0.0, "mean_abs_completeness_gap": 0.0,
        "mean_relative_gap": 0.0, "mean_border_mass": border, "std_border_mass": 0.05,
        "mean_concentration": 0.1, "mean_entropy": 0.9, "mean_channel_shares": [1 / 3] * 3,
        "grid_size": G, "mean_grid": [float(v) for v in grid], "peak_share": [],
        "predicted_counts": predicted if predicted is not None else [(name, count)],
        "typical_images": [],
        # optional metrics (quality, object boxes): None when the run has none
        "mean_deletion_auc": None, "mean_insertion_auc": None, "mean_infidelity": None,
        "mean_in_box": None, "mean_pointing_hit": None,
    }
    assert set(row) == set(classes_schema().names)
    row.update(extra)
    return row


@pytest.fixture
def planted():
    """4 classes on an 8x8 grid; 'triangle' has 70% of its mass in the top-left 2x2 cells."""
    rng = np.random.default_rng(0)
    borders = {"circle": 0.12, "cross": 0.13, "square": 0.11, "triangle": 0.55}
    rows = []
    for name in CLASSES:
        grid = corner_grid() if name == "triangle" else uniform_grid(rng)
        rows.append(class_row(name, grid, border=borders[name]))
    return rows


def labelled_run(seed=1):
    """A plain run: near-uniform grids, similar border masses, mostly correct predictions (label + predicted)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, name in enumerate(CLASSES):
        other = CLASSES[(i + 1) % len(CLASSES)]
        rows.append(class_row(name, uniform_grid(rng), count=100, accuracy=0.9, border=0.12 + 0.01 * i,
                              predicted={name: 90, other: 10}))
        rows.append(class_row(name, uniform_grid(rng), group_by="predicted", count=100, border=0.12 + 0.01 * i))
    return rows


# --- against the dataset ------------------------------------------------------

def test_planted_corner_class_flagged(planted):
    rows = check_rows(skew_rows(planted))
    by = {(r["class_name"], r["metric"]): r for r in rows}
    assert {r["metric"] for r in rows} == {"grid_js", "border_z", "channel_shift"}  # no in_box without mean_in_box
    tri = by[("triangle", "grid_js")]
    assert tri["candidate"] and tri["value"] > DEFAULT_THRESHOLDS["grid_js"]
    assert tri["score"] == pytest.approx(tri["value"] / tri["threshold"])
    assert tri["reference"] is None
    # against the other classes' count-weighted mean grid: ~4/64 in the corner
    rest = np.average([np.asarray(r["mean_grid"]).reshape(G, G) for r in planted if r["class_name"] != "triangle"],
                      axis=0, weights=[r["count"] for r in planted if r["class_name"] != "triangle"])
    assert "top-left" in tri["detail"] and "triangle" in tri["detail"]
    assert "70%" in tri["detail"] and f"{100 * rest[:2, :2].sum():.0f}% in other classes' images" in tri["detail"]
    assert by[("triangle", "border_z")]["candidate"]
    assert "0.55" in by[("triangle", "border_z")]["detail"]
    for name in ("circle", "cross", "square"):
        assert not by[(name, "grid_js")]["candidate"], by[(name, "grid_js")]
        assert not by[(name, "border_z")]["candidate"], by[(name, "border_z")]
    scores = class_skew_scores(rows)
    assert max(scores, key=scores.get) == ("label", "triangle")
    assert all(scores[("label", n)] < 1 for n in ("circle", "cross", "square"))


def test_each_class_is_compared_with_the_others_count_weighted(planted):
    light = [dict(r, count=1) if r["class_name"] == "triangle" else dict(r, count=1000) for r in planted]
    heavy = [dict(r, count=1000) if r["class_name"] == "triangle" else dict(r, count=1) for r in planted]
    js_light = {r["class_name"]: r["value"] for r in skew_rows(light) if r["metric"] == "grid_js"}
    js_heavy = {r["class_name"]: r["value"] for r in skew_rows(heavy) if r["metric"] == "grid_js"}
    # the class itself is not in its contrast: however big it is, it differs from the others as much
    assert js_light["triangle"] == pytest.approx(js_heavy["triangle"])
    # the others' contrast holds the triangle, weighted by its count: a big triangle moves them all
    assert js_heavy["circle"] > 3 * js_light["circle"]


def test_border_z_needs_three_classes(planted):
    rows = check_rows(skew_rows(planted[:2]))
    assert {r["metric"] for r in rows} == {"grid_js", "channel_shift"}
    rows = check_rows(skew_rows(planted[:3]))
    assert sum(r["metric"] == "border_z" for r in rows) == 3


def test_groups_are_separate(planted):
    predicted = [dict(r, group_by="predicted", accuracy=float("nan")) for r in planted]
    rows = check_rows(skew_rows(planted + predicted))
    flagged = {(r["group_by"], r["class_name"]) for r in rows if r["candidate"]}
    assert flagged == {("label", "triangle"), ("predicted", "triangle")}
    pred_detail = next(r["detail"] for r in rows if r["group_by"] == "predicted" and r["metric"] == "grid_js"
                       and r["class_name"] == "triangle")
    assert "predicted 'triangle'" in pred_detail


def test_in_box_proposes_every_background_by_default_and_below_a_threshold_when_set(planted):
    shares = {"circle": 0.8, "cross": 0.6, "square": None, "triangle": 0.2}
    rows_in = [dict(r, mean_in_box=shares[r["class_name"]]) for r in planted]
    rows = check_rows(skew_rows(rows_in))
    in_box = {r["class_name"]: r for r in rows if r["metric"] == "in_box"}
    assert set(in_box) == {"circle", "cross", "triangle"}             # None = absent
    assert all(r["candidate"] for r in in_box.values())               # candidates are cheap: test them all
    assert in_box["triangle"]["candidate"] and "20%" in in_box["triangle"]["detail"]
    assert in_box["triangle"]["score"] == pytest.approx(DEFAULT_THRESHOLDS["in_box"] / 0.2)
    strict = {r["class_name"]: r for r in check_rows(skew_rows(rows_in, thresholds={"in_box": 0.5}))
              if r["metric"] == "in_box"}
    assert strict["triangle"]["candidate"] and not strict["circle"]["candidate"] and not strict["cross"]["candidate"]
    zero = check_rows(skew_rows([dict(rows_in[0], mean_in_box=0.0)] + rows_in[1:]))
    assert next(r for r in zero if r["metric"] == "in_box" and r["class_name"] == "circle")["candidate"]


def test_thresholds_override_and_validation(planted):
    rows = check_rows(skew_rows(planted, thresholds={"grid_js": 0.9, "border_z": 1000}))
    assert not any(r["flagged"] for r in rows)
    assert all(r["threshold"] == 0.9 for r in rows if r["metric"] == "grid_js")
    with pytest.raises(ValueError, match="grid_jsx"):
        skew_rows(planted, thresholds={"grid_jsx": 0.1})
    with pytest.raises(ValueError, match="border_z"):
        skew_rows(planted, thresholds={"border_z": -1})


def test_default_threshold_keys():
    assert set(DEFAULT_THRESHOLDS) == {"grid_js", "border_z", "in_box", "ref_grid_js", "ref_border_shift",
                                       "ref_accuracy_drop", "ref_confidence_shift", "ref_predicted_linf",
                                       "ref_predicted_js", "channel_shift", "cluster_excess", "peak_excess"}
    assert all(v > 0 for v in DEFAULT_THRESHOLDS.values())


def test_mixed_grid_sizes_in_one_run_skipped(planted):
    odd = dict(planted[0], grid_size=4, mean_grid=[1 / 16] * 16)
    rows = check_rows(skew_rows([odd] + planted[1:]))
    row = next(r for r in rows if r["class_name"] == odd["class_name"] and r["metric"] == "grid_js")
    assert row["value"] is None and not row["flagged"] and "4x4" in row["detail"]


# --- against a reference run --------------------------------------------------

def test_identical_runs_nothing_flagged():
    run = labelled_run()
    rows = check_rows(skew_rows(run, reference=[dict(r) for r in run]))
    assert not any(r["flagged"] for r in rows)
    ref_rows = [r for r in rows if r["metric"].startswith("ref_")]
    assert {r["metric"] for r in ref_rows} == {"ref_grid_js", "ref_border_shift", "ref_accuracy_drop",
                                               "ref_confidence_shift", "ref_predicted_linf", "ref_predicted_js"}
    assert all(abs(r["value"]) < 1e-9 for r in ref_rows)
    # predicted-distribution and accuracy metrics only for label rows
    assert not any(r["group_by"] == "predicted" and r["metric"] in ("ref_accuracy_drop", "ref_predicted_linf",
                                                                    "ref_predicted_js") for r in rows)


def test_accuracy_drop_and_prediction_shift_flag_that_class_only():
    reference = labelled_run()
    current = [dict(r) for r in reference]
    for r in current:
        if r["class_name"] == "triangle" and r["group_by"] == "label":
            r["accuracy"] = 0.6                                   # 0.9 -> 0.6
            r["predicted_counts"] = [("circle", 10), ("square", 30), ("triangle", 60)]   # pairs, not a dict
        if r["group_by"] == "predicted" and r["class_name"] in ("triangle", "square"):
            r["count"] += -30 if r["class_name"] == "triangle" else 30
    rows = check_rows(skew_rows(current, reference=reference))
    flagged = [r for r in rows if r["flagged"]]
    assert {(r["group_by"], r["class_name"]) for r in flagged} == {("label", "triangle")}
    by = {r["metric"]: r for r in rows if r["class_name"] == "triangle" and r["group_by"] == "label"}
    assert {"ref_accuracy_drop", "ref_predicted_linf"} <= {r["metric"] for r in flagged}
    drop = by["ref_accuracy_drop"]
    assert drop["value"] == pytest.approx(0.3) and drop["reference"] == pytest.approx(0.9)
    assert drop["score"] == pytest.approx(0.3 / DEFAULT_THRESHOLDS["ref_accuracy_drop"])
    assert "60%" in drop["detail"] and "90%" in drop["detail"]
    linf = by["ref_predicted_linf"]
    assert linf["value"] == pytest.approx(0.3)                  # 'square' share 0% -> 30% (and triangle 90 -> 60)
    assert "'square' for 30%" in linf["detail"] and "'triangle' for 60% (90%)" in linf["detail"]
    assert by["ref_predicted_js"]["flagged"]
    assert class_skew_scores(rows)[("label", "triangle")] == max(r["score"] for r in by.values())


def test_accuracy_improvement_not_flagged_and_signed_shifts():
    reference = labelled_run()
    current = [dict(r) for r in reference]
    for r in current:
        if r["class_name"] == "cross":
            r["accuracy"] = 1.0 if r["group_by"] == "label" else r["accuracy"]
            r["mean_border_mass"] = r["mean_border_mass"] - 0.25
            r["mean_confidence"] = r["mean_confidence"] + 0.15
    rows = check_rows(skew_rows(current, reference=reference))
    by = {(r["group_by"], r["metric"]): r for r in rows if r["class_name"] == "cross"}
    assert by[("label", "ref_accuracy_drop")]["value"] == pytest.approx(-0.1)
    assert not by[("label", "ref_accuracy_drop")]["flagged"]
    for group_by in ("label", "predicted"):
        border = by[(group_by, "ref_border_shift")]
        assert border["value"] == pytest.approx(-0.25) and border["flagged"]   # either direction counts
        assert border["score"] == pytest.approx(0.25 / DEFAULT_THRESHOLDS["ref_border_shift"])
        assert by[(group_by, "ref_confidence_shift")]["value"] == pytest.approx(0.15)
        assert by[(group_by, "ref_confidence_shift")]["flagged"]


def test_reference_grid_shift_described():
    reference = labelled_run()
    current = [dict(r, mean_grid=list(corner_grid())) if r["class_name"] == "square" and r["group_by"] == "label"
               else dict(r) for r in reference]
    rows = check_rows(skew_rows(current, reference=reference))
    row = next(r for r in rows if r["class_name"] == "square" and r["group_by"] == "label"
               and r["metric"] == "ref_grid_js")
    assert row["flagged"] and "top-left" in row["detail"] and "reference run" in row["detail"]


def test_grid_size_mismatch_across_runs_skipped():
    reference = labelled_run()
    current = [dict(r, grid_size=4, mean_grid=[1 / 16] * 16) for r in reference]
    rows = check_rows(skew_rows(current, reference=reference))
    grid = [r for r in rows if r["metric"] == "ref_grid_js"]
    assert len(grid) == len(reference)
    assert all(r["value"] is None and not r["flagged"] and "4x4" in r["detail"] and "8x8" in r["detail"]
               for r in grid)


def test_class_presence_rows():
    reference = labelled_run()
    current = [r for r in reference if r["class_name"] != "cross"]
    current.append(class_row("star", uniform_grid(np.random.default_rng(5)), count=7))
    rows = check_rows(skew_rows(current, reference=reference))
    presence = {(r["group_by"], r["class_name"]): r for r in rows if r["metric"] == "class_presence"}
    assert set(presence) == {("label", "cross"), ("predicted", "cross"), ("label", "star")}
    assert all(r["flagged"] for r in presence.values())
    assert presence[("label", "star")]["value"] == 7 and presence[("label", "star")]["reference"] == 0
    assert "none in the reference run" in presence[("label", "star")]["detail"]
    assert "none in this run" in presence[("label", "cross")]["detail"]
    # no other reference metric for a class missing on one side
    assert not any(r["class_name"] in ("cross", "star") and r["metric"].startswith("ref_") for r in rows)


def test_unlabelled_accuracy_nan_skipped():
    reference = labelled_run()
    current = [dict(r, accuracy=float("nan")) for r in reference]
    rows = check_rows(skew_rows(current, reference=reference))
    assert not any(r["metric"] == "ref_accuracy_drop" for r in rows)


def test_rows_deterministic_under_input_order():
    reference = labelled_run()
    current = labelled_run(seed=2)
    a = skew_rows(current, reference=reference)
    b = skew_rows(list(reversed(current)), reference=list(reversed(reference)))
    assert a == b


def test_empty_input():
    assert skew_rows([]) == []
    assert check_rows(skew_rows([], reference=[])) == []


def _partly_marked_classes(seed: int, mark, classes) -> list[dict]:
    """classes.parquet rows (ClassStatsFn) of (name, [marked?, ...]) classes on a 16x16 grid: each image's grid is
    noise and an object that moves around the middle, plus `mark(grid)` where marked."""
    from igaudit.transforms.aggregate import ClassStatsFn
    rng = np.random.default_rng(seed)
    size = 16

    def image_grid(marked):
        g = rng.gamma(2.0, 0.5, (size, size)) * 0.05
        y, x = rng.integers(5, 11, 2)
        g[y - 2:y + 2, x - 2:x + 2] += rng.uniform(0.5, 1.0)
        if marked:
            mark(g)
        return (g / g.sum()).ravel()

    fn = ClassStatsFn()
    rows = []
    for name, marked in classes:
        acc = fn.create_accumulator()
        for i, m in enumerate(marked):
            acc = fn.add_input(acc, {"label_index": 0, "correct": True, "confidence": 0.9, "completeness_gap": 0.0,
                                     "relative_gap": 0.0, "border_mass": 0.1, "concentration": 0.1, "entropy": 0.9,
                                     "channel_shares": [1.0], "grid": image_grid(m), "grid_size": size,
                                     "predicted_name": name, "image_id": f"{name}{i}"})
        rows.append({"group_by": "label", "class_name": name, **fn.extract_output(acc)})
    return rows


def test_a_mark_on_half_of_one_class_of_two_becomes_a_candidate():
    """Two classes of 30 images; 15 of class 'a' put most of their attribution on a corner mark, the rest of 'a'
    and all of 'b' on an object that moves around the middle. 'a''s mean grid is diluted; where its images peak
    is not: a candidate at the corner, with the region the interventions will test."""
    def corner(g):
        g[1:3, 13:15] += 3.0

    rows = _partly_marked_classes(0, corner, (("a", [True] * 15 + [False] * 15), ("b", [False] * 30)))
    found = [r for r in skew_rows(rows) if r["candidate"] and r["class_name"] == "a"]
    corner = [r for r in found if r["region_cells"] and r["region_cells"][0] <= 1 and r["region_cells"][3] >= 15]
    assert corner and corner[0]["metric"] == "peak_excess", [(r["metric"], r["region"]) for r in found]
    assert corner[0]["value"] > 0.4 and "of its images have their strongest attribution in" in corner[0]["detail"]
    assert not [r for r in skew_rows(rows) if r["candidate"] and r["class_name"] == "b"
                and r["metric"] == "peak_excess" and r["region_cells"][3] >= 15]


def test_a_block_on_an_image_edge_also_proposes_the_frame():
    """A border drawn round part of a class is often seen on one side only: the peak block on the bottom edge
    proposes the frame of its depth too (the interventions decide); a block in the middle proposes none."""
    from igaudit.transforms.analysis.skew.candidates import edge_frame
    assert edge_frame((15, 16, 3, 13), 16) == (0, 16, 0, 16, 1)        # a strip along the bottom edge
    assert edge_frame((10, 16, 0, 7), 16) == (0, 16, 0, 16, 2)         # a corner block: at most EDGE_DEPTH deep
    assert edge_frame((5, 9, 5, 9), 16) is None                        # touches no edge
    assert edge_frame((0, 16, 0, 16), 16) is None                      # the whole grid

    def bottom(g):
        g[15, 4:12] += 1.0

    rows = _partly_marked_classes(1, bottom, (("a", [True] * 15 + [False] * 15), ("b", [False] * 30),
                                              ("c", [False] * 30)))
    peaks = [r for r in skew_rows(rows) if r["metric"] == "peak_excess" and r["candidate"]]
    frames = [r for r in peaks if r["region_cells"] and len(r["region_cells"]) == 5]
    assert [(r["class_name"], r["region_cells"]) for r in frames] == [("a", [0, 16, 0, 16, 1])], \
        [(r["class_name"], r["region_cells"]) for r in peaks]
    assert "the frame is tested too" in frames[0]["detail"]
