"""Path attributions with optional smoothing: the driver shared by IG, expected gradients and plain gradients.

A method names, per image, `inner` paths (start point, items (alpha, weight)); this driver
streams every (noise sample, image, path) through `GradientEngine.gradient_sums`, several paths
per call, multiplies each path's gradient sum as the method says, averages over an image's
paths and reduces over noise samples as `smoothing` says:

  none           the mean over paths;
  smoothgrad     the mean over noisy copies of the input (Smilkov et al.);
  smoothgrad_sq  the mean of squares;
  vargrad        the variance (Adebayo et al.).

Smoothing adds noise to the end point (the input), never the start (baseline), and does not
clip it (SmoothGrad and PAIR's `GetSmoothedMask` do not either). The noise of (image, sample)
comes from `baselines.image_rng`, so it depends on neither batching, order nor chunking.

Memory: a call takes paths until it holds max(8 x chunk, batch x items per path) items (plain IG
of a batch is one call, padding wastes at most 1/8 of a call); an image's paths are reduced as
soon as they all finished, so the host keeps O(paths per call + batch) x H x W x C.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from igaudit.transforms.attribution.baselines import image_rng
from igaudit.transforms.attribution.choices import SMOOTHINGS

MULTIPLIERS = ("diff", "end", "one")


def smoothing_noise(image_id: str, sample: int, shape: tuple, stdev: float) -> np.ndarray:
    """The SmoothGrad noise for one (image, sample): float32 N(0, stdev) of `shape`."""
    return image_rng(image_id, "smoothing", sample).normal(0.0, stdev, size=shape).astype(np.float32)


def noise_samples(smoothing: str, samples: Optional[int]) -> int:
    """Noisy copies per image: 1 without smoothing."""
    return 1 if smoothing == "none" else int(samples)


def path_attributions(engine, images: np.ndarray, targets: np.ndarray, image_ids: Optional[Sequence[str]], *,
                      inner: int, start_of: Callable, alphas_of: Callable, multiply: str, smoothing: str,
                      samples: Optional[int], stdev: Optional[float], end_scores: bool = False):
    """Attributions (N, H, W, C) float32 over N images x noise samples x `inner` paths.

    start_of(i, b, end) -> start point of path b of image i (end: the possibly noisy input);
    alphas_of(i, b) -> (alphas, weights) of its items; multiply: what a path's gradient sum is
    multiplied by: "diff" (end - start), "end" or "one". Returns (attributions, mean F(end) over
    noise samples per image when `end_scores`, else None).
    """
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"smoothing must be one of {', '.join(SMOOTHINGS)}, got {smoothing!r}")
    if multiply not in MULTIPLIERS:
        raise ValueError(f"multiply must be one of {', '.join(MULTIPLIERS)}, got {multiply!r}")
    n = images.shape[0]
    if smoothing != "none" and (samples is None or stdev is None):
        raise ValueError(f"smoothing {smoothing!r} needs samples and stdev")
    copies = noise_samples(smoothing, samples)
    if copies < 1:
        raise ValueError(f"smoothing samples must be >= 1, got {samples}")
    if smoothing != "none":
        if not stdev >= 0:
            raise ValueError(f"smoothing stdev must be >= 0, got {stdev}")
        if image_ids is None or len(image_ids) != n:
            raise ValueError("smoothing needs one image id per image (noise is seeded by image id)")
    squares = smoothing in ("smoothgrad_sq", "vargrad")
    sum1 = np.zeros(images.shape, np.float64)
    sum2 = np.zeros(images.shape, np.float64) if squares else None
    end_score_sum = np.zeros(n, np.float64)
    budget = max(8 * engine.chunk_size, n * len(alphas_of(0, 0)[0]))

    def end_of(i, s):
        if smoothing == "none":
            return images[i]
        return images[i] + smoothing_noise(image_ids[i], s, images.shape[1:], stdev)

    def paths():
        for s in range(copies):
            for i in range(n):
                end = end_of(i, s)
                for b in range(inner):
                    yield s, i, b, end

    open_units: dict = {}           # (s, i) -> running sum of its finished paths

    def run(batch):
        starts = np.stack([start_of(i, b, end) for _, i, b, end in batch])
        ends = np.stack([end for *_, end in batch])
        items = [alphas_of(i, b) for _, i, b, _ in batch]
        item_path = np.concatenate([np.full(len(a), p, np.int32) for p, (a, _) in enumerate(items)])
        sums = engine.gradient_sums(starts, ends, targets[[i for _, i, _, _ in batch]], item_path,
                                    np.concatenate([a for a, _ in items]), np.concatenate([w for _, w in items]))
        if end_scores:
            fresh = [p for p, (_, _, b, _) in enumerate(batch) if b == 0]
            if fresh:
                out = engine.forward(ends[fresh])
                for p, f in zip(fresh, engine.score_of(out, targets[[batch[p][1] for p in fresh]])):
                    end_score_sum[batch[p][1]] += f
        for p, (s, i, b, end) in enumerate(batch):
            if multiply == "diff":
                value = (ends[p] - starts[p]) * sums[p]
            elif multiply == "end":
                value = ends[p] * sums[p]
            else:
                value = sums[p]
            unit = open_units.setdefault((s, i), np.zeros(images.shape[1:], np.float64))
            unit += value
            if b == inner - 1:      # paths arrive in order: this unit is complete
                attribution = open_units.pop((s, i)) / inner
                sum1[i] += attribution
                if squares:
                    sum2[i] += attribution * attribution

    pending, pending_items = [], 0
    for path in paths():
        pending.append(path)
        pending_items += len(alphas_of(path[1], path[2])[0])
        if pending_items >= budget:
            run(pending)
            pending, pending_items = [], 0
    if pending:
        run(pending)
    mean = sum1 / copies
    if smoothing in ("none", "smoothgrad"):
        result = mean
    elif smoothing == "smoothgrad_sq":
        result = sum2 / copies
    else:
        result = np.maximum(sum2 / copies - mean * mean, 0.0)
    return result.astype(np.float32), (end_score_sum / copies if end_scores else None)


def has_completeness(smoothing: str) -> bool:
    """Whether attributions smoothed this way still sum to F(x) - F(x') (in expectation)."""
    return smoothing in ("none", "smoothgrad")
