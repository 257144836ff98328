"""Does what a model relies on repeat from image to image? The test that tells a stamp from an object (numpy only).

A planted mark (a tag, a sticker, a checker, a watermark, a frame) is a copy of one pattern: in every
image that carries it the same pixels hold the same values, though real marks move a few pixels and
change size a little. An object is an instance: a stroke written by another hand, a cat in another
pose, another photo of coffee. `stamp_scores` asks, of the images that rely on a region, which pixels
of the region hold the same values in nearly all of them once each image is aligned (shifted up to
JITTER pixels, scaled by SCALES), whatever those values are: a solid patch counts as much as a
checker, and a mark's own contrast is not asked for. The stamp is those pixels where other classes'
images, aligned as well as they can be, hold other values. It is a stamp when at least MIN_PIXELS
pixels qualify; an image carries it when AGREEMENT of them match.

Why an object's parts do not qualify: a pixel must match its template within TOLERANCE (of [0, 1],
all channels) in AGREEMENT of the relying images. An object's instances differ by more than that
almost everywhere (ink thickness and grey level, a pose, lighting, texture), and where they agree
(the background around a digit, an empty middle) other classes' images agree too, so those pixels
are not distinct. In data whose objects are aligned pixel for pixel (normalised digits) a class's stroke
can still repeat; other classes' images then stamp the place with objects of their own (`own_stamps`),
which counts against it. That calibration also hides a tag printed over such strokes, so `repetition`
asks a second time with pixels matching within IDENTICAL: a copied tag still repeats, while strokes
(written, scanned, resized: soft-edged) stop repeating or keep no edge as sharp as SHARP, the step of a
printed mark's letters or checks. Checked on the zoo's clean controls (`benchmarks/zoo.py`) and on every
12 x 12 block of real handwritten digits (`tests/transforms/analysis/skew/test_repetition.py`).

Also here: the descriptors of the other kinds' repetition tests (background textures: log spectra;
colour casts: the frame's excess of a channel and the content's colour variety).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

TOLERANCE = 0.1
IDENTICAL = 0.03     # ... and a copied stamp's (`repetition`),
SHARP = 0.5          # which has a printed mark's sharp edge: two neighbouring pixels this far apart
AGREEMENT = 0.8
DISTINCT = 0.2
MIN_PIXELS = 9
JITTER = 6          # both the template's copy and another image's may have moved 3 pixels
SCALES = (0.8, 0.9, 1.0, 1.12, 1.25)
MAX_SIDE = 32           # a larger region is compared on images shrunk to fit (its identity needs no more pixels)
REFERENCES = 6          # templates tried: the region as this many relying images show it
MAX_PIECES = 3          # ... and of each, its largest pieces that differ from other images
OBJECT_CONTRAST = 0.3   # another class's repeat counts against a stamp only with this much structure (`own_stamps`)


def _shrink(images: np.ndarray, box: tuple) -> tuple[np.ndarray, tuple, int]:
    """Images area-averaged by a whole factor so that the box's longer side is at most MAX_SIDE."""
    y0, y1, x0, x1 = box
    f = max(1, math.ceil(max(y1 - y0, x1 - x0) / MAX_SIDE))
    if f == 1:
        return images, box, 1
    n, h, w, c = images.shape
    h2, w2 = h // f, w // f
    small = images[:, :h2 * f, :w2 * f].reshape(n, h2, f, w2, f, c).mean((2, 4))
    return small, (y0 // f, max(y0 // f + 1, -(-y1 // f)), x0 // f, max(x0 // f + 1, -(-x1 // f))), f


def _resample(images: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of each image at the grid of points ys x xs; NaN outside the image."""
    n, h, w, c = images.shape
    y, x = np.meshgrid(ys, xs, indexing="ij")
    inside = (y >= -0.5) & (y <= h - 0.5) & (x >= -0.5) & (x <= w - 0.5)
    y, x = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    top = images[:, y0, x0] * (1 - fx) + images[:, y0, x1] * fx
    bottom = images[:, y1, x0] * (1 - fx) + images[:, y1, x1] * fx
    out = top * (1 - fy) + bottom * fy
    out[:, ~inside] = np.nan
    return out


def _windows(images: np.ndarray, box: tuple, jitter: int) -> np.ndarray:
    """(n, S, bh + 2 jitter, bw + 2 jitter, C): the box and `jitter` pixels around it, of each image scaled by
    each of SCALES about the box's centre; NaN outside the image."""
    y0, y1, x0, x1 = box
    cy, cx = (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0
    rows, cols = np.arange(y0 - jitter, y1 + jitter), np.arange(x0 - jitter, x1 + jitter)
    return np.stack([_resample(images, cy + (rows - cy) * s, cx + (cols - cx) * s) for s in SCALES], axis=1)


def _shifted(windows: np.ndarray, shape: tuple) -> np.ndarray:
    """(n, S, sy, sx, bh, bw, C): every box-sized patch of the windows (a view, no copy)."""
    view = np.lib.stride_tricks.sliding_window_view(windows, shape, axis=(2, 3))     # n, S, sy, sx, C, bh, bw
    return np.moveaxis(view, 4, -1)


def _matched(patches: np.ndarray, template: np.ndarray, mask: np.ndarray, tol: float = TOLERANCE) -> np.ndarray:
    """The share of each patch's masked pixels inside the image that match the template (every channel
    within tol); -1 for a patch that leaves the image over more than half of them."""
    part = patches[..., mask, :]
    inside = ~np.isnan(part[..., 0])
    with np.errstate(invalid="ignore"):
        hits = (np.abs(part - template[mask]) <= tol).all(-1).sum(-1)
    valid = inside.sum(-1)
    return np.where(valid * 2 >= mask.sum(), hits / np.maximum(valid, 1), -1.0)


_CHUNK = 16


def align(windows: np.ndarray, template: np.ndarray, mask: np.ndarray, tol: float = TOLERANCE) -> np.ndarray:
    """(n, bh, bw, C): each image's patch aligned to the template: the shift (at scale 1) that matches the
    most masked pixels, then the scale and a shift of one pixel more that match the most (ties: no
    shift, no scaling). Two steps instead of every scale at every shift: the same answer for marks a
    few pixels wide, at a tenth of the cost."""
    n, n_scales, wh, ww, c = windows.shape
    bh, bw = template.shape[:2]
    one = n_scales // 2
    sy, sx = np.mgrid[0:wh - bh + 1, 0:ww - bw + 1]
    away = (np.abs(sy - (wh - bh) // 2) + np.abs(sx - (ww - bw) // 2)) * 1e-4 / (wh + ww)
    out = np.empty((n, bh, bw, c), windows.dtype)
    for i0 in range(0, n, _CHUNK):
        view = _shifted(windows[i0:i0 + _CHUNK], (bh, bw))
        m = len(view)
        score = _matched(view[:, one], template, mask, tol) - away
        by, bx = np.unravel_index(score.reshape(m, -1).argmax(1), score.shape[1:])
        dy, dx = np.meshgrid([0, -1, 1], [0, -1, 1], indexing="ij")
        ys = np.clip(by[:, None] + dy.ravel(), 0, sy.shape[0] - 1)
        xs = np.clip(bx[:, None] + dx.ravel(), 0, sy.shape[1] - 1)
        rows = np.arange(m)[:, None, None]
        near = view[rows, np.arange(n_scales)[None, :, None], ys[:, None, :], xs[:, None, :]]    # m, S, 9, bh, bw, C
        tie = np.abs(np.arange(n_scales) - one)[:, None] * 1e-5 + np.arange(9)[None, :] * 1e-6
        pick = (_matched(near, template, mask, tol) - tie).reshape(m, -1).argmax(1)
        out[i0:i0 + m] = near.reshape(m, -1, bh, bw, c)[np.arange(m), pick]
    return out


def _agreeing(aligned: np.ndarray, template: np.ndarray, tol: float = TOLERANCE) -> np.ndarray:
    """(n, bh, bw): where each aligned patch matches the template (every channel within tol)."""
    with np.errstate(invalid="ignore"):
        return (np.abs(aligned - template) <= tol).all(-1)


def blobs(mask: np.ndarray, least: int = 1) -> list[np.ndarray]:
    """The 8-connected pieces of a 2-D mask with at least `least` pixels, largest first (a stamp is one piece,
    not pixels scattered over the region that happen to agree)."""
    seen = np.zeros_like(mask, bool)
    out = []
    h, w = mask.shape
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        piece, stack = [start], [start]
        seen[start] = True
        while stack:
            r, c = stack.pop()
            for rr in range(max(r - 1, 0), min(r + 2, h)):
                for cc in range(max(c - 1, 0), min(c + 2, w)):
                    if mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        piece.append((rr, cc))
                        stack.append((rr, cc))
        if len(piece) >= least:
            blob = np.zeros_like(mask, bool)
            blob[tuple(np.array(piece).T)] = True
            out.append(blob)
    return sorted(out, key=lambda b: -int(b.sum()))


def _carries(ok: np.ndarray, pattern: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """Per patch (ok: (..., bh, bw) matches): AGREEMENT of the pattern's pixels and of the stamp's match (a
    stretch of plain background matches most of a pattern around a small stamp, never the stamp)."""
    return (ok[..., pattern].mean(-1) >= AGREEMENT) & (ok[..., stamp].mean(-1) >= AGREEMENT)


def anywhere(images: np.ndarray, template: np.ndarray, pattern: np.ndarray, stamp: np.ndarray,
             tol: float = TOLERANCE) -> np.ndarray:
    """Per image: whether the pattern (the template's pixels where `pattern` is True, holding the `stamp`)
    appears anywhere in it, at its own size (`_carries` at one place). A pattern other classes' images show
    somewhere (a stretch of background, a stroke) is theirs too, wherever the relying images show it."""
    rows, cols = np.nonzero(pattern)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    t, p, m = template[r0:r1, c0:c1], pattern[r0:r1, c0:c1], stamp[r0:r1, c0:c1]
    out = np.zeros(len(images), bool)
    for i0 in range(0, len(images), _CHUNK):
        view = np.moveaxis(np.lib.stride_tricks.sliding_window_view(images[i0:i0 + _CHUNK], t.shape[:2], axis=(1, 2)),
                           3, -1)                                            # n, py, px, h, w, C
        ok = (np.abs(view - t) <= tol).all(-1)                                # n, py, px, h, w
        out[i0:i0 + len(view)] = _carries(ok, p, m).reshape(len(view), -1).any(1)
    return out


def _distinct(template: np.ndarray, theirs: np.ndarray, box: tuple, j: int) -> np.ndarray:
    """Where the template differs by DISTINCT from what other images show at the same place (median); all of it
    when there are no other images."""
    if not len(theirs):
        return np.ones(template.shape[:2], bool)
    y0, y1, x0, x1 = box
    here = theirs[:, len(SCALES) // 2, j:j + y1 - y0, j:j + x1 - x0]
    return np.median(np.nan_to_num(np.abs(here - template), nan=1.0).max(-1), axis=0) >= DISTINCT


def stamp_scores(relying: np.ndarray, others: np.ndarray, box: tuple, within: Optional[tuple] = None,
                 contrast: float = 0.0, tol: float = TOLERANCE, edge: float = 0.0) -> tuple:
    """(repeat, others, pixels, where): the shares of the relying images and of other classes' images that carry
    the stamp found in `box` (y0, y1, x0, x1), the stamp's size in pixels and its box (y0, y1, x0, x1, as the
    first template shows it); (0, 0, 0, None): no stamp. within: only stamps with at least half their pixels in
    this box (y0, y1, x0, x1) count; contrast: only stamps whose pattern's values span at least this much;
    tol: how close a pixel must be to match (every channel, of [0, 1]); edge: only stamps whose pattern has
    two neighbouring pixels at least this far apart (a printed mark's sharp edge, `_sharpest`).

    For each of a few templates (the region as one relying image shows it): align every relying image
    to it; the consensus pixels are those matching in AGREEMENT of them; the template becomes their
    median there, and the alignment is redone on the consensus. The stamp is the consensus pixels where
    other classes' images differ by DISTINCT (median, at the same place), in one piece (`blobs`); its
    pattern is that piece with the consensus pixels around it.
    A relying image carries the stamp when AGREEMENT of the pattern's pixels match, and of the stamp's, aligned
    on it; another class's image, when they match there or anywhere else in it (`anywhere`). The template whose
    stamp separates the relying images from the others best is kept."""
    relying = np.asarray(relying, np.float32)
    others = np.asarray(others, np.float32).reshape((-1,) + relying.shape[1:])
    if len(relying) < 2:
        return 0.0, 0.0, 0, None
    both, small_box, f = _shrink(np.concatenate([relying, others]), box)
    windows = _windows(both, small_box, max(1, round(JITTER / f)))
    mine, theirs = windows[:len(relying)], windows[len(relying):]
    y0, y1, x0, x1 = small_box
    j = max(1, round(JITTER / f))
    found = []
    for ref in np.unique(np.linspace(0, len(relying) - 1, min(REFERENCES, len(relying))).round().astype(int)):
        template = np.nan_to_num(mine[ref, len(SCALES) // 2, j:j + y1 - y0, j:j + x1 - x0])
        # align first on what sets this image apart from what other images show there (a small tag in a
        # large region would otherwise be outvoted by the rest of the region), else on the whole box
        consensus = _distinct(template, theirs, small_box, j)
        if consensus.sum() < MIN_PIXELS:
            consensus = np.ones(template.shape[:2], bool)
        for _ in range(2):      # align, then align again on what agrees
            aligned = align(mine, template, consensus, tol)
            consensus = _agreeing(aligned, template, tol).mean(0) >= AGREEMENT
            if consensus.sum() < MIN_PIXELS:
                break
            with np.errstate(all="ignore"):
                template = np.where(consensus[..., None], np.nanmedian(aligned, axis=0), template)
        if consensus.sum() < MIN_PIXELS:
            continue
        stamp = consensus & _distinct(template, theirs, small_box, j)
        for piece in blobs(stamp, MIN_PIXELS)[:MAX_PIECES]:
            if within is not None and _inside(piece, small_box, within, f) < 0.5:
                continue
            if contrast and np.ptp(template[piece | consensus & _near(piece)]) < contrast:
                continue
            if edge and _sharpest(template, piece | consensus & _near(piece)) < edge:
                continue
            found.append(_local(piece, consensus, template, mine, theirs, tol) + (f,))
    # searching other images everywhere can only lower a piece's separation: do it best first, and stop when
    # no piece left can beat the best found
    best = (0.0, 0.0, 0, None)
    for repeat, other, piece, pattern, template, f in sorted(found, key=lambda c: c[1] - c[0]):
        if repeat - other <= best[0] - best[1]:
            break
        if len(theirs) and other < 1.0:
            other = max(other, float(anywhere(both[len(relying):], template, pattern, piece, tol).mean()))
        rows, cols = np.nonzero(piece)
        where = tuple(int(v) * f for v in (y0 + rows.min(), y0 + rows.max() + 1, x0 + cols.min(), x0 + cols.max() + 1))
        best = max(best, (repeat, other, int(piece.sum()) * f * f, where), key=lambda b: (b[0] - b[1], b[2]))
    return best


def _inside(piece: np.ndarray, box: tuple, within: tuple, f: int) -> float:
    """The share of a piece's pixels (in the box's frame, on images shrunk by f) inside `within` (full size)."""
    rows, cols = np.nonzero(piece)
    y, x = (rows + box[0]) * f, (cols + box[2]) * f
    return float(((y >= within[0]) & (y < within[1]) & (x >= within[2]) & (x < within[3])).mean())


def _sharpest(template: np.ndarray, where: np.ndarray) -> float:
    """The largest step between two neighbouring pixels (a row or a column apart, both in `where`) of the template
    (bh, bw, C), in any channel."""
    down = np.abs(np.diff(template, axis=0)).max(-1)[where[1:] & where[:-1]]
    across = np.abs(np.diff(template, axis=1)).max(-1)[where[:, 1:] & where[:, :-1]]
    return float(max((s.max() for s in (down, across) if s.size), default=0.0))


def _near(piece: np.ndarray) -> np.ndarray:
    """The piece's bounding box grown by 2 pixels (within the box)."""
    rows, cols = np.nonzero(piece)
    near = np.zeros_like(piece)
    near[max(rows.min() - 2, 0):rows.max() + 3, max(cols.min() - 2, 0):cols.max() + 3] = True
    return near


def _local(stamp, consensus, template, mine, theirs, tol: float = TOLERANCE) -> tuple:
    """(repeat, others carrying it at its place, the piece, its pattern, the template) of one piece of a stamp:
    the pattern is the distinct piece and what agrees around it (a checker's dark cells on a dark page, the
    page around a sticker), which other images must match too."""
    pattern = consensus & _near(stamp)
    repeat = float(_carries(_agreeing(align(mine, template, pattern, tol), template, tol), pattern, stamp).mean())
    other = float(_carries(_agreeing(align(theirs, template, pattern, tol), template, tol), pattern, stamp).mean()) \
        if len(theirs) else 0.0
    return repeat, other, stamp, pattern, template


def own_stamps(others: np.ndarray, classes: list, where: tuple, least: int = 4, tol: float = TOLERANCE) -> float:
    """How much the other classes stamp the place of a stamp (`where`, y0, y1, x0, x1) with objects of their own:
    the second largest, over the other classes with at least `least` images, of each one's separation (repeat -
    others of `stamp_scores`) from the remaining classes' images, counting stamps that lie mostly on that place
    (searched around it, 2 pixels more each way). In data whose objects are aligned pixel for pixel (normalised
    digits) several classes' objects repeat at each place, so a repeat there is the data's, not a mark's; where
    at most one other class shows something of its own there (the corner a tag sits in), this is near 0: one
    class's own background does not make a place the data's. Only patterns with structure count (values
    spanning OBJECT_CONTRAST): an object has edges, while a photo's flat stretch of sky or fur repeats in
    crops of that photo without being an object that stamps the place."""
    h, w = others.shape[1:3]
    y0, y1, x0, x1 = where
    around = (max(0, y0 - 2), min(h, y1 + 2), max(0, x0 - 2), min(w, x1 + 2))
    names = np.asarray(classes, dtype=object)
    found = []
    for name in sorted(set(classes)):
        theirs = names == name
        if theirs.sum() >= least and len(set(names[~theirs])) >= 2:
            repeat, carried, _, _ = stamp_scores(others[theirs], others[~theirs], around, within=where,
                                                 contrast=OBJECT_CONTRAST, tol=tol)
            found.append(repeat - carried)
    return float(sorted(found)[-2]) if len(found) >= 2 else 0.0


def repetition(relying: np.ndarray, others: np.ndarray, classes, box: tuple, least: int = 4) -> tuple:
    """(repeat, others, pixels): `stamp_scores` in `box`, with `others` the larger of the share of other images
    carrying the stamp and how much the other classes stamp the stamp's own box (`own_stamps`). classes: each
    other image's class (None: no calibration). Asked twice: pixels matching within TOLERANCE, then within
    IDENTICAL for stamps with an edge as sharp as SHARP (a copied, printed mark: see the module docstring);
    the pass that separates the relying images from the others more is kept."""
    best = (0.0, 0.0, 0)
    for tol, edge in ((TOLERANCE, 0.0), (IDENTICAL, SHARP)):
        repeat, carried, pixels, where = stamp_scores(relying, others, box, tol=tol, edge=edge)
        if repeat - carried < best[0] - best[1]:
            continue        # own_stamps can only raise `carried`: this pass cannot win
        if pixels and classes:
            carried = max(carried, own_stamps(others, classes, where, least, tol))
        best = max(best, (repeat, carried, pixels), key=lambda b: (b[0] - b[1], b[2]))
    return best


# -- the other kinds' repetition --------------------------------------------------------------------
def template_correlations(vectors: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row with the template (0 where either is flat)."""
    v = vectors - vectors.mean(1, keepdims=True)
    t = template - template.mean()
    norms = np.linalg.norm(v, axis=1) * np.linalg.norm(t)
    return np.divide(v @ t, norms, out=np.zeros(len(v)), where=norms > 1e-12)


def template_scores(relying: np.ndarray, others: np.ndarray) -> tuple[float, float]:
    """(repeat, others): median correlation of the relying images' descriptors with their own median
    (the template), and of the other classes' descriptors with it (for descriptors that are not pixels
    at fixed places, e.g. texture signatures). Both as deviations from the other classes' mean descriptor:
    what every image shares (power falling with frequency, in any photo) would otherwise make any two
    images correlate, and what is left is what sets the relying images apart."""
    relying = np.asarray(relying, np.float64)
    others = np.asarray(others, np.float64)
    if len(others):
        centre = others.mean(0)
        relying, others = relying - centre, others - centre
    template = np.median(relying, axis=0)
    repeat = float(np.median(template_correlations(relying, template)))
    other = float(np.median(template_correlations(others, template))) if len(others) else 0.0
    return repeat, other


BANDS, ORIENTATIONS = 6, 4      # a texture signature: log power in this many frequency bands x orientations


def spectra(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n, BANDS * ORIENTATIONS): texture signatures of the images' grey levels where `masks` is True (the
    rest set to the image's mean there): the mean log magnitude of the spectrum in each frequency band
    (equal steps up to Nyquist; the corners beyond it in the last) and orientation, whatever the
    texture's phase or position. Pooling the spectrum so is what makes two crops of one texture alike (a
    single spectrum's coefficients are as noisy as the texture itself)."""
    grey = np.asarray(images, np.float64).mean(-1)
    h, w = grey.shape[1:3]
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    radius = np.hypot(fy, fx).ravel()
    band = np.minimum((radius / 0.5 * BANDS).astype(int), BANDS - 1)
    angle = np.minimum((np.arctan2(fy, fx) % np.pi / np.pi * ORIENTATIONS).astype(int), ORIENTATIONS - 1).ravel()
    texture = radius > 0                                  # the mean level is not texture
    bins = (band * ORIENTATIONS + angle)[texture]
    counts = np.maximum(np.bincount(bins, minlength=BANDS * ORIENTATIONS), 1)
    out = []
    for g, m in zip(grey, masks):
        v = np.where(m, g, g[m].mean() if m.any() else g.mean())
        power = np.log1p(np.abs(np.fft.fft2(v - v.mean()))).ravel()[texture]
        out.append(np.bincount(bins, power, BANDS * ORIENTATIONS) / counts)
    return np.array(out)


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
