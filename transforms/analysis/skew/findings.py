"""One finding per shortcut: the judged skew rows that tested one edit of one class become one finding (numpy only).

Several metrics (grid_js, border_z, peak_excess, a cluster's excess) and both groupings (by label, by
prediction) often propose the same region of the same class: a planted patch used to be "4 new flags".
Here every tested row is placed in a finding of its class and kind: rows whose regions overlap by
`interventions.REGION_OVERLAP` of the smaller one (a block inside a larger block around the same mark), or
that test the same channel, or the background, are one finding. The
finding takes its edit and its figures from its strongest row (a shortcut before a review before a
cleared candidate; the label grouping first; then the highest score), and its outcome from that row.
Drift rows (changes since the reference run) of one class are one `drift` finding.

A finding's id names its class, kind and where: `3/region/r2-4c13-15`, `coffee/channel/red`,
`3/outside_box`, `3/drift`. `status.with_status` keeps the reference run's id for the same finding, so
an id stays as it was first given.
"""
from __future__ import annotations

from typing import Optional, Sequence

from igaudit.transforms.analysis.regions import is_frame
from igaudit.transforms.analysis.skew.interventions import REGION_OVERLAP, overlap, rescale_cells
from igaudit.transforms.analysis.skew.rows import CHANNEL_NAMES, REFERENCE_METRICS, TESTED
from igaudit.transforms.analysis.skew.verdict import OUTCOMES, TESTS
from igaudit.transforms.records import findings_schema

FIGURES = ("sample", "attending", "class_count", "relying", "drop", "control_drop", "kept_class", "kept_other",
           "transplant_flip", "transplant_control", "stamp_repeat", "stamp_others", "stamp_pixels")
DRIFT = "drift"


def finding_id(class_name, kind: str, cells=None, channel=None) -> str:
    where = {"region": lambda: ("r{}-{}c{}-{}".format(cells[0] + 1, cells[1], cells[2] + 1, cells[3])
                                + (f"f{cells[4]}" if is_frame(cells) else "")) if cells else "",
             "channel": lambda: CHANNEL_NAMES[channel] if channel is not None and channel < 3 else str(channel)
             }.get(kind, lambda: "")()
    return "/".join(str(p) for p in (class_name, kind, where) if p != "")


def kind_of(row: dict) -> Optional[str]:
    """The kind of edit a row's test makes (None for drift rows)."""
    return TESTED.get(row["metric"])


def same_edit(a: dict, b: dict) -> bool:
    """Whether two rows or findings (class_name, kind, region_cells, channel) name the same edit."""
    ka, kb = a.get("kind") or kind_of(a), b.get("kind") or kind_of(b)
    if a["class_name"] != b["class_name"] or ka != kb:
        return False
    if ka == "region":
        if not a.get("region_cells") or not b.get("region_cells"):
            return False
        grid = int(a.get("grid_size") or b.get("grid_size") or 64)      # rows: their run's grid, as findings'
        theirs = rescale_cells(b["region_cells"], int(b.get("grid_size") or grid), grid)
        return overlap(a["region_cells"], theirs, grid, smaller=True) >= REGION_OVERLAP
    if ka == "channel":
        return a.get("channel") == b.get("channel")
    return True


def _strength(row: dict):
    return (-OUTCOMES.index(row["outcome"]), row["group_by"] == "label", float(row.get("score") or 0.0))


def _finding(members: list[dict], grid: int) -> dict:
    best = max(members, key=_strength)
    kind = kind_of(best)
    out = dict.fromkeys(findings_schema().names)
    cells = best.get("region_cells")
    out.update(finding=finding_id(best["class_name"], kind, cells, best.get("channel")),
               class_name=best["class_name"], group_by=best["group_by"], kind=kind, region=best.get("region"),
               region_cells=list(cells) if cells else None, channel=best.get("channel"),
               outcome=best["outcome"], flagged=best["outcome"] == "shortcut", evidence=best.get("evidence"),
               groupings=sorted({m["group_by"] for m in members}),
               metrics=sorted({m["metric"] for m in members}),
               clusters=sorted({int(m["cluster"]) for m in members if m.get("cluster") is not None}),
               rows=len(members), detail=best.get("detail"), grid_size=grid if cells else None,
               **{k: best.get(k) for k in FIGURES + TESTS})
    return out


def _drift(class_name, members: list[dict]) -> dict:
    flagged = [m for m in members if m["flagged"]]
    out = dict.fromkeys(findings_schema().names)
    out.update(finding=finding_id(class_name, DRIFT), class_name=class_name, group_by=flagged[0]["group_by"],
               kind=DRIFT, outcome=DRIFT, flagged=True, evidence="a change since the reference run (no intervention)",
               groupings=sorted({m["group_by"] for m in flagged}), metrics=sorted({m["metric"] for m in flagged}),
               clusters=[], rows=len(flagged), detail="; ".join(m["detail"] for m in flagged))
    return out


def build_findings(rows: Sequence[dict], grid: int) -> tuple[list[dict], list[Optional[str]]]:
    """(findings sorted by id, the finding of each row or None): every row that was tested (it has an
    `outcome`) in a finding; flagged drift rows in their class's drift finding. grid: the grid size of
    the rows' region cells."""
    tested = sorted((i for i, r in enumerate(rows) if r.get("outcome")), key=lambda i: _strength(rows[i]),
                    reverse=True)
    groups: list[list[int]] = []
    for i in tested:
        home = next((g for g in groups if same_edit(rows[g[0]], rows[i])), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    of: list[Optional[str]] = [None] * len(rows)
    findings = []
    for g in groups:
        f = _finding([rows[i] for i in g], grid)
        findings.append(f)
        for i in g:
            of[i] = f["finding"]
    drift: dict = {}
    for i, r in enumerate(rows):
        if r["metric"] in REFERENCE_METRICS and r["flagged"]:
            drift.setdefault(r["class_name"], []).append(i)
    for name, members in drift.items():
        f = _drift(name, [rows[i] for i in members])
        findings.append(f)
        for i in members:
            of[i] = f["finding"]
    return sorted(findings, key=lambda f: f["finding"]), of
