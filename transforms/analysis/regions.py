"""Where attribution mass sits, in words: the block of a grid with the most excess mass, and its name (numpy only)."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

def percent(share: float) -> str:
    pct = 100.0 * share
    if 0 < pct < 1:
        return f"{pct:.1f}%"
    return f"{pct:.0f}%"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# Below one percentage point of excess mass a "region" is noise, not worth naming.
_MIN_EXCESS = 0.01


def excess_region(class_grid, dataset_grid) -> Optional[tuple[int, int, int, int]]:
    """The cell block (r0, r1, c0, c1), ends exclusive, where the class's mass most exceeds the dataset's
    (`best_block` of the difference of the two normalised grids). None when no cell has excess."""
    diff, peak = _excess(class_grid, dataset_grid)
    return None if diff is None else best_block(diff)


def best_block(diff: np.ndarray) -> tuple[int, int, int, int]:
    """The block maximising sum(diff - penalty) over all axis-aligned blocks, with a per-cell penalty of 20%
    of the largest cell, so cells that exceed only by noise do not stretch the block."""
    gain = diff - 0.2 * float(diff.max())
    g_rows, g_cols = gain.shape
    best, best_key = None, None
    # For each pair of rows, the best column span is a max-subarray problem on the
    # column sums: best = max over c1 of prefix[c1] - min over c0 < c1 of prefix[c0].
    for r0 in range(g_rows):
        col_sums = np.zeros(g_cols)
        for r1 in range(r0 + 1, g_rows + 1):
            col_sums += gain[r1 - 1]
            prefix = np.concatenate([[0.0], np.cumsum(col_sums)])
            running_min = np.minimum.accumulate(prefix[:-1])
            argmins = _running_argmin(prefix[:-1])
            spans = prefix[1:] - running_min
            c1 = int(np.argmax(spans)) + 1
            c0 = int(argmins[c1 - 1])
            value = float(spans[c1 - 1])
            area = (r1 - r0) * (c1 - c0)
            # deterministic: larger gain, then smaller block, then top-most, left-most
            key = (round(value, 12), -area, -r0, -c0)
            if best_key is None or key > best_key:
                best, best_key = (r0, r1, c0, c1), key
    return best


# A cell belongs to the tested region when its excess is at least this share of the largest excess.
STRONG_EXCESS = 0.5
# A block at most this many cells deep on an image edge stretches along it (`_along_edge`) when the rest
# of that edge band has, on average, at least EDGE_EXCESS of the largest cell excess (a stripe's whole
# length: ~0.12 on the benchmark; a corner patch's edge: ~0).
EDGE_DEPTH = 2
EDGE_EXCESS = 0.08


def strong_region(class_grid, dataset_grid) -> Optional[tuple[int, int, int, int]]:
    """Where an intervention should edit, for a class grid against a contrast grid: `strong_block` of the
    difference of the two normalised grids. None when no cell has excess."""
    diff, peak = _excess(class_grid, dataset_grid)
    return None if diff is None else strong_block(diff)


def strong_block(diff: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding block (r0, r1, c0, c1) of `best_block` and of the cells, connected (8-neighbours) to the
    largest cell, that are at least STRONG_EXCESS of it; a thin block on an image edge stretched along it
    (`_along_edge`). It follows an artifact along its whole length (a stripe across the bottom) and
    stays small for a compact one (a corner patch). `diff`: a G x G map of excess (positive somewhere)."""
    strong = diff >= STRONG_EXCESS * float(diff.max())
    seen = np.zeros_like(strong)
    stack = [np.unravel_index(int(np.argmax(diff)), diff.shape)]
    seen[stack[0]] = True
    while stack:
        r, col = stack.pop()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, col + dc
                if 0 <= rr < diff.shape[0] and 0 <= cc < diff.shape[1] and strong[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    stack.append((rr, cc))
    rows, cols = np.nonzero(seen)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    block = best_block(diff)     # the block of most excess mass, which a lone peak cell may not cover
    r0, r1, c0, c1 = min(r0, block[0]), max(r1, block[1]), min(c0, block[2]), max(c1, block[3])
    return _as_frame(_along_edge((r0, r1, c0, c1), diff), diff)


def _band(shape: tuple, depth: int) -> list:
    """The four edge bands of a grid, `depth` cells deep, as masks (top, bottom, left, right)."""
    out = []
    for side in range(4):
        m = np.zeros(shape, bool)
        (m[:depth], m[-depth:], m[:, :depth], m[:, -depth:])[side][...] = True
        out.append(m)
    return out


def _as_frame(block: tuple, diff: np.ndarray) -> tuple:
    """A block along a whole edge (at most EDGE_DEPTH cells deep) as a frame (0, rows, 0, cols, depth) when at
    least three of the four edge bands that deep have excess (EDGE_EXCESS of the largest cell, on average): a
    border drawn round the image is read all round, and removing one side of it leaves the rest."""
    r0, r1, c0, c1 = block
    rows, cols = diff.shape
    if (r0, r1) == (0, rows) and (c0 == 0 or c1 == cols) and c1 - c0 <= EDGE_DEPTH:
        depth = c1 - c0
    elif (c0, c1) == (0, cols) and (r0 == 0 or r1 == rows) and r1 - r0 <= EDGE_DEPTH:
        depth = r1 - r0
    else:
        return block
    sides = sum(float(diff[m].mean()) >= EDGE_EXCESS * float(diff.max()) for m in _band(diff.shape, depth))
    return (0, rows, 0, cols, depth) if sides >= 3 else block


def _along_edge(block: tuple, diff: np.ndarray) -> tuple:
    """A block lying on an image edge (at most EDGE_DEPTH cells deep) stretched along that whole edge when
    the rest of the edge band still has excess (EDGE_EXCESS): a stripe or frame the model reads all along,
    not where its attribution happens to peak, so removing only the peak would leave it in place."""
    r0, r1, c0, c1 = block
    rows, cols = diff.shape
    options = []
    if r1 - r0 <= EDGE_DEPTH and (r0 == 0 or r1 == rows):
        options.append((r0, r1, 0, cols))
    if c1 - c0 <= EDGE_DEPTH and (c0 == 0 or c1 == cols):
        options.append((0, rows, c0, c1))
    for o0, o1, p0, p1 in options:
        band = np.zeros_like(diff, bool)
        band[o0:o1, p0:p1] = True
        band[r0:r1, c0:c1] = False
        if band.any() and float(diff[band].mean()) >= EDGE_EXCESS * float(diff.max()):
            return (o0, o1, p0, p1)
    return block


def _running_argmin(a: np.ndarray) -> np.ndarray:
    # index of the (last) minimum of a[:i+1], for each i; last so the span is shortest
    out = np.empty(a.size, np.int64)
    best = 0
    for i in range(a.size):
        if a[i] <= a[best]:
            best = i
        out[i] = best
    return out


def _square(grid) -> np.ndarray:
    a = np.asarray(grid, np.float64)
    if a.ndim == 1:
        side = int(round(math.sqrt(a.size)))
        if side * side != a.size or a.size == 0:
            raise ValueError(f"a flattened grid must have a square number of cells, got {a.size}")
        a = a.reshape(side, side)
    if a.ndim != 2:
        raise ValueError("a grid must be 2-D or a flattened square")
    return a


def _excess(class_grid, dataset_grid):
    """(class share - dataset share per cell, its largest value); (None, 0.0) when no cell has excess."""
    c, d = _square(class_grid), _square(dataset_grid)
    if c.shape != d.shape:
        raise ValueError(f"grids differ in shape: {c.shape} vs {d.shape}")
    diff = c / c.sum() - d / d.sum()
    peak = float(diff.max())
    return (diff, peak) if peak > 1e-12 else (None, 0.0)


def is_frame(cells) -> bool:
    """Whether a region's cells name a frame (r0, r1, c0, c1, depth) rather than a block (r0, r1, c0, c1)."""
    return len(cells) > 4


def cells_mask(cells, rows: int, cols: int) -> np.ndarray:
    """The grid cells a region covers: a block (r0, r1, c0, c1), ends exclusive, or a frame (r0, r1, c0, c1,
    depth): the band `depth` cells deep inside the block's edges."""
    r0, r1, c0, c1 = (int(v) for v in cells[:4])
    m = np.zeros((rows, cols), bool)
    m[r0:r1, c0:c1] = True
    if is_frame(cells):
        d = int(cells[4])
        m[r0 + d:r1 - d, c0 + d:c1 - d] = False
    return m


def cells_name(cells, rows: int, cols: int) -> str:
    """A human name for a region (`cells_mask`): `region_name` of a block, or "the frame, 2 cells deep"."""
    if is_frame(cells):
        return f"the frame, {plural(int(cells[4]), 'cell')} deep"
    return region_name(*(int(v) for v in cells[:4]), rows, cols)


def region_name(r0: int, r1: int, c0: int, c1: int, rows: int, cols: int) -> str:
    """A human name for the block rows r0..r1-1, cols c0..c1-1 of a rows x cols grid."""
    h, w = r1 - r0, c1 - c0
    vert = "full" if (r0 == 0 and r1 == rows) else "top" if r0 == 0 else "bottom" if r1 == rows else "mid"
    horiz = "full" if (c0 == 0 and c1 == cols) else "left" if c0 == 0 else "right" if c1 == cols else "mid"
    cells = "cell" if h * w == 1 else f"{h}x{w} cells"
    row_span = f"row {r0 + 1}" if h == 1 else f"rows {r0 + 1}-{r1}"
    col_span = f"column {c0 + 1}" if w == 1 else f"columns {c0 + 1}-{c1}"
    if vert == "full" and horiz == "full":
        return "the whole grid"
    if vert in ("top", "bottom") and horiz in ("left", "right"):
        return f"the {vert}-{horiz} {cells}"
    if horiz == "full":
        if vert == "mid":
            return f"the middle {plural(h, 'row')} ({row_span})"
        return f"the {vert} row" if h == 1 else f"the {vert} {h} rows"
    if vert == "full":
        if horiz == "mid":
            return f"the middle {plural(w, 'column')} ({col_span})"
        return f"the {horiz} column" if w == 1 else f"the {horiz} {w} columns"
    if vert in ("top", "bottom"):           # horiz == "mid"
        return f"the {cells} on the {vert} edge ({col_span})"
    if horiz in ("left", "right"):          # vert == "mid"
        return f"the {cells} on the {horiz} edge ({row_span})"
    centre_r, centre_c = rows / 2.0, cols / 2.0
    if r0 <= centre_r <= r1 and c0 <= centre_c <= c1:
        return f"the centre {cells} ({row_span}, {col_span})"
    return f"the interior {cells} ({row_span}, {col_span})"


def describe_region(class_grid, dataset_grid, against: str = "across the dataset") -> str:
    """Where the class's excess attribution mass sits, with both shares.

    e.g. "70% of attribution in the top-left 2x2 cells of the 8x8 grid vs 22% across the dataset".
    Grids may be G x G or flattened (row-major, row 0 at the top, as summarize.pool_grid).
    """
    c, d = _square(class_grid), _square(dataset_grid)
    region = excess_region(c, d)
    if region is None:
        return f"attribution spread like the grid {against} (no region with excess mass)"
    r0, r1, c0, c1 = region
    rows, cols = c.shape
    class_share = float(c[r0:r1, c0:c1].sum() / c.sum())
    other_share = float(d[r0:r1, c0:c1].sum() / d.sum())
    if class_share - other_share < _MIN_EXCESS:
        return f"attribution spread like the grid {against} (no region with {percent(_MIN_EXCESS)} excess mass)"
    return (f"{percent(class_share)} of attribution in {region_name(r0, r1, c0, c1, rows, cols)} "
            f"of the {rows}x{cols} grid vs {percent(other_share)} {against}")
