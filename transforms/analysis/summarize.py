"""Per-image statistics from one attribution map (plain numpy, no Beam).

Everything here is small: scalars and a G x G grid, the only things that flow
on to grouping.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from igaudit.transforms.analysis.arraymath import channel_sum


def pool_grid(magnitude: np.ndarray, grid: int) -> np.ndarray:
    """Sum an H x W map into a grid x grid array of cell masses (cells of near-equal size).

    Row r falls in cell (r * grid) // h, so cell k starts at row ceil(k * h / grid); likewise columns.
    """
    h, w = magnitude.shape
    if h >= grid and w >= grid:   # every cell has a row and a column: two reduceat calls
        row_starts = -((-np.arange(grid) * h) // grid)
        col_starts = -((-np.arange(grid) * w) // grid)
        rows_pooled = np.add.reduceat(np.asarray(magnitude, np.float64), row_starts, axis=0)
        return np.add.reduceat(rows_pooled, col_starts, axis=1)
    rows = (np.arange(h) * grid) // h
    cols = (np.arange(w) * grid) // w
    pooled = np.zeros((grid, grid), np.float64)
    np.add.at(pooled, (rows[:, None], cols[None, :]), magnitude)
    return pooled


def inner_block(h: int, w: int, border: float) -> tuple[slice, slice]:
    """The rows and columns inside the band of `border` x side on each edge."""
    bh, bw = int(round(border * h)), int(round(border * w))
    return slice(bh, h - bh), slice(bw, w - bw)


def border_mask(h: int, w: int, border: float) -> np.ndarray:
    """True in the band of `border` x side on each edge."""
    inner = np.zeros((h, w), bool)
    inner[inner_block(h, w, border)] = True
    return ~inner


# An image's strongest cells: the top tenth of its grid by mass (where its evidence sits; counted per class as
# `peak_share`, they show where part of a class looks even when the class's mean grid is its object's).
PEAK_SHARE = 0.1


def peak_cells(grid) -> np.ndarray:
    """A flat 0/1 array over the grid's cells: 1 on the image's strongest cells (the top PEAK_SHARE by mass;
    ties broken by position, so the same grid always gives the same cells)."""
    flat = np.asarray(grid, np.float64).ravel()
    top = max(1, int(np.ceil(PEAK_SHARE * flat.size)))
    out = np.zeros(flat.size)
    out[np.argsort(-flat, kind="stable")[:top]] = 1.0
    return out


@dataclasses.dataclass(frozen=True)
class AttributionStats:
    grid: np.ndarray            # G x G, sums to 1 (uniform when there is no attribution)
    border_mass: float          # share of |IG| in the border band
    concentration: float        # share of |IG| in the top 5% of pixels
    entropy: float              # entropy of the grid / log(G^2), in [0, 1]
    positive_share: float       # positive mass / (positive + negative mass)
    channel_shares: np.ndarray  # share of |IG| per channel
    abs_sum: float


def summarize_attribution(attribution: np.ndarray, grid: int, border: float) -> AttributionStats:
    """Statistics of an H x W x C attribution map."""
    a = np.asarray(attribution, np.float64)
    absolute = np.abs(a)
    magnitude = channel_sum(absolute)
    total = float(magnitude.sum())
    h, w = magnitude.shape
    if total <= 0 or not np.isfinite(total):
        cells = grid * grid
        return AttributionStats(np.full((grid, grid), 1.0 / cells), float(border_mask(h, w, border).mean()),
                                0.0, 1.0, 0.5, np.full(a.shape[-1], 1.0 / a.shape[-1]), 0.0)
    pooled = pool_grid(magnitude, grid) / total
    flat = magnitude.ravel()
    top = max(1, int(np.ceil(0.05 * flat.size)))
    top_mass = np.partition(flat, flat.size - top)[flat.size - top:].sum()
    nonzero = pooled[pooled > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(grid * grid))
    inside = magnitude[inner_block(h, w, border)].sum()
    return AttributionStats(
        grid=pooled,
        border_mass=max(total - float(inside), 0.0) / total,
        concentration=float(top_mass / total),
        entropy=entropy,
        positive_share=float(np.maximum(a, 0.0).sum()) / total,   # positive + negative mass = total
        channel_shares=np.array([absolute[..., c].sum() for c in range(a.shape[-1])]) / total,
        abs_sum=total,
    )


def box_stats(attribution: np.ndarray, box) -> tuple[float, float]:
    """(share of |IG| inside the box, 1.0 if the |IG| peak falls inside it else 0.0: the pointing game).

    box: (x0, y0, x1, y1) in the attribution's pixels; a pixel is inside when its centre is.
    """
    magnitude = np.abs(np.asarray(attribution, np.float64)).sum(axis=-1)
    h, w = magnitude.shape
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    x0, y0, x1, y1 = box
    inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    total = magnitude.sum()
    share = float(magnitude[inside].sum() / total) if total > 0 else 0.0
    peak = np.unravel_index(int(np.argmax(magnitude)), magnitude.shape)
    return share, float(inside[peak] and total > 0)
