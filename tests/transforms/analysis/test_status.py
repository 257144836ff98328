"""analysis/status.py: new / standing / resolved against the reference run, the lead line, what alerts."""
import pytest

from igaudit.transforms.analysis.status import alerting, change_line, counts, with_status
from igaudit.transforms.records import skew_schema


def row(name, metric="grid_js", flagged=True, cluster=None, group_by="label"):
    r = dict.fromkeys(skew_schema().names)
    r.update(group_by=group_by, class_name=name, metric=metric, cluster=cluster, flagged=flagged,
             candidate=flagged, score=2.0 if flagged else 0.5, detail=f"{name} {metric}")
    return r


def test_no_reference_every_flag_is_new():
    rows = with_status([row("a"), row("b", flagged=False)], None)
    assert [r["status"] for r in rows] == ["new", None]
    assert change_line(rows, None) == "no reference run: 1 new flag"
    assert alerting(rows, "new") == [rows[0]]


def test_new_standing_resolved_and_a_vanished_finding():
    reference = [row("a"), row("b"), row("c", cluster=1), row("d", flagged=False)]
    now = [row("a"), row("b", flagged=False), row("c", cluster=2), row("e")]
    rows = with_status(now, reference)
    by = {(r["class_name"], r["cluster"]): r["status"] for r in rows}
    assert by == {("a", None): "standing", ("b", None): "resolved", ("c", 2): "new", ("e", None): "new",
                  ("c", 1): "resolved"}    # c's cluster 1 has no row now: a resolved row is added
    added = next(r for r in rows if r["cluster"] == 1)
    assert not added["flagged"] and list(added) == skew_schema().names and "reference run" in added["detail"]
    assert counts(rows) == {"new": 2, "standing": 1, "resolved": 2}
    assert change_line(rows, "/runs/run=20260101T000000.000Z/") == \
        "2 new flags, 2 resolved, 1 standing (since run=20260101T000000.000Z)"


def test_same_flags_again_is_no_change_and_alerts_only_on_any():
    reference = [row("a"), row("b", metric="border_z")]
    rows = with_status([row("a"), row("b", metric="border_z"), row("c", flagged=False)], reference)
    assert [r["status"] for r in rows] == ["standing", "standing", None]
    assert change_line(rows, "out/run=1") == "no change since run=1 (2 standing flags)"
    assert alerting(rows, "new") == []
    assert len(alerting(rows, "any")) == 2
    with pytest.raises(ValueError):
        alerting(rows, "sometimes")


def test_group_and_metric_are_part_of_the_key():
    rows = with_status([row("a", group_by="predicted"), row("a", metric="border_z")], [row("a")])
    assert [r["status"] for r in rows if r["flagged"]] == ["new", "new"]
    assert sum(r["status"] == "resolved" for r in rows) == 1


def test_drift_flags_are_not_carried_into_the_next_comparison():
    """A drift flag says what changed since its own reference run: the next, unchanged run resolves nothing."""
    reference = [row("a"), row("a", metric="ref_grid_js")]
    rows = with_status([row("a"), row("a", metric="ref_grid_js", flagged=False)], reference)
    assert [r["status"] for r in rows] == ["standing", None]
    assert change_line(rows, "out/run=2") == "no change since run=2 (1 standing flag)"
    again = with_status([row("a"), row("a", metric="ref_grid_js")], reference)
    assert [r["status"] for r in again] == ["standing", "new"]
