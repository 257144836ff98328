"""From candidate rows to intervention tests, and which images each test re-scores (numpy only).

`plan_tests` turns the candidate rows of TESTED metrics into `records.InterventionTest`s: candidates of one
class under one grouping that propose the same edit (the same channel, the background, or regions that
overlap by REGION_OVERLAP) share one test, placed where the highest-scoring of them says. It is called
twice on the same rows (to plan, then to judge) and gives the same answer both times.

A region test re-scores the class's images that *look* at the region (`attends`): those whose own
attribution grid puts at least ATTEND_EXCESS more of its mass there than the region's share of the
frame. A mark on a third of a class is tested on that third, whichever cluster or metric proposed it,
and its figures are not diluted by the images that never look there.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from igaudit.transforms.analysis.regions import cells_mask
from igaudit.transforms.analysis.skew.rows import TESTED
from igaudit.transforms.records import InterventionTest

ATTEND_EXCESS = 0.1
REGION_OVERLAP = 0.5


def region_mass(grid, grid_size: int, cells, test_grid: int) -> tuple[float, float]:
    """(the share of an image's grid mass in the region, the region's share of the frame); a region on a grid
    of `test_grid` is read on the image's own grid by its fraction of the frame."""
    g = np.asarray(grid, np.float64).reshape(grid_size, grid_size)
    mask = cells_mask(rescale_cells(cells, test_grid, grid_size), grid_size, grid_size)
    total = g.sum()
    return (float(g[mask].sum() / total) if total > 0 else 0.0), float(mask.mean())


def attends(row: dict, test: InterventionTest) -> bool:
    """Whether an image's attribution looks at the test's region (always, for tests of other kinds)."""
    if test.kind != "region" or row.get("grid") is None:
        return True
    mass, area = region_mass(row["grid"], int(row["grid_size"]), test.cells, test.grid)
    return mass >= area + ATTEND_EXCESS


def rescale_cells(cells, grid: int, to: int) -> tuple:
    """A region of cells (a block, or a frame with its depth) on a grid x grid grid, as the region of a
    to x to grid that covers it."""
    cells = tuple(int(v) for v in cells)
    if grid == to:
        return cells
    r0, r1, c0, c1 = cells[:4]
    out = (r0 * to // grid, -(-r1 * to // grid), c0 * to // grid, -(-c1 * to // grid))
    return out + tuple(-(-d * to // grid) for d in cells[4:])


def overlap(a, b, grid: int = 64, smaller: bool = False) -> float:
    """Intersection over union of two regions of cells on a grid of `grid` cells a side (smaller: over the smaller
    region's area instead, so a region inside another counts as fully overlapping)."""
    ma, mb = cells_mask(a, grid, grid), cells_mask(b, grid, grid)
    whole = min(ma.sum(), mb.sum()) if smaller else (ma | mb).sum()
    return float((ma & mb).sum() / whole) if whole else 0.0


def why_untestable(row: dict, class_index: dict) -> Optional[str]:
    kind = TESTED[row["metric"]]
    if row["class_name"] not in class_index:
        return f"'{row['class_name']}' is not one of the model's classes"
    if kind == "region" and not row.get("region_cells"):
        return "no region with excess attribution to test"
    if kind == "channel" and row.get("channel") is None:
        return "no channel to test"
    return None


def _where(row: dict) -> str:
    kind = TESTED[row["metric"]]
    return {"region": "-".join(str(v) for v in row.get("region_cells") or ()), "channel": str(row.get("channel")),
            "outside_box": "background"}[kind]


def _same_edit(test: InterventionTest, row: dict) -> bool:
    if test.kind == "region":
        return overlap(test.cells, row["region_cells"], test.grid) >= REGION_OVERLAP
    if test.kind == "channel":
        return test.channel == row.get("channel")
    return True


def plan_tests(rows: Sequence[dict], class_names: Sequence[str], grid: int,
               max_tests: Optional[int] = None) -> tuple[list, dict]:
    """(tests sorted by test_id, {index of a candidate row in `rows`: the test_id that decides it, or None for a
    row left untested because `max_tests` tests were planned before it}). Tests are planned re-tests of the
    reference run's findings first, then by their rows' scores."""
    class_index = {name: i for i, name in enumerate(class_names)}
    order = sorted((i for i, r in enumerate(rows) if r["candidate"] and r["metric"] in TESTED
                    and not why_untestable(r, class_index)),
                   key=lambda i: (not rows[i]["metric"].startswith("retest_"), -float(rows[i]["score"] or 0.0),
                                  rows[i]["metric"], str(rows[i].get("cluster")), _where(rows[i])))
    tests: dict = {}
    by_class: dict = {}
    decided = {}
    for i in order:
        r = rows[i]
        kind = TESTED[r["metric"]]
        mine = by_class.setdefault((r["group_by"], r["class_name"], kind), [])
        test = next((t for t in mine if _same_edit(t, r)), None)
        if test is None and max_tests is not None and len(tests) >= max_tests:
            decided[i] = None
            continue
        if test is None:
            cells = r.get("region_cells")
            test = InterventionTest(
                test_id=f"{r['group_by']}/{r['class_name']}/{kind}/{_where(r)}", group_by=r["group_by"],
                class_name=r["class_name"], class_index=class_index[r["class_name"]], kind=kind,
                region=r.get("region") or "", cells=tuple(cells) if cells else None, grid=int(grid),
                channel=r.get("channel"))
            mine.append(test)
            tests[test.test_id] = test
        decided[i] = test.test_id
    return [tests[k] for k in sorted(tests)], decided
