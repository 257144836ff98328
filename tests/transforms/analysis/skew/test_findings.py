"""analysis/skew/findings.py: the judged skew rows that tested one edit of one class become one finding (whatever the
metrics and groupings), with a stable id and its rows beneath it; drift rows of a class become one drift finding."""
from igaudit.transforms.analysis.skew.findings import build_findings, finding_id
from igaudit.transforms.records import findings_schema, skew_schema


def judged(name, metric, outcome, group_by="label", score=2.0, cells=(0, 2, 0, 2), **extra):
    r = dict.fromkeys(skew_schema().names)
    r.update(group_by=group_by, class_name=name, metric=metric, score=score, candidate=True, outcome=outcome,
             flagged=outcome == "shortcut", region_cells=list(cells), region="the top-left 2x2 cells",
             evidence=f"{outcome} evidence", detail=f"{name} {metric} {group_by}", drop=0.5, needed=True, **extra)
    return r


def test_several_rows_become_one_finding():
    """A planted patch used to be "4 new flags": grid_js and border_z, by label and by predicted class."""
    rows = [judged("triangle", "grid_js", "shortcut"), judged("triangle", "border_z", "shortcut", score=5.0),
            judged("triangle", "grid_js", "shortcut", group_by="predicted"),
            judged("triangle", "border_z", "cleared", group_by="predicted", cells=(0, 3, 0, 2)),
            judged("triangle", "cluster_excess", "review", cluster=1),
            judged("triangle", "peak_excess", "cleared", cells=(12, 14, 12, 14)),      # elsewhere: its own finding
            judged("square", "grid_js", "cleared")]                                    # another class: its own
    findings, of = build_findings(rows, 16)
    assert [f["finding"] for f in findings] == ["square/region/r1-2c1-2", "triangle/region/r1-2c1-2",
                                                "triangle/region/r13-14c13-14"]
    patch = findings[1]
    assert patch["outcome"] == "shortcut" and patch["flagged"] and patch["rows"] == 5
    assert patch["groupings"] == ["label", "predicted"] and patch["clusters"] == [1]
    assert patch["metrics"] == ["border_z", "cluster_excess", "grid_js"]
    assert patch["detail"] == "triangle border_z label"            # the strongest row: a label shortcut, top score
    assert patch["grid_size"] == 16 and set(patch) == set(findings_schema().names)
    assert of[:5] == [patch["finding"]] * 5 and of[5] == "triangle/region/r13-14c13-14"


def test_drift_rows_of_a_class_are_one_drift_finding():
    drift = []
    for metric, group_by in (("ref_grid_js", "label"), ("ref_accuracy_drop", "label"), ("ref_grid_js", "predicted")):
        r = dict.fromkeys(skew_schema().names)
        r.update(group_by=group_by, class_name="cat", metric=metric, flagged=True, candidate=True, detail=metric)
        drift.append(r)
    quiet = dict(drift[0], flagged=False, candidate=False, metric="ref_border_shift")
    findings, of = build_findings(drift + [quiet], 16)
    assert [(f["finding"], f["kind"], f["flagged"], f["rows"]) for f in findings] == [("cat/drift", "drift", True, 3)]
    assert of == ["cat/drift"] * 3 + [None]


def test_ids_name_the_class_the_kind_and_where():
    assert finding_id("3", "region", (1, 4, 12, 15)) == "3/region/r2-4c13-15"
    assert finding_id("3", "region", (0, 16, 0, 16, 1)) == "3/region/r1-16c1-16f1"
    assert finding_id("coffee", "channel", channel=0) == "coffee/channel/red"
    assert finding_id("3", "outside_box") == "3/outside_box"


def test_a_block_inside_a_larger_block_around_the_same_mark_is_one_finding():
    """The demo's patch, seen as the top-left 3x2 cells by one metric and 4x4 by another: one finding."""
    rows = [judged("triangle", "grid_js", "shortcut", cells=(0, 3, 0, 2)),
            judged("triangle", "peak_excess", "shortcut", score=3.0, cells=(0, 4, 0, 4))]
    findings, of = build_findings(rows, 16)
    assert len(findings) == 1 and of == [findings[0]["finding"]] * 2
    assert findings[0]["finding"] == "triangle/region/r1-4c1-4"        # the strongest row's region
