"""IG on a path grid refined per image where the gradient changes: `rule: adaptive` with `steps: auto`.

Why: for ReLU / max-pool networks the gradient along the path jumps wherever a
unit switches, so every fixed rule converges only like 1 / steps, and the
jumps are not spread evenly (on the demo CNN most sit near the baseline). A
grid that puts its samples around the jumps needs a fraction of the samples
for the same completeness gap (benchmarks/RESULTS.md, "Rules").

How, per image (images of a batch refine together, so chunks stay full):
  - start with the uniform grid of `start_steps` intervals on [0, 1];
  - each node n holds C_n = (x - x') * grad F(x' + a_n (x - x')) (H x W x C);
  - the attribution is the trapezoid rule on the (non-uniform) grid:
    IG = sum_n w_n C_n, w_n = (a_{n+1} - a_{n-1}) / 2;
  - each interval [a, b] has a variation V = (b - a) / 2 * ||C_b - C_a||_1: a bound on
    its per-pixel trapezoid error when each pixel's integrand is monotone on it;
  - stop when the completeness gap |sum(IG) - (F(x) - F(x'))| <= max(tolerance *
    |F(x) - F(x')|, atol) and sum V <= max(variation_tolerance * ||IG||_1, atol), or at
    max_steps intervals;
  - else bisect the intervals with the largest V, in decreasing order, until
    they hold `REFINE_SHARE` of sum V and number at least `MIN_SPLITS`, and evaluate
    the new midpoints: one gradient call per round for the whole batch.

Rounds cost time beyond their samples (a call each, smaller batches), so each
round splits at least MIN_SPLITS intervals per image: in simulation on the demo
CNN that cut the rounds a batch of 16 needs from ~14 to ~9 for ~5% more samples.

The variation test is what keeps the per-pixel error in check: stopping on the
completeness gap alone (a sum over pixels and intervals) would stop as soon as
errors of opposite sign cancel: on the demo CNN, in simulation, a 1% gap with ~14
samples but the per-pixel error of a 32-step trapezoid. Measured: benchmarks/RESULTS.md.

Memory: every node's C_n is kept until the image is done, (steps + 1) x H x W x
C float32 per image, so `max_steps` bounds it (129 nodes of 224 x 224 x 3: 78 MB).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from transforms.ig import trapezoid_weights

REFINE_SHARE = 0.3      # bisect the largest-variation intervals holding this share of the total,
MIN_SPLITS = 4          # and at least this many (fewer, fuller gradient calls; see the module docstring)
MIN_WIDTH = 2.0 ** -20  # intervals narrower than this are never split (float32 alphas)


def _interval_variation(widths: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return widths / 2 * np.abs(right - left).sum(axis=1, dtype=np.float64)


class _Path:
    """One image's grid: nodes, their contributions C_n, and (kept up to date as nodes are
    inserted, so a round costs O(new nodes x D), not O(all nodes x D)) each interval's
    variation and the trapezoid attribution sum_n w_n C_n."""

    def __init__(self, alphas: np.ndarray, contributions: np.ndarray):
        self.alphas = alphas                      # (k,) sorted, float64
        self.contributions = contributions        # (k, D) float32: (x - x') * gradient at each node
        self.variation = _interval_variation(np.diff(alphas), contributions[:-1], contributions[1:])
        self.attribution = trapezoid_weights(alphas) @ contributions.astype(np.float64)

    def bisect(self, split: np.ndarray, contributions: np.ndarray) -> None:
        """Insert the midpoints of intervals `split` (sorted) with their contributions."""
        a, c = self.alphas, self.contributions
        widths = a[split + 1] - a[split]
        left, right = c[split].astype(np.float64), c[split + 1].astype(np.float64)
        mid = contributions.astype(np.float64)
        # interval [a, b] -> [a, m], [m, b]: w_a and w_b lose h/4 each, the midpoint gains h/2
        self.attribution += (widths[:, None] / 2 * mid - widths[:, None] / 4 * (left + right)).sum(axis=0)
        halves = widths / 2
        variation = self.variation.copy()
        variation[split] = _interval_variation(halves, c[split], contributions)
        self.variation = np.insert(variation, split + 1, _interval_variation(halves, contributions, c[split + 1]))
        self.alphas = np.insert(a, split + 1, a[split] + halves)
        self.contributions = np.insert(c, split + 1, contributions, axis=0)


def intervals_to_split(variation: np.ndarray, widths: np.ndarray, room: int) -> np.ndarray:
    """Indices of the intervals to bisect: largest variation first, until they hold
    REFINE_SHARE of the total and number at least MIN_SPLITS; at most `room`; never narrower
    than MIN_WIDTH or without variation."""
    order = [j for j in np.argsort(-variation, kind="stable") if widths[j] > MIN_WIDTH and variation[j] > 0]
    if not order or room < 1:
        return np.zeros(0, np.int64)
    held = np.cumsum(variation[order])
    count = max(int(np.searchsorted(held, REFINE_SHARE * variation.sum())) + 1, MIN_SPLITS)
    return np.sort(np.asarray(order[:min(count, room)], np.int64))


def refined_ig(evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray],
               diffs: np.ndarray, delta: np.ndarray, *, tolerance: float, variation_tolerance: float,
               max_steps: int, start_steps: int = 8, atol: float = 1e-6, stop_early: bool = True) -> dict:
    """Refine every image's grid until both tests pass (module docstring).

    stop_early=False: a fixed budget instead (`rule: adaptive` with a number of steps):
    refine every image to max_steps intervals, placed the same way; `converged` then
    still says whether both tests pass at the end.

    evaluate(image_index (P,), alphas (P,)) -> gradients (P, H, W, C): the gradient of F
    at baseline + alpha (input - baseline) of each listed image.
    diffs: (N, H, W, C) input - baseline. delta: (N,) F(x) - F(x').

    Returns attributions (N, H, W, C) float32, steps (intervals), gradient_samples
    (nodes), converged (both tests passed), rounds (gradient calls).
    """
    if not tolerance > 0 or not variation_tolerance > 0:
        raise ValueError(f"tolerances must be > 0, got {tolerance}, {variation_tolerance}")
    start_steps, max_steps = int(start_steps), int(max_steps)
    if start_steps < 1 or max_steps < start_steps:
        raise ValueError(f"need 1 <= start_steps <= max_steps, got {start_steps}, {max_steps}")
    n = len(diffs)
    flat = diffs.reshape(n, -1).astype(np.float32)
    allowed_gap = np.maximum(tolerance * np.abs(delta), atol)

    def run(index: np.ndarray, alphas: np.ndarray):
        return evaluate(index, alphas).reshape(len(index), -1) * flat[index]

    grid = np.linspace(0.0, 1.0, start_steps + 1)
    index = np.repeat(np.arange(n), len(grid))
    contributions = run(index, np.tile(grid, n))
    k = len(grid)
    paths = [_Path(grid.copy(), contributions[i * k:(i + 1) * k]) for i in range(n)]
    active = np.ones(n, bool)
    converged = np.zeros(n, bool)
    rounds = 1
    while active.any():
        new_index, new_alphas, splits = [], [], {}
        for i in np.flatnonzero(active):
            path = paths[i]
            variation, attribution = path.variation, path.attribution
            gap = attribution.sum() - delta[i]
            ok = (abs(gap) <= allowed_gap[i]
                  and variation.sum() <= max(variation_tolerance * np.abs(attribution).sum(), atol))
            room = max_steps + 1 - len(path.alphas)
            done = ok and stop_early
            split = np.zeros(0, np.int64) if done else intervals_to_split(variation, np.diff(path.alphas), room)
            if done or len(split) == 0:
                active[i] = False
                converged[i] = ok
                continue
            splits[i] = split
            new_index.append(np.full(len(split), i))
            new_alphas.append((path.alphas[split] + path.alphas[split + 1]) / 2)
        if not new_index:
            break
        index, alphas = np.concatenate(new_index), np.concatenate(new_alphas)
        contributions = run(index, alphas)
        rounds += 1
        for i, split in splits.items():
            paths[i].bisect(split, contributions[index == i])     # index is grouped by image, in split order
    attributions = np.stack([p.attribution for p in paths]).reshape(diffs.shape).astype(np.float32)
    nodes = np.array([len(p.alphas) for p in paths], np.int64)
    return {"attributions": attributions, "steps": nodes - 1, "gradient_samples": nodes,
            "converged": converged, "rounds": rounds}
