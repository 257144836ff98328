"""Candidates: where a class's (or a cluster's) attribution sits apart from the rest (numpy only).

Candidates are cheap and verdicts are strict: a metric only proposes a region (or a channel, or the
background) for the interventions to test; it flags nothing. Computed for both groupings ('label' and
'predicted'), each on its own, from classes.parquet rows (`transforms/aggregate.py`) and clusters.parquet
rows (`clusters.cluster_table`):

* `grid_js`        JS divergence (bits) of the class mean grid from the other classes' (count-weighted)
                   mean grid. Against the others, not the whole dataset: with two classes the dataset is
                   half the class itself. Needs 2 classes with a grid.
* `border_z`       robust z of the class mean border mass against the other classes'. Needs 3 classes;
                   one-sided (attribution drifting to the frame is the smell); its region is the frame.
* `peak_excess`    the share of the class's images whose strongest cells (`summarize.peak_cells`) lie in a
                   cell, above the share of other classes' images whose do, at its largest: a mark on part
                   of a class shows here even when the class's mean grid is the object's. The first such
                   block that touches an image edge also proposes the frame (`edge_frame`): a border drawn
                   round part of a class is often seen on one side or in one corner only.
* `cluster_excess` the share of a cluster's attribution where neither its class's other clusters nor the
                   dataset look as much (`cluster_rows`).
* `in_box`         class mean share of attribution inside the object box (a manifest with boxes).
* `channel_shift`  the largest excess of one colour channel's share of the class's |IG| over the others'.

Region candidates carry `region_cells` (the block to edit, `regions.strong_block`) and `region`.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from igaudit.transforms.analysis.distances import js_divergence, robust_z
from igaudit.transforms.analysis.regions import EDGE_DEPTH, cells_mask, describe_region, percent, strong_block
from igaudit.transforms.analysis.skew.interventions import rescale_cells
from igaudit.transforms.analysis.skew.rows import (CHANNEL_NAMES, block_fields, finite, grid_of,
                                                   region_fields, resolve_thresholds, skew_row, skipped, subject_of)

# `in_box` scores are threshold / value; a value of 0 would give an infinite score, so the value is taken as
# at least this (caps the score at threshold / 1e-3).
_IN_BOX_EPS = 1e-3
PEAK_REGIONS = 3


def _rest(rows: list[dict], grids: dict, me: dict, size: int, key: str = "grid") -> Optional[np.ndarray]:
    """The count-weighted mean of the other classes' grids of this size (None when there is none)."""
    others = [(r, grids[id(r)]) for r in rows if r is not me and grids[id(r)][0] is not None
              and grids[id(r)][1] == size]
    if not others:
        return None
    weights = np.array([max(float(r.get("count") or 0), 0.0) for r, _ in others]) + 1e-12
    return np.average(np.stack([g for _, (g, _, _) in others]), axis=0, weights=weights)


def _grid_rows(group_by: str, rows: list[dict], t: dict) -> tuple[list, dict]:
    out, regions = [], {}
    grids = {id(r): grid_of(r) for r in rows}
    if sum(g is not None for g, _, _ in grids.values()) < 2:
        return out, regions
    for r in rows:
        name = r["class_name"]
        g, size, why = grids[id(r)]
        rest = None if g is None else _rest(rows, grids, r, size)
        if rest is None:
            out.append(skipped(group_by, name, "grid_js", t["grid_js"],
                               why or f"no other class with a {size}x{size} grid"))
            continue
        js = js_divergence(g, rest)
        where = describe_region(g.reshape(size, size), rest.reshape(size, size), against="in other classes' images")
        regions[name] = region_fields(g, rest, size)
        out.append(skew_row(group_by, name, "grid_js", js, None, js / t["grid_js"], t["grid_js"],
                            f"{subject_of(group_by, name)}: {where} (JS {js:.3f} bits)", **regions[name]))
    return out, regions


def peak_share(row: dict) -> tuple[Optional[np.ndarray], int]:
    """(the share of the class's images whose strongest cells include each cell (flat), grid size)."""
    size = int(row.get("grid_size") or 0)
    share = np.asarray(row.get("peak_share") or [], np.float64)
    if size <= 0 or share.size != size * size or not np.all(np.isfinite(share)):
        return None, size
    return share, size


def _peak_rows(group_by: str, rows: list[dict], t: dict) -> list[dict]:
    """Up to PEAK_REGIONS `peak_excess` rows per class: its strongest block of excess, then the next strongest
    away from it, and so on while the excess reaches half the threshold (a mark on a third of a class can sit
    beside the excess of the class's own object)."""
    shares = {id(r): peak_share(r) for r in rows}
    out = []
    for r in rows:
        share, size = shares[id(r)]
        if share is None:
            continue
        others = [(o, shares[id(o)][0]) for o in rows if o is not r and shares[id(o)][0] is not None
                  and shares[id(o)][1] == size]
        if not others:
            continue
        counts = np.array([max(float(o.get("count") or 0), 0.0) for o, _ in others]) + 1e-12
        rest = np.average(np.stack([s for _, s in others]), axis=0, weights=counts).reshape(size, size)
        excess = share.reshape(size, size) - rest
        name = r["class_name"]
        framed = False
        for i in range(PEAK_REGIONS):
            value = float(excess.max())
            if value <= 0 or (i and value < 0.5 * t["peak_excess"]):
                if not i:
                    out.append(skew_row(group_by, name, "peak_excess", 0.0, None, 0.0, t["peak_excess"],
                                        f"{subject_of(group_by, name)}: its images peak where other classes' do"))
                break
            block = strong_block(excess)
            fields = block_fields(block, size)
            cell = np.unravel_index(int(np.argmax(excess)), excess.shape)
            out.append(skew_row(group_by, name, "peak_excess", value, None, value / t["peak_excess"],
                                t["peak_excess"],
                                f"{subject_of(group_by, name)}: {percent(share.reshape(size, size)[cell])} of its "
                                f"images have their strongest attribution in {fields['region']} (at row {cell[0] + 1}, "
                                f"column {cell[1] + 1}) vs {percent(rest[cell])} of other classes' images", **fields))
            frame = None if framed or len(block) != 4 else edge_frame(block, size)
            if frame:
                framed = True
                out.append(dict(out[-1], **block_fields(frame, size),
                                detail=out[-1]["detail"] + "; on the image's edge: the frame is tested too"))
            excess = np.where(cells_mask(block, size, size), -1.0, excess)     # below any excess: never again
    return out


def edge_frame(block: tuple, size: int) -> Optional[tuple]:
    """The frame (0, size, 0, size, depth) that a block touching an edge of the size x size grid may be part
    of: as deep as the block reaches in from that edge, at most EDGE_DEPTH (None: it touches no edge, or is
    already the whole grid)."""
    r0, r1, c0, c1 = block
    depths = [d for touches, d in ((r0 == 0, r1), (r1 == size, size - r0), (c0 == 0, c1), (c1 == size, size - c0))
              if touches]
    if not depths or (r1 - r0, c1 - c0) == (size, size):
        return None
    return (0, size, 0, size, min(min(depths), EDGE_DEPTH))


def _border_rows(group_by: str, rows: list[dict], t: dict, border: float) -> list[dict]:
    """`border_z` rows: a class with more attribution in the border band than the others has the band tested
    (the frame, as deep as `border` of the grid: a drawn border, a frame, a stripe along an edge)."""
    borders = [(r["class_name"], finite(r.get("mean_border_mass")), int(r.get("grid_size") or 0)) for r in rows]
    borders = [(n, b, g) for n, b, g in borders if b is not None]
    out = []
    if len(borders) < 3:
        return out
    for i, (name, b, size) in enumerate(borders):
        others = [o for j, (_, o, _) in enumerate(borders) if j != i]
        z = robust_z(b, others)
        median = float(np.median(others))
        frame = block_fields((0, size, 0, size, max(1, round(border * size))), size) if size else {}
        out.append(skew_row(group_by, name, "border_z", z, None, z / t["border_z"], t["border_z"],
                            f"{subject_of(group_by, name)}: mean border mass {b:.2f} vs median {median:.2f} "
                            f"across {len(others)} other classes (robust z {z:.1f})", **frame))
    return out


def _box_rows(group_by: str, rows: list[dict], t: dict) -> list[dict]:
    out = []
    for r in rows:
        in_box = finite(r.get("mean_in_box"))
        if in_box is None:
            continue
        name = r["class_name"]
        score = t["in_box"] / max(in_box, _IN_BOX_EPS)
        out.append(skew_row(group_by, name, "in_box", in_box, None, score, t["in_box"],
                            f"{subject_of(group_by, name)}: {percent(in_box)} of attribution inside the object box "
                            f"(a candidate below {percent(t['in_box'])})",
                            region="the background around the object box"))
    return out


def _channel_rows(group_by: str, rows: list[dict], t: dict) -> list[dict]:
    shares = [(r, np.asarray(r.get("mean_channel_shares") or [], np.float64)) for r in rows]
    shares = [(r, s) for r, s in shares if s.size == 3 and np.all(np.isfinite(s))]
    if len(shares) < 2:
        return []
    weights = np.array([max(float(r.get("count") or 0), 0.0) for r, _ in shares]) + 1e-12
    dataset = np.average(np.stack([s for _, s in shares]), axis=0, weights=weights)
    out = []
    for r, s in shares:
        excess = s - dataset
        ch = int(np.argmax(excess))
        value = float(excess[ch])
        name = r["class_name"]
        out.append(skew_row(group_by, name, "channel_shift", value, float(dataset[ch]), value / t["channel_shift"],
                            t["channel_shift"],
                            f"{subject_of(group_by, name)}: {percent(s[ch])} of attribution in the "
                            f"{CHANNEL_NAMES[ch]} channel vs {percent(dataset[ch])} across the dataset",
                            channel=ch, region=f"the {CHANNEL_NAMES[ch]} channel"))
    return out


def class_rows(classes: list[dict], thresholds: Optional[Mapping] = None, border: float = 0.1) -> list[dict]:
    """classes.parquet rows -> the candidate rows of the class metrics above, for each grouping. border:
    `analysis.border` (the band border_z measures, and its candidates test)."""
    t = resolve_thresholds(thresholds)
    groups: dict = {}
    for r in classes:
        groups.setdefault(r["group_by"], []).append(r)
    out = []
    for group_by in sorted(groups, key=str):
        rows = sorted(groups[group_by], key=lambda r: str(r["class_name"]))
        grid_rows, regions = _grid_rows(group_by, rows, t)
        out += grid_rows + _border_rows(group_by, rows, t, border) + _peak_rows(group_by, rows, t)
        out += _box_rows(group_by, rows, t) + _channel_rows(group_by, rows, t)
    return out


def retest_rows(findings: Optional[list[dict]], grid: int) -> list[dict]:
    """A candidate row for each shortcut finding of the reference run (`metric` retest_<kind>), so that this
    run tests its edit again whatever its metrics propose: a standing finding is resolved only by a test
    that no longer finds it (`status`). Regions found on another grid size are read on this one."""
    out = []
    for f in findings or ():
        if not f.get("flagged") or f.get("kind") not in ("region", "channel", "outside_box"):
            continue
        cells = f.get("region_cells")
        if cells:
            cells = list(rescale_cells(cells, int(f.get("grid_size") or grid), grid))
        out.append(skew_row(f["group_by"], f["class_name"], f"retest_{f['kind']}", 1.0, None, 1.0, 1.0,
                            f"{subject_of(f['group_by'], f['class_name'])}: finding {f['finding']} of the reference "
                            f"run, tested again", region=f.get("region"), region_cells=cells, channel=f.get("channel")))
    return out
