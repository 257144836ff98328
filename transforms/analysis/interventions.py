"""Image edits for the interventions, and the descriptors the stamp test compares (numpy only).

Images are float arrays (n, H, W, C) in [0, 1]. A region is a pixel box (y0, y1, x0, x1),
ends exclusive, usually a block of attribution-grid cells (`cells_to_box`).
"""
from __future__ import annotations

import numpy as np

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


def box_area(box: Box) -> int:
    y0, y1, x0, x1 = box
    return max(y1 - y0, 0) * max(x1 - x0, 0)


def fill_from_surroundings(images: np.ndarray, box: Box) -> np.ndarray:
    """A copy with the box replaced by what its surroundings suggest: a linear blend between the pixel
    rows just above and below it and, separately, the columns just left and right of it (a side at the
    image's edge is left out; one side alone is carried across), the two blends averaged. Smooth, with
    the local colours, and no content of the region itself."""
    out = np.array(images, np.float32, copy=True)
    y0, y1, x0, x1 = box
    n, h, w, c = out.shape
    if box_area(box) == 0:
        return out
    estimates = []
    for axis, (a, b, length) in (("v", (y0, y1, h)), ("h", (x0, x1, w))):
        before = a - 1 if a > 0 else None
        after = b if b < length else None
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


def keep_only(images: np.ndarray, box: Box, fill: np.ndarray) -> np.ndarray:
    """Images filled with the constant colour `fill` (C,) everywhere but the box."""
    y0, y1, x0, x1 = box
    out = np.empty_like(np.asarray(images, np.float32))
    out[:] = np.asarray(fill, np.float32)
    out[:, y0:y1, x0:x1] = images[:, y0:y1, x0:x1]
    return out


def paste(images: np.ndarray, patch: np.ndarray, box: Box) -> np.ndarray:
    """A copy of the images with `patch` (box-sized, C channels) in the box."""
    y0, y1, x0, x1 = box
    out = np.array(images, np.float32, copy=True)
    out[:, y0:y1, x0:x1] = patch
    return out


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


def region_vectors(images: np.ndarray, box: Box) -> np.ndarray:
    """(n, area * C): each image's pixels in the box, flattened."""
    y0, y1, x0, x1 = box
    return np.asarray(images[:, y0:y1, x0:x1], np.float64).reshape(len(images), -1)


def template_correlations(vectors: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row with the template (0 where either is flat)."""
    v = vectors - vectors.mean(1, keepdims=True)
    t = template - template.mean()
    norms = np.linalg.norm(v, axis=1) * np.linalg.norm(t)
    return np.divide(v @ t, norms, out=np.zeros(len(v)), where=norms > 1e-12)


# A stamp's pixel agrees with the template within STAMP_TOLERANCE (of [0, 1]) in STAMP_AGREEMENT of the
# images that carry it, and other classes' images differ from it there by STAMP_DISTINCT (median).
STAMP_TOLERANCE = 0.1
STAMP_AGREEMENT = 0.8
STAMP_DISTINCT = 0.2
STAMP_CONTRAST = 3 * STAMP_TOLERANCE   # the stamp's values span at least this much
# ... and it has at least this many such values (pixels x channels): a few coincidences are no stamp.
STAMP_MIN_VALUES = 12


def stamp_scores(relying: np.ndarray, others: np.ndarray) -> tuple[float, float]:
    """(repeat, others): the shares of the relying images and of other classes' images that carry the stamp.

    The stamp is what repeats almost identically: the values (pixels x channels) of the region where
    STAMP_AGREEMENT of the relying images are within STAMP_TOLERANCE of their median (the template)
    and other classes' images typically are not (median distance >= STAMP_DISTINCT). An image carries
    it when STAMP_AGREEMENT of those values match the template. An object's parts vary from one
    instance to the next (a stroke moves by a pixel, a pose turns), so few of its values qualify;
    plain background that every class shares is not distinctive. Fewer than STAMP_MIN_VALUES
    qualifying values, or values spanning less than STAMP_CONTRAST: no stamp (0, 0)."""
    template = np.median(relying, axis=0)
    close = np.abs(relying - template) <= STAMP_TOLERANCE
    distinct = np.median(np.abs(others - template), axis=0) >= STAMP_DISTINCT if len(others) else np.ones_like(template, bool)
    stamp = (close.mean(0) >= STAMP_AGREEMENT) & distinct
    # identity within the tolerance only means something for a pattern with contrast well beyond it
    # (faint content repeats within 0.1 without being stamped)
    if stamp.sum() < STAMP_MIN_VALUES or np.ptp(template[stamp]) < STAMP_CONTRAST:
        return 0.0, 0.0

    def carrying(x):
        return float(np.mean((np.abs(x[:, stamp] - template[stamp]) <= STAMP_TOLERANCE).mean(1) >= STAMP_AGREEMENT))
    return carrying(relying), carrying(others) if len(others) else 0.0


def template_scores(relying: np.ndarray, others: np.ndarray) -> tuple[float, float]:
    """(repeat, others): median correlation of the relying images' descriptors with their own median
    (the template), and of the other classes' descriptors with it (for descriptors that are not pixels
    at fixed places, e.g. spectra)."""
    template = np.median(relying, axis=0)
    repeat = float(np.median(template_correlations(relying, template)))
    other = float(np.median(template_correlations(others, template))) if len(others) else 0.0
    return repeat, other


def colour_variety(class_images: np.ndarray, other_images: np.ndarray, channel: int) -> float:
    """How much less the class's images vary in `channel`'s excess than other classes' images do:
    1 - std(class) / std(others), clipped to [0, 1]. A cast sits on content as varied as any class's
    (near 0); a class whose content is of one colour (a photo of coffee) varies little (near 1)."""
    def excess(x):
        x = np.asarray(x, np.float64)
        return (x[..., channel] - x.mean(-1)).mean((1, 2))
    theirs = float(np.std(excess(other_images)))
    if theirs <= 1e-9:
        return 0.0
    return float(np.clip(1.0 - np.std(excess(class_images)) / theirs, 0.0, 1.0))


def desaturate(images: np.ndarray) -> np.ndarray:
    """Each pixel replaced by the mean of its channels (colour removed, brightness kept)."""
    grey = np.asarray(images, np.float32).mean(axis=-1, keepdims=True)
    return np.repeat(grey, images.shape[-1], axis=-1)


def tint(images: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The images with a per-channel offset added everywhere (clipped to [0, 1])."""
    return np.clip(np.asarray(images, np.float32) + np.asarray(offset, np.float32), 0.0, 1.0)


def frame_excess(images: np.ndarray, channel: int, border: float = 0.1) -> np.ndarray:
    """Per image, how far `channel` stands above the mean of the channels in the border band (the frame,
    where a class's object rarely is): a colour cast covers the frame too, an object's colour does not."""
    n, h, w, c = images.shape
    bh, bw = max(1, int(round(border * h))), max(1, int(round(border * w)))
    frame = np.ones((h, w), bool)
    frame[bh:h - bh, bw:w - bw] = False
    x = np.asarray(images, np.float64)[:, frame]          # (n, pixels, C)
    return (x[..., channel] - x.mean(-1)).mean(1)


def rank_auc(a: np.ndarray, b: np.ndarray) -> float:
    """P(a value from `a` > one from `b`) (+ half the ties): the area under the ROC curve."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not len(a) or not len(b):
        return float("nan")
    greater = (a[:, None] > b[None, :]).mean()
    ties = (a[:, None] == b[None, :]).mean()
    return float(greater + 0.5 * ties)


def outside_mask(h: int, w: int, box) -> np.ndarray:
    """True outside an object box (x0, y0, x1, y1) in pixels (a pixel is inside when its centre is)."""
    x0, y0, x1, y1 = box
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return ~inside


def blur(images: np.ndarray, radius: int) -> np.ndarray:
    """A box blur of side 2 * radius + 1 (edges repeated), separable, on (n, H, W, C) images."""
    out = np.asarray(images, np.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float64)
        size = out.shape[axis]
        hi = np.take(c, np.arange(size) + 2 * radius + 1, axis=axis)
        lo = np.take(c, np.arange(size), axis=axis)
        out = ((hi - lo) / (2 * radius + 1)).astype(np.float32)
    return out


def blur_mask(images: np.ndarray, masks: np.ndarray, radius: int) -> np.ndarray:
    """A copy with each image's masked pixels replaced by the image blurred (`blur`): texture gone, the
    colours and the layout kept."""
    out = np.array(images, np.float32, copy=True)
    out[masks] = blur(images, radius)[masks]
    return out


def fill_mask(images: np.ndarray, masks: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """A copy with each image's masked pixels (masks (n, H, W)) set to the constant colour `fill`."""
    out = np.array(images, np.float32, copy=True)
    out[masks] = np.asarray(fill, np.float32)
    return out


def spectra(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n, H * W): log magnitude spectra of the images' grey levels where `masks` is True (the rest set
    to the image's mean there): a texture's signature, whatever its phase or position."""
    grey = np.asarray(images, np.float64).mean(-1)
    out = []
    for g, m in zip(grey, masks):
        v = np.where(m, g, g[m].mean() if m.any() else g.mean())
        v = v - v.mean()
        out.append(np.log1p(np.abs(np.fft.fft2(v))).ravel())
    return np.array(out)
