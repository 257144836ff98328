"""Attribution quality metrics: deletion / insertion AUC and infidelity (plain numpy around a model).

Both metrics score many perturbed copies of each image. The copies of all
images in a batch are flattened into one stream and built lazily, chunk by
chunk, so memory is O(chunk x H x W x C) whatever the step or sample count;
every chunk has exactly `chunk_size` images (the last one is padded by
repeating its last item, whose scores are dropped), so a `forward` traced
with a fixed input signature - `GradientEngine.forward` - is traced once.

`forward(images) -> outputs` maps float32 (n, H, W, C) pixels to model outputs
(n, K); `score_of(outputs, targets) -> (n,)` turns outputs into the scalar
being explained (`GradientEngine.score_of`: the target's softmax probability or
logit). With an engine: `deletion_insertion_auc(engine.forward, engine.score_of, ...)`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from igaudit.transforms.attribution.baselines import seed_from_id

Forward = Callable[[np.ndarray], np.ndarray]
ScoreOf = Callable[[np.ndarray, np.ndarray], np.ndarray]
RANKINGS = ("positive", "absolute")

# Mixed into the per-image seed so infidelity's noise differs from other draws seeded by the same id
# (e.g. random baselines).
_INFIDELITY_STREAM = 0x1F1DE


def _chunked_scores(forward: Forward, score_of: ScoreOf, make_inputs: Callable[[np.ndarray], np.ndarray],
                    targets: np.ndarray, total: int, chunk_size: int) -> np.ndarray:
    """Scores of `total` flattened items; item k is built by make_inputs(indices) and scored for targets[k]."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    scores = np.empty(total, np.float64)
    for start in range(0, total, chunk_size):
        index = np.arange(start, start + chunk_size)
        valid = index < total
        index = np.minimum(index, total - 1)  # padding repeats the last item; its score is dropped
        outputs = np.asarray(forward(np.ascontiguousarray(make_inputs(index), np.float32)))
        scores[index[valid]] = np.asarray(score_of(outputs[valid], targets[index[valid]]), np.float64)
    return scores


def _as_batch(array, images: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.broadcast_to(np.asarray(array, np.float32), images.shape)
    except ValueError:
        raise ValueError(f"{name} of shape {np.shape(array)} do not match images of shape {images.shape}") from None


def pixel_ranks(attributions: np.ndarray, ranking: str) -> np.ndarray:
    """N x H x W x C attributions -> N x H x W int: each pixel's position in the removal order (0 = first).

    positive: by the signed sum over channels, largest first (pixels the attribution says raise the
    score go first, pixels that lower it go last); absolute: by the sum of |a| over channels, largest
    first (the quantity the masks show). Ties keep raster order; non-finite values count as 0.
    """
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}; got {ranking!r}")
    a = np.asarray(attributions, np.float64)
    values = np.abs(a).sum(axis=-1) if ranking == "absolute" else a.sum(axis=-1)
    values = np.where(np.isfinite(values), values, 0.0).reshape(len(a), int(np.prod(a.shape[1:-1])))
    order = np.argsort(-values, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(values.shape[1])[None, :], axis=1)
    return ranks.reshape(a.shape[:-1])


@dataclasses.dataclass(frozen=True, eq=False)
class DeletionInsertion:
    fractions: np.ndarray   # K + 1 fractions of pixels removed (deletion) / inserted (insertion), 0 .. 1
    deletion: np.ndarray    # N x (K + 1) scores: start at F(x), end at F(baseline)
    insertion: np.ndarray   # N x (K + 1) scores: start at F(baseline), end at F(x)

    @property
    def deletion_auc(self) -> np.ndarray:
        return _trapezoid(self.deletion, self.fractions)

    @property
    def insertion_auc(self) -> np.ndarray:
        return _trapezoid(self.insertion, self.fractions)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return ((y[:, 1:] + y[:, :-1]) * np.diff(x)[None, :]).sum(axis=1) / 2.0


def deletion_insertion_curves(forward: Forward, score_of: ScoreOf, images: np.ndarray, attributions: np.ndarray,
                              targets: np.ndarray, baselines, *, steps: int, chunk_size: int,
                              ranking: str) -> DeletionInsertion:
    """Deletion and insertion curves (Petsiuk et al., RISE) for a batch of N images.

    Pixels (all channels together) are ordered by attribution (see `pixel_ranks`). Step s of K
    (s = 0..K) acts on the first round(s / K * H * W) pixels of that order: deletion replaces them by
    the baseline, insertion starts from the baseline and puts them back. The target's score is taken
    at every step. F(x) and F(baseline) are shared by both curves, so an image costs 2K forward
    passes, run with those of the other images in chunks of `chunk_size`.
    """
    images = np.asarray(images, np.float32)
    baselines = _as_batch(baselines, images, "baselines")
    targets = np.asarray(targets, np.int64)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n = images.shape[0]
    k = int(steps)
    ranks = pixel_ranks(attributions, ranking)
    pixels = int(np.prod(images.shape[1:3]))
    counts = np.round(np.arange(k + 1) * pixels / k).astype(np.int64)
    # Per image, 2K items: x, baseline, deletion steps 1..K-1, insertion steps 1..K-1.
    # Item = x where keep_x, else baseline; keep_x = rank >= count (deletion) or rank < count (insertion).
    inner = np.arange(1, k)
    item_count = np.concatenate([[0, 0], counts[inner], counts[inner]])
    item_insert = np.concatenate([[False, True], np.zeros(k - 1, bool), np.ones(k - 1, bool)])
    per = len(item_count)
    total = n * per

    def make_inputs(index):
        image, item = index // per, index % per
        r = ranks[image]
        c = item_count[item][:, None, None]
        keep_x = np.where(item_insert[item][:, None, None], r < c, r >= c)
        return np.where(keep_x[..., None], images[image], baselines[image])

    scores = _chunked_scores(forward, score_of, make_inputs, np.repeat(targets, per), total, chunk_size)
    scores = scores.reshape(n, per)
    f_x, f_b = scores[:, :1], scores[:, 1:2]
    deletion = np.concatenate([f_x, scores[:, 2:k + 1], f_b], axis=1)
    insertion = np.concatenate([f_b, scores[:, k + 1:], f_x], axis=1)
    return DeletionInsertion(fractions=counts / pixels, deletion=deletion, insertion=insertion)


def deletion_insertion_auc(forward: Forward, score_of: ScoreOf, images: np.ndarray, attributions: np.ndarray,
                           targets: np.ndarray, baselines, *, steps: int, chunk_size: int,
                           ranking: str) -> tuple[np.ndarray, np.ndarray]:
    """Per image (deletion AUC, insertion AUC): the trapezoid areas under the curves of
    `deletion_insertion_curves` over the fraction of pixels in [0, 1], in units of the score.

    Lower deletion AUC and higher insertion AUC mean the attribution ranks pixels better.
    """
    curves = deletion_insertion_curves(forward, score_of, images, attributions, targets, baselines,
                                       steps=steps, chunk_size=chunk_size, ranking=ranking)
    return curves.deletion_auc, curves.insertion_auc


def infidelity(forward: Forward, score_of: ScoreOf, images: np.ndarray, attributions: np.ndarray,
               targets: np.ndarray, *, seed_ids: Sequence[str], baselines=None, samples: int,
               stdev: float, chunk_size: int, normalize: bool = False) -> np.ndarray:
    """Per image, Captum's infidelity: E_I[(I^T a - (F(x) - F(x - I)))^2] with I ~ N(0, stdev^2) per value.

    `stdev` is in pixel units of the attribution space ([0, 1] pixels in igaudit).
    `baselines`: pass them for attributions that are multiplied by (x - baseline) (integrated
    gradients, gradient x input with a zero baseline); then, as Captum's
    `infidelity_perturb_func_decorator(multiply_by_inputs=True)`, the perturbation dotted with the
    attribution is I / (x - baseline) (1 where x == baseline), so that for a linear F exact IG gives
    0. Leave None for local attributions (plain gradients), which are dotted with I itself.
    `normalize`: scale the attributions by the beta minimizing the error first (Captum's normalize).
    The noise of image i comes from a generator seeded by `seed_from_id(seed_ids[i])`, so a rerun,
    another batch composition or another chunk size gives the same value.
    """
    images = np.asarray(images, np.float32)
    attributions = np.asarray(attributions, np.float64)
    targets = np.asarray(targets, np.int64)
    n = images.shape[0]
    if len(seed_ids) != n:
        raise ValueError(f"got {len(seed_ids)} seed ids for {n} images")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if attributions.shape != images.shape:
        raise ValueError(f"attributions of shape {attributions.shape} do not match images of shape {images.shape}")
    if baselines is not None:
        diffs = images.astype(np.float64) - _as_batch(baselines, images, "baselines")
        # I^T a with I scaled by 1 / (x - x'): the attribution divided by (x - x'), zero-safe like Captum
        weights = np.where(diffs != 0, attributions / np.where(diffs != 0, diffs, 1.0), attributions)
    else:
        weights = attributions
    generators = [np.random.default_rng([seed_from_id(str(i)), _INFIDELITY_STREAM]) for i in seed_ids]
    shape = images.shape[1:]
    m = int(samples)
    per = m + 1                                     # item 0: x itself; items 1..m: x - I_s
    total = n * per
    dots = np.zeros((n, m), np.float64)

    def make_inputs(index):
        batch = np.empty((len(index),) + shape, np.float32)
        last = None
        for row, k in enumerate(index.tolist()):
            image, item = divmod(k, per)
            if item == 0:
                batch[row] = images[image]
            elif k == last:                          # padding repeats the last item: no new draw
                batch[row] = batch[row - 1]
            else:
                # items of an image are visited in order exactly once, so each generator is
                # consumed in the same sequence whatever the chunking
                noise = generators[image].standard_normal(shape, dtype=np.float32) * np.float32(stdev)
                dots[image, item - 1] = float(np.tensordot(noise, weights[image], axes=noise.ndim))
                batch[row] = images[image] - noise
            last = k
        return batch

    scores = _chunked_scores(forward, score_of, make_inputs, np.repeat(targets, per), total, chunk_size)
    scores = scores.reshape(n, per)
    deltas = scores[:, :1] - scores[:, 1:]          # F(x) - F(x - I)
    if normalize:
        denom = (dots * dots).sum(axis=1)
        beta = np.where(denom > 0, (dots * deltas).sum(axis=1) / np.where(denom > 0, denom, 1.0), 0.0)
        dots = dots * beta[:, None]
    return ((dots - deltas) ** 2).mean(axis=1)
