"""The rules table: gradient samples each quadrature rule needs for a given completeness gap.

The completeness gap of IG depends only on the scalar path derivative
h(a) = (x - x') . grad F(x' + a (x - x')) = dF/da along the path:
sum_i IG_i = sum_j w_j h(a_j), and F(x) - F(x') is the exact integral of h. So the
benchmark evaluates h once at the union of every rule's nodes over the whole step
sweep (many are shared: trapezoid and midpoint nodes of power-of-two and
3 x power-of-two step counts sit on two dyadic grids), and then reads off every
(rule, steps) gap without recomputing gradients. A cross-check against
`integrated_gradients`'s own gap (through a `GradientEngine`) is reported beside the table.

relative gap = |sum(IG) - (F(x) - F(x'))| / |F(x) - F(x')|, F = the target's (predicted
class's) softmax probability, black baseline. Images whose |F(x) - F(x')| < 0.01 are left
out (a gap relative to almost nothing measures float noise, not the rule).
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import log

RULES = ("trapezoid", "riemann_middle", "gauss_legendre", "graded_trapezoid")
# steps: auto, as integrated_gradients.adaptive_ig does it with rule trapezoid: per image, start at
# AUTO_START steps and double (nested rules: every earlier gradient is reused, so an image that stops
# at m steps used m + 1 samples) until its relative gap is under the tolerance or the sweep's largest
# step count.
AUTO_RULES = ("trapezoid", "graded_trapezoid")
AUTO_START = 4
THRESHOLDS = (0.01, 0.001)
MIN_SCORE_CHANGE = 0.01


def step_sweep(rule: str, max_steps: int) -> list[int]:
    if rule == "gauss_legendre":
        ladder = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64]
        return [m for m in ladder if m <= max_steps]
    ladder, m = [], 2
    while m <= max_steps:
        ladder += [m, 3 * m // 2] if 3 * m // 2 <= max_steps and m >= 4 else [m]
        m *= 2
    return sorted(set(ladder))


def _key(alpha: float) -> float:
    return round(float(alpha), 10)


def path_derivatives(model, images, baselines, targets, alphas, chunk: int) -> np.ndarray:
    """h(a) for every image (rows) and alpha (columns), chunk samples per traced call."""
    import tensorflow as tf
    shape = images.shape[1:]
    spec = [tf.TensorSpec((chunk,) + shape, tf.float32), tf.TensorSpec((chunk,) + shape, tf.float32),
            tf.TensorSpec((chunk,), tf.float32), tf.TensorSpec((chunk,), tf.int32)]

    @tf.function(input_signature=spec)
    def h(baseline, diff, alpha, target):
        x = baseline + alpha[:, None, None, None] * diff
        with tf.GradientTape() as tape:
            tape.watch(x)
            p = tf.gather(tf.nn.softmax(model(x), axis=-1), target, axis=1, batch_dims=1)
        g = tape.gradient(p, x)
        return tf.reduce_sum(tf.reshape(g * diff, (chunk, -1)), axis=1)

    n, k = len(images), len(alphas)
    pairs = [(i, j) for i in range(n) for j in range(k)]
    out = np.zeros((n, k), np.float64)
    diffs = images - baselines
    for start in range(0, len(pairs), chunk):
        part = pairs[start:start + chunk]
        pad = part + [part[-1]] * (chunk - len(part))
        ii = np.array([p[0] for p in pad])
        jj = np.array([p[1] for p in pad])
        values = h(tf.constant(baselines[ii]), tf.constant(diffs[ii]), tf.constant(alphas[jj].astype(np.float32)),
                   tf.constant(targets[ii].astype(np.int32))).numpy()
        out[ii[:len(part)], jj[:len(part)]] = values[:len(part)]
    return out


def rules_table(model, images: np.ndarray, max_steps: dict, chunk: int, limit: int, rules=RULES) -> dict:
    """Per rule (of `rules`) and step count: relative gaps of the first `limit` images with
    |F(x) - F(x')| >= 0.01, and the samples needed per threshold."""
    import tensorflow as tf

    from igaudit.transforms.attribution.engine import GradientEngine
    from igaudit.transforms.attribution.integrated_gradients import integrated_gradients
    from igaudit.transforms.attribution.quadrature import quadrature
    baselines = np.zeros_like(images)
    logits = model(tf.constant(np.concatenate([images, baselines]))).numpy().astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    n = len(images)
    targets = probs[:n].argmax(1)
    change = probs[np.arange(n), targets] - probs[n + np.arange(n), targets]
    keep = np.flatnonzero(np.abs(change) >= MIN_SCORE_CHANGE)[:limit]
    images, baselines, targets, change = images[keep], baselines[keep], targets[keep], change[keep]
    if len(images) == 0:
        raise ValueError(f"no image changes the score by {MIN_SCORE_CHANGE} or more between baseline and input")
    plans = {rule: step_sweep(rule, max_steps[rule]) for rule in rules}
    nodes = sorted({_key(a) for rule, steps in plans.items() for m in steps for a in quadrature(rule, m)[0]})
    column = {a: j for j, a in enumerate(nodes)}
    log(f"  rules: {len(images)} images (of {n}), {len(nodes)} distinct alphas -> "
        f"{len(images) * len(nodes)} gradient samples")
    h = path_derivatives(model, images, baselines, targets, np.array(nodes), chunk)
    sweep = {}
    for rule, steps in plans.items():
        for m in steps:
            alphas, weights = quadrature(rule, m)
            cols = [column[_key(a)] for a in alphas]
            total = h[:, cols] @ weights
            rel = np.abs(total - change) / np.abs(change)
            sweep.setdefault(rule, []).append({"steps": m, "samples": len(alphas),
                                               "median": float(np.median(rel)),
                                               "p95": float(np.percentile(rel, 95))})
    needed = {}
    for rule, rows in sweep.items():
        for stat in ("median", "p95"):
            for threshold in THRESHOLDS:
                needed[rule, stat, threshold] = _first_staying_under(rows, stat, threshold)
    auto = {}
    for rule in (r for r in AUTO_RULES if r in plans):
        top = max(m for m in plans[rule] if m & (m - 1) == 0)
        for threshold in THRESHOLDS:
            used, final = [], []
            for i in range(len(images)):
                m = AUTO_START
                while True:
                    alphas, weights = quadrature(rule, m)
                    rel = abs(h[i, [column[_key(a)] for a in alphas]] @ weights - change[i]) / abs(change[i])
                    if rel < threshold or m >= top:
                        break
                    m *= 2
                used.append(m + 1)
                final.append(rel)
            auto[rule, threshold] = {"mean_samples": float(np.mean(used)), "median": float(np.median(final)),
                                     "p95": float(np.percentile(final, 95)), "max_steps": top}
    # Cross-check: the engine's own completeness gap (sum(IG) - (F(x) - F(x'))) at 16 steps.
    check = None
    if 16 in plans.get("trapezoid", ()):
        engine = GradientEngine(model, images.shape[1:], output="logits", score="probability", chunk_size=chunk)
        r = integrated_gradients(engine, images, baselines, targets, rule="trapezoid", steps=16)
        alphas, weights = quadrature("trapezoid", 16)
        own = h[:, [column[_key(a)] for a in alphas]] @ weights - change
        check = float(np.max(np.abs(own - r.completeness_gap)))
    return {"images": int(len(images)), "of": int(n), "distinct_alphas": len(nodes), "sweep": sweep,
            "needed": {f"{rule}|{stat}|{threshold}": v for (rule, stat, threshold), v in needed.items()},
            "auto": {f"{rule}|{threshold}": v for (rule, threshold), v in auto.items()},
            "engine_check_max_abs_diff": check, "score_change_median": float(np.median(np.abs(change)))}


def _first_staying_under(rows: list, stat: str, threshold: float):
    """Fewest samples from which on (for all larger step counts in the sweep) stat < threshold."""
    answer = None
    for row in reversed(rows):
        if row[stat] < threshold:
            answer = row["samples"]
        else:
            break
    return answer
