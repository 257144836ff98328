"""analysis/skew/status.py (and `judge_all`): each finding's status against the reference run's findings; "resolved"
only after this run tested the region again and the evidence is gone; "not audited" when it could not; the lead
line; what alerts."""
import math

import pytest

from igaudit.transforms.analysis.skew import candidate_rows, judge_all, plan_tests
from igaudit.transforms.analysis.skew.evidence import FIGURES
from igaudit.transforms.analysis.skew.status import alerting, change_line, counts, with_status
from igaudit.transforms.records import findings_schema

CLASSES = ["a", "b", "c"]


def finding(name, outcome="shortcut", cells=(0, 2, 0, 2), kind="region", fid=None, **extra):
    f = dict.fromkeys(findings_schema().names)
    f.update(finding=fid or f"{name}/{kind}/{'-'.join(map(str, cells))}", class_name=name, kind=kind,
             region_cells=list(cells) if kind == "region" else None, grid_size=16, group_by="label",
             outcome=outcome, flagged=outcome in ("shortcut", "drift"), evidence=outcome, detail=name, **extra)
    return f


def test_no_reference_every_shortcut_is_new():
    found = with_status([finding("a"), finding("b", "cleared"), finding("c", "review")], None, {"a", "b", "c"})
    assert [f["status"] for f in found] == ["new", None, None]
    assert change_line(found, None) == "no reference run: 1 new finding"
    assert alerting(found, "new") == [found[0]]


def test_new_standing_resolved_and_not_audited():
    reference = [finding("a", fid="A"), finding("b", fid="B"), finding("c", fid="C"), finding("d", fid="D"),
                 finding("a", "cleared", cells=(8, 10, 8, 10), fid="A2")]     # not a shortcut then: no status now
    now = [finding("a", cells=(0, 2, 0, 3)),           # overlaps A: the same finding, it keeps A's id
           finding("b", "cleared"),                    # re-tested, no longer a shortcut: resolved
           finding("e"),                               # new
           finding("a", "cleared", cells=(8, 10, 8, 10))]
    found = with_status(now, reference, present={"a", "b", "c", "e"})
    by = {f["finding"]: f["status"] for f in found}
    assert by["A"] == "standing" and by["B"] == "resolved" and by["e/region/0-2-0-2"] == "new"
    assert by["C"] == "not audited" and by["D"] == "not audited"      # present but not re-tested / absent
    assert "no 'd' image in this run" in next(f["evidence"] for f in found if f["finding"] == "D")
    assert next(f for f in found if f["finding"] == "a/region/8-10-8-10")["status"] is None
    assert counts(found) == {"new": 1, "standing": 1, "resolved": 1, "not audited": 2}
    assert change_line(found, "/runs/run=20260101T000000.000Z/") == \
        "1 new finding, 1 resolved, 1 standing, 2 not audited (since run=20260101T000000.000Z)"
    assert [f["finding"] for f in alerting(found, "new")] == ["e/region/0-2-0-2"]
    assert sorted(f["finding"] for f in alerting(found, "any")) == ["A", "e/region/0-2-0-2"]
    with pytest.raises(ValueError):
        alerting(found, "sometimes")


def test_same_findings_again_is_no_change_and_drift_alerts_once():
    reference = [finding("a", fid="A"), finding("a", "drift", kind="drift", fid="a/drift")]
    found = with_status([finding("a"), finding("a", "drift", kind="drift")], reference, {"a"})
    assert [f["status"] for f in found] == ["standing", "new"]     # drift says what changed since its reference
    assert change_line(found[:1], "out/run=1") == "no change since run=1 (1 standing finding)"


def figures(**values):
    f = dict.fromkeys(FIGURES, math.nan)
    f.update(sample=30, other_sample=30, relying=28, accuracy=0.9, accuracy_removed=0.1, accuracy_control=0.9,
             confidence=0.9, drop=0.7, control_drop=0.01, kept_class=0.95, kept_other=0.1, transplant_flip=0.9,
             transplant_control=0.0, stamp_repeat=0.95, stamp_others=0.0, stamp_pixels=36, attending=28,
             class_count=30)
    f.update(values)
    return f


def run_once(reference, figures_of, classes):
    """One run's skew chain on fixed class rows: candidates (metrics and re-tests), tests, figures, findings."""
    rows = candidate_rows(classes, [], None, reference, None, 16)
    tests, _ = plan_tests(rows, CLASSES, 16)
    figs = {t.test_id: figures_of(t) for t in tests}
    figs = {k: v for k, v in figs.items() if v is not None}
    present = {c["class_name"] for c in classes if c["count"]}
    return judge_all(rows, tests, figs, CLASSES, 16, reference, present)


def class_row(name, corner=0.0):
    grid = [1.0] * 256
    grid[0] += corner * 256
    total = sum(grid)
    peak = [0.0] * 256
    return {"group_by": "label", "class_name": name, "count": 30, "grid_size": 16,
            "mean_grid": [g / total for g in grid], "peak_share": peak, "mean_border_mass": 0.2,
            "mean_channel_shares": [1 / 3] * 3}


def test_resolved_appears_only_after_a_re_test():
    """A shortcut of the reference run is re-tested whatever this run's metrics propose (a retest row). Gone from
    the metrics but still passing its tests: standing. Tested and no longer passing: resolved. Its class absent
    from this run, or its test unable to run: not audited, never resolved."""
    rows, first = run_once(None, lambda t: figures(), [class_row("a", corner=0.5), class_row("b"), class_row("c")])
    reference = [f for f in first if f["flagged"]]
    assert [f["class_name"] for f in reference] == ["a"] and reference[0]["status"] == "new"
    quiet = [class_row("a"), class_row("b"), class_row("c")]        # no metric proposes anything now
    assert not any(r["candidate"] for r in candidate_rows(quiet, [], None, None, None, 16))
    # still there when tested again: standing, the same id
    _, again = run_once(reference, lambda t: figures(), quiet)
    assert [(f["finding"], f["status"]) for f in again] == [(reference[0]["finding"], "standing")]
    # tested again, the evidence gone: resolved, with the figures that say so
    rows, gone = run_once(reference, lambda t: figures(drop=0.01, transplant_flip=0.0, kept_class=0.1), quiet)
    assert [(f["finding"], f["status"], f["outcome"]) for f in gone] == [(reference[0]["finding"], "resolved",
                                                                           "cleared")]
    retest = next(r for r in rows if r["metric"] == "retest_region")
    assert gone[0]["drop"] == 0.01 and retest["finding"] == gone[0]["finding"] and retest["outcome"] == "cleared"
    # the re-test could not run (no image of it re-scored): not audited
    _, untested = run_once(reference, lambda t: None, quiet)
    assert [f["status"] for f in untested] == ["not audited"]
    # its class absent from this run's data: not audited
    _, absent = run_once(reference, lambda t: None, [dict(class_row("a"), count=0), class_row("b"), class_row("c")])
    assert [f["status"] for f in absent] == ["not audited"] and "no 'a' image" in absent[0]["evidence"]
