"""Image edits for the interventions (numpy only).

Images are float arrays (n, H, W, C) in [0, 1]. A region is a list of pixel boxes (y0, y1, x0, x1), ends
exclusive: one box for a block of attribution-grid cells, the four sides of a frame for a frame
(`cells_to_boxes`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from igaudit.transforms.analysis.regions import is_frame

Box = tuple  # (y0, y1, x0, x1)


def cell_edges(grid: int, size: int) -> np.ndarray:
    """Pixel edges of the grid's cells along one side (as summarize.pool_grid pools them): cell k covers
    [edges[k], edges[k + 1])."""
    return -((-np.arange(grid + 1) * size) // grid)


def cells_to_box(cells, grid: int, h: int, w: int) -> Box:
    """The pixel box of cell rows r0..r1-1 and columns c0..c1-1 of a grid x grid grid."""
    r0, r1, c0, c1 = (int(v) for v in cells)
    rows, cols = cell_edges(grid, h), cell_edges(grid, w)
    return int(rows[r0]), int(rows[r1]), int(cols[c0]), int(cols[c1])


def cells_to_boxes(cells, grid: int, h: int, w: int) -> list:
    """The pixel boxes of a region of grid cells: a block (r0, r1, c0, c1) is one box; a frame (r0, r1, c0, c1,
    depth) is its four sides (top and bottom across the block, left and right between them)."""
    if not is_frame(cells):
        return [cells_to_box(cells, grid, h, w)]
    r0, r1, c0, c1, d = (int(v) for v in cells)
    return [cells_to_box(b, grid, h, w) for b in ((r0, r0 + d, c0, c1), (r1 - d, r1, c0, c1),
                                                  (r0 + d, r1 - d, c0, c0 + d), (r0 + d, r1 - d, c1 - d, c1))]


def box_area(box: Box) -> int:
    y0, y1, x0, x1 = box
    return max(y1 - y0, 0) * max(x1 - x0, 0)


def fill_from_surroundings(images: np.ndarray, box: Box, region: Optional[np.ndarray] = None) -> np.ndarray:
    """A copy with the box replaced by what its surroundings suggest: a linear blend between the pixel
    rows just above and below it and, separately, the columns just left and right of it (a side at the
    image's edge is left out; one side alone is carried across), the two blends averaged. Smooth, with
    the local colours, and no content of the region itself. region: (H, W) True on the whole region the
    box belongs to; a neighbouring row or column mostly inside it is left out too (a frame's side is
    filled from the image inside the frame, not from the frame's other sides)."""
    out = np.array(images, np.float32, copy=True)
    y0, y1, x0, x1 = box
    n, h, w, c = out.shape
    if box_area(box) == 0:
        return out

    def outside(line) -> bool:
        return region is None or region[line].mean() < 0.5

    estimates = []
    for axis, (a, b, length) in (("v", (y0, y1, h)), ("h", (x0, x1, w))):
        line = (lambda i: (i, slice(x0, x1))) if axis == "v" else (lambda i: (slice(y0, y1), i))
        before = a - 1 if a > 0 and outside(line(a - 1)) else None
        after = b if b < length and outside(line(b)) else None
        if before is None and after is None:
            continue
        span = b - a
        t = ((np.arange(span) + 1.0) / (span + 1.0)).astype(np.float32)
        if axis == "v":
            top = out[:, before, x0:x1][:, None] if before is not None else None
            bottom = out[:, after, x0:x1][:, None] if after is not None else None
            top = bottom if top is None else top
            bottom = top if bottom is None else bottom
            estimates.append(top * (1 - t)[None, :, None, None] + bottom * t[None, :, None, None])
        else:
            left = out[:, y0:y1, before][:, :, None] if before is not None else None
            right = out[:, y0:y1, after][:, :, None] if after is not None else None
            left = right if left is None else left
            right = left if right is None else right
            estimates.append(left * (1 - t)[None, None, :, None] + right * t[None, None, :, None])
    if not estimates:   # the box is the whole image: nothing around it
        out[:] = out.mean(axis=(1, 2), keepdims=True)
        return out
    out[:, y0:y1, x0:x1] = sum(estimates) / len(estimates)
    return out


def remove(images: np.ndarray, boxes: list) -> np.ndarray:
    """A copy with each box of a region filled from its surroundings, never from the region's other boxes.
    A region of several boxes (a frame's sides) is filled twice, the second pass from the first: the row
    beside the frame's top side is mostly the image inside but, at its ends, the left and right sides,
    which the first pass has filled from the image inside by the time the second pass reads them."""
    out = np.array(images, np.float32, copy=True)
    region = None
    if len(boxes) > 1:
        region = np.zeros(out.shape[1:3], bool)
        for y0, y1, x0, x1 in boxes:
            region[y0:y1, x0:x1] = True
    for _ in range(2 if len(boxes) > 1 else 1):
        for box in boxes:
            out = fill_from_surroundings(out, box, region)
    return out


def keep_only(images: np.ndarray, boxes: list, fill: np.ndarray) -> np.ndarray:
    """Images filled with the constant colour `fill` (C,) everywhere but the region's boxes."""
    out = np.empty_like(np.asarray(images, np.float32))
    out[:] = np.asarray(fill, np.float32)
    for y0, y1, x0, x1 in boxes:
        out[:, y0:y1, x0:x1] = images[:, y0:y1, x0:x1]
    return out


def transplant(recipients: np.ndarray, donors: np.ndarray, boxes: list) -> np.ndarray:
    """A copy of the recipients with the region's content taken from the donors (recipient i gets donor
    i mod len(donors)): the region as it appears in real images, pasted in place."""
    out = np.array(recipients, np.float32, copy=True)
    take = np.arange(len(out)) % len(donors)
    for y0, y1, x0, x1 in boxes:
        out[:, y0:y1, x0:x1] = np.asarray(donors, np.float32)[take, y0:y1, x0:x1]
    return out


def control_regions(boxes: list, h: int, w: int, count: int, seed: int = 0) -> list:
    """Up to `count` regions of the same shape elsewhere, for the controls: for one box, boxes of its size at
    seeded places that do not overlap it (`control_boxes`); for a frame, frames of the same depth further
    in (rings at seeded insets)."""
    if len(boxes) == 1:
        return [[b] for b in control_boxes(boxes[0], h, w, count, seed)]
    depth = boxes[0][1] - boxes[0][0]
    insets = list(range(depth, (min(h, w) - 2 * depth) // 2 - depth + 1))
    if not insets:
        return []
    rng = np.random.default_rng([seed, depth, h, w])
    picks = sorted(rng.choice(insets, size=min(count, len(insets)), replace=False))
    return [[(i, i + depth, i, w - i), (h - i - depth, h - i, i, w - i), (i + depth, h - i - depth, i, i + depth),
             (i + depth, h - i - depth, w - i - depth, w - i)] for i in picks]


def control_boxes(box: Box, h: int, w: int, count: int, seed: int = 0) -> list[Box]:
    """Up to `count` boxes of the box's size, at seeded positions that do not overlap it (none when the
    box is too big to have any)."""
    y0, y1, x0, x1 = box
    bh, bw = y1 - y0, x1 - x0
    free = [(y, x) for y in range(0, h - bh + 1) for x in range(0, w - bw + 1)
            if y + bh <= y0 or y >= y1 or x + bw <= x0 or x >= x1]
    if not free:
        return []
    rng = np.random.default_rng([seed, y0, y1, x0, x1])
    picks = rng.choice(len(free), size=min(count, len(free)), replace=False)
    return [(free[i][0], free[i][0] + bh, free[i][1], free[i][1] + bw) for i in sorted(picks)]


def scale_channels(images: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """The images with each channel multiplied by its gain (C,) everywhere (clipped to [0, 1]): a colour cast
    as a camera makes one, or undone (1 / gain)."""
    return np.clip(np.asarray(images, np.float32) * np.asarray(gain, np.float32), 0.0, 1.0)


def outside_mask(h: int, w: int, box) -> np.ndarray:
    """True outside an object box (x0, y0, x1, y1) in pixels (a pixel is inside when its centre is)."""
    x0, y0, x1, y1 = box
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return ~inside


def fill_mask(images: np.ndarray, masks: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """A copy with each image's masked pixels (masks (n, H, W)) set to the constant colour `fill`."""
    out = np.array(images, np.float32, copy=True)
    out[masks] = np.asarray(fill, np.float32)
    return out
