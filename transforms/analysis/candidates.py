"""From candidate skew rows to intervention tests, and from the tests' figures to verdict rows (numpy only).

`intervention_tests` turns every candidate row of a TESTED metric into an `InterventionTest`; rows that
propose the same edit on the same images (grid_js and border_z of one class, often) share one
test. `apply_verdicts` puts each test's figures, the three tests' outcomes and the verdict on
its rows, and words the evidence in `detail`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from igaudit.transforms.analysis.skew_rows import TESTED
from igaudit.transforms.analysis.verdict import describe, evidence_label, judge
from igaudit.transforms.records import InterventionTest


def _clean(v):
    """NaN (a figure that does not apply) as None, ints as ints."""
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _why_untestable(row: dict, class_index: dict) -> Optional[str]:
    kind = TESTED[row["metric"]]
    if row["class_name"] not in class_index:
        return f"'{row['class_name']}' is not one of the model's classes"
    if kind == "region" and not row.get("region_cells"):
        return "no region with excess attribution to test"
    if kind == "channel" and row.get("channel") is None:
        return "no channel to test"
    return None


def test_id(row: dict) -> str:
    kind = TESTED[row["metric"]]
    where = {"region": "-".join(str(v) for v in row.get("region_cells") or ()), "channel": str(row.get("channel")),
             "outside_box": "background"}[kind]
    cluster = "" if row.get("cluster") is None else f"/cluster{row['cluster']}"
    return f"{row['group_by']}/{row['class_name']}{cluster}/{kind}/{where}"


def intervention_tests(rows: Sequence[dict], class_names: Sequence[str], grid: int) -> list[InterventionTest]:
    """One test per distinct edit among the candidate rows of TESTED metrics, sorted by test_id."""
    class_index = {name: i for i, name in enumerate(class_names)}
    tests = {}
    for r in rows:
        if not r["candidate"] or r["metric"] not in TESTED or _why_untestable(r, class_index):
            continue
        tid = test_id(r)
        if tid not in tests:
            cells = r.get("region_cells")
            tests[tid] = InterventionTest(
                test_id=tid, group_by=r["group_by"], class_name=r["class_name"],
                class_index=class_index[r["class_name"]], kind=TESTED[r["metric"]], region=r.get("region") or "",
                cluster=r.get("cluster"), cells=tuple(cells) if cells else None, grid=int(grid),
                channel=r.get("channel"))
    return [tests[k] for k in sorted(tests)]


def apply_verdicts(rows: Sequence[dict], tests: Sequence[InterventionTest], figures: dict,
                   class_names: Sequence[str]) -> list[dict]:
    """Rows with the verdict: `figures` maps test_id -> `evidence.measure` output (a test missing there
    ran on no images). A candidate of a TESTED metric is flagged only when all three tests pass."""
    class_index = {name: i for i, name in enumerate(class_names)}
    by_id = {t.test_id: t for t in tests}
    out = []
    for r in rows:
        r = dict(r)
        if r["candidate"] and r["metric"] in TESTED:
            why = _why_untestable(r, class_index)
            tid = None if why else test_id(r)
            f = figures.get(tid) if tid else None
            if f is None:
                why = why or "no image of it could be re-scored"
                r.update(flagged=False, evidence=f"untested: {why}", detail=f"{r['detail']}; not tested: {why}")
            else:
                outcome = judge(f, by_id[tid].kind)
                r.update({k: _clean(v) for k, v in f.items() if k in r}, **outcome)
                r.update(flagged=all(outcome.values()), evidence=evidence_label(outcome),
                         detail=f"{r['detail']}; {describe(by_id[tid], f)}")
        elif r["candidate"]:
            r["evidence"] = "drift: a change since the reference run (no intervention)"
        out.append(r)
    return out
