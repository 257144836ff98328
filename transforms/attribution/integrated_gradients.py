"""Integrated Gradients: on a fixed quadrature rule, or with `steps: auto`, refined per image.

IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x'))/dx_i da (Sundararajan et al. 2017).
Averaged over S baselines when several are drawn (`baseline_samples`); smoothed over noisy
copies of the input with `smoothing` (`paths`). Completeness, sum(IG) = F(x) - F(x'), gives
each image's `completeness_gap`: the quadrature's error, and the check of the step count.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from igaudit.transforms.attribution.paths import has_completeness, noise_samples, path_attributions
from igaudit.transforms.attribution.quadrature import quadrature
from igaudit.transforms.attribution.refine import refined_ig
from igaudit.transforms.attribution.choices import AUTO_RULES
from igaudit.transforms.attribution.result import Batch, MethodResult

COMPLETENESS = True
NEEDS_REFERENCES = False
# steps: auto starts each image on this many intervals: 8 for adaptive (refine.py), 4 for the doubling rules
START_STEPS = {"adaptive": 8, "trapezoid": 4, "gauss_legendre": 4}


def explain(explainer, batch: Batch) -> MethodResult:
    """The configured IG (explainer.attribution): refined when steps is auto or the rule adaptive."""
    a = explainer.attribution
    if a.steps == "auto" or a.rule == "adaptive":
        return adaptive_ig(explainer.engine, batch.images, batch.baselines, batch.targets, rule=a.rule,
                           tolerance=a.tolerance, pixel_tolerance=a.pixel_tolerance, max_steps=a.max_steps,
                           steps=None if a.steps == "auto" else a.steps)
    return integrated_gradients(explainer.engine, batch.images, batch.baselines, batch.targets, rule=a.rule,
                                steps=a.steps, image_ids=batch.image_ids, smoothing=a.smoothing,
                                samples=a.samples, stdev=a.stdev)


def integrated_gradients(engine, images: np.ndarray, baselines: np.ndarray, targets: Optional[np.ndarray] = None,
                         *, rule: str, steps: Optional[int], alphas: Optional[np.ndarray] = None,
                         weights: Optional[np.ndarray] = None, image_ids=None, smoothing: str = "none",
                         samples: Optional[int] = None, stdev: Optional[float] = None) -> MethodResult:
    """IG on a fixed rule, averaged over baselines (N, H, W, C) or (S, N, H, W, C) (`baselines.make_baselines`).

    The quadrature is `quadrature(rule, steps)` unless `alphas` and `weights` are given (e.g.
    PAIR's linspace(0, 1, m) with weights 1/m; `steps` may then be None). score_baseline is the mean F over the S baselines,
    so completeness holds for the average: sum(IG) = F(x) - mean F(x').
    """
    images = engine.check_images(images)
    baselines = np.asarray(baselines, np.float32)
    if baselines.ndim == 4:
        baselines = baselines[None]
    if baselines.shape[1:] != images.shape:
        raise ValueError(f"baselines have shape {baselines.shape}, expected (S,) + {images.shape}")
    if alphas is None or weights is None:
        alphas, weights = quadrature(rule, steps)
    points = (np.asarray(alphas, np.float32), np.asarray(weights, np.float32))
    if points[0].shape != points[1].shape or points[0].ndim != 1:
        raise ValueError("alphas and weights must be 1-D arrays of the same length")
    head = engine.head(images, targets)
    inner, n = baselines.shape[0], len(images)
    score_baseline = engine.score_of(engine.forward(baselines.reshape((-1,) + engine.input_shape)),
                                     np.tile(head.targets, inner)).reshape(inner, n).mean(axis=0)
    attributions, end_mean = path_attributions(
        engine, images, head.targets, image_ids, inner=inner, start_of=lambda i, b, end: baselines[b, i],
        alphas_of=lambda i, b: points, multiply="diff", smoothing=smoothing, samples=samples, stdev=stdev,
        end_scores=smoothing == "smoothgrad")
    copies = noise_samples(smoothing, samples)
    return engine.result(
        "integrated_gradients", attributions, head, score_baseline=score_baseline, gap_input=end_mean,
        gap=has_completeness(smoothing), gradient_samples=copies * inner * len(points[0]),
        forward_passes=inner + (copies if smoothing == "smoothgrad" else 0),
        steps=np.full(n, len(points[0]) if steps is None else int(steps), np.int64))


def adaptive_ig(engine, images: np.ndarray, baselines: np.ndarray, targets: Optional[np.ndarray] = None, *,
                rule: str, tolerance: float, pixel_tolerance: float, max_steps: int,
                steps: Optional[int] = None, start_steps: Optional[int] = None, atol: float = 1e-6) -> MethodResult:
    """IG with `steps: auto`.

    rule "adaptive" (`refine`): start from 8 uniform intervals and bisect, per image, the
    intervals with the largest estimated per-pixel errors, until the per-pixel error test
    (`pixel_tolerance`) passes or the grid has max_steps intervals (then `converged` is false);
    `tolerance` plays no part (the gap is reported in images.parquet). Every gradient is reused. With `steps`
    (an int; "adaptive" only), a fixed budget instead: every image ends with exactly that many
    intervals, placed the same way.

    The other rules double the steps each round until |gap| <= max(tolerance * |F(x) - F(x')|, atol)
    (`converged`), or until the next doubling would pass max_steps:

    rule "trapezoid": doubling m -> 2m reuses every earlier gradient: only the m new
    midpoints are evaluated and T_2m = T_m / 2 + (1 / 2m) * sum(new gradients), so an
    image that stops at m steps used m + 1 gradient samples.
    rule "gauss_legendre": Gauss-Legendre points do not nest, so each round evaluates
    the 2m-point rule afresh (an image that stops at m points used m0 + ... + m < 2m
    samples), but its error falls so much faster on smooth paths that it usually needs
    far fewer samples in all.

    Images that converged leave the batch. Per image: `steps` (intervals for trapezoid, points
    for Gauss-Legendre), `gradient_samples` (all gradient evaluations it used), `converged`.
    atol is a floor for images whose F(x) ~ F(x'), where a relative tolerance is below float32
    resolution. `baselines`: (N, H, W, C), or (S, N, H, W, C) to average over S baselines (each
    pair refines on its own).
    """
    if rule not in AUTO_RULES:
        raise ValueError(f"adaptive rule must be one of {', '.join(AUTO_RULES)}, got {rule!r}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    if start_steps is None:
        start_steps = START_STEPS[rule]
    if steps is not None:
        if rule != "adaptive":
            raise ValueError(f"a fixed step budget needs rule 'adaptive', got {rule!r}")
        max_steps, start_steps = int(steps), min(int(start_steps), int(steps))
    if int(start_steps) < 1 or int(max_steps) < int(start_steps):
        raise ValueError(f"need 1 <= start_steps <= max_steps, got {start_steps}, {max_steps}")
    options = dict(rule=rule, tolerance=tolerance, pixel_tolerance=pixel_tolerance, max_steps=max_steps,
                   start_steps=start_steps, atol=atol)
    images = engine.check_images(images)
    baselines = np.asarray(baselines, np.float32)
    if baselines.ndim == 5:
        if baselines.shape[1:] != images.shape:
            raise ValueError(f"baselines have shape {baselines.shape}, expected (S,) + {images.shape}")
        if baselines.shape[0] > 1:
            return _over_baselines(engine, images, baselines, targets, steps=steps, **options)
        baselines = baselines[0]
    baselines = engine.check_images(np.broadcast_to(baselines, images.shape))
    head = engine.head(images, targets)
    score_input = engine.score_of(head.outputs, head.targets)
    score_baseline = engine.score_of(engine.forward(baselines), head.targets)
    delta = score_input - score_baseline
    diffs = images.astype(np.float64) - baselines
    if rule == "adaptive":
        def gradients_at(idx, alphas):
            return engine.point_gradients(baselines, images, head.targets, idx, alphas)

        r = refined_ig(gradients_at, diffs, pixel_tolerance=pixel_tolerance, max_steps=max_steps,
                       start_steps=start_steps, atol=atol, stop_early=steps is None)
        attributions, used, samples, converged = r["attributions"], r["steps"], r["gradient_samples"], r["converged"]
        estimated = r["estimated_error"]
    else:
        attributions, used, samples, converged = _doubling(engine, images, baselines, head.targets, diffs, delta,
                                                           **options)
        estimated = None
    return engine.result("integrated_gradients", attributions, head, score_input=score_input,
                         score_baseline=score_baseline, gradient_samples=samples, forward_passes=1,
                         steps=used, converged=converged, estimated_error=estimated)


def _doubling(engine, images, baselines, targets, diffs, delta, *, rule, tolerance, max_steps, start_steps, atol,
              **_):
    """trapezoid / gauss_legendre with steps: auto: double the steps of the images not yet within tolerance."""
    n = len(images)
    allowed = np.maximum(tolerance * np.abs(delta), atol)

    def evaluate(idx, alphas, weights):
        k = len(alphas)
        return engine.gradient_sums(baselines[idx], images[idx], targets[idx], np.repeat(np.arange(len(idx)), k),
                                    np.tile(alphas, len(idx)), np.tile(weights, len(idx))).astype(np.float64)

    m = int(start_steps)
    total = evaluate(np.arange(n), *quadrature(rule, m))
    steps = np.full(n, m, np.int64)
    samples = np.full(n, len(quadrature(rule, m)[0]), np.int64)
    active = np.ones(n, bool)
    while True:
        gap = (diffs * total).reshape(n, -1).sum(axis=1) - delta
        active &= np.abs(gap) > allowed
        if not active.any() or 2 * m > max_steps:
            break
        idx = np.flatnonzero(active)
        if rule == "trapezoid":
            mids = (2 * np.arange(m) + 1) / (2.0 * m)
            total[idx] = total[idx] / 2 + evaluate(idx, mids, np.full(m, 1.0 / (2 * m)))
            samples[idx] += m
        else:
            total[idx] = evaluate(idx, *quadrature(rule, 2 * m))
            samples[idx] += 2 * m
        m *= 2
        steps[idx] = m
    return (diffs * total).astype(np.float32), steps, samples, np.abs(gap) <= allowed


def _over_baselines(engine, images, baselines, targets, **options) -> MethodResult:
    """Adaptive IG averaged over S baselines: each (baseline, image) pair refines on its own
    (pairs are flattened into one batch, so chunks stay full), then the S results are averaged.

    Per image: attributions, score_baseline and completeness_gap are means over the S
    samples (so the gap stays sum(IG) - (F(x) - mean F(x'))); gradient_samples is the
    total; steps the largest; converged whether every sample met its own tolerance.
    """
    s, n = baselines.shape[:2]
    head = engine.head(images, targets)
    r = adaptive_ig(engine, np.tile(images, (s, 1, 1, 1)), baselines.reshape((s * n,) + images.shape[1:]),
                    np.tile(head.targets, s), **options)

    def per_sample(a):
        return a.reshape((s, n) + a.shape[1:])

    return engine.result(
        "integrated_gradients", per_sample(r.attributions).mean(axis=0), head,
        score_baseline=per_sample(r.score_baseline).mean(axis=0),
        gradient_samples=per_sample(r.gradient_samples).sum(axis=0), forward_passes=s,
        steps=per_sample(r.steps).max(axis=0), converged=per_sample(r.converged).all(axis=0),
        estimated_error=None if r.estimated_error is None else per_sample(r.estimated_error).max(axis=0))
