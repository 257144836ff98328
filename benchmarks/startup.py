"""Startup and whole runs against a bare script, whole processes timed from start to exit.

- The floor: a bare script that imports TensorFlow, loads the model with Keras and attributes one
  image (the TF tutorial's IG, `benchmarks.references.TutorialIG`: one_batch, 50 steps, alpha batches
  of 32), writing nothing. `igaudit run` on that one image, defaults, beside it.
- Whole runs: `igaudit run` (defaults: `steps: auto`, masks, overlays, tables, report) against the same
  tutorial script over every image: the demo CNN on 400 images, MobileNetV2 at 224x224 on 32.

The tutorial script runs on TensorFlow's own default settings (no igaudit import).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import MOBILENET_SIZE, ROOT, bench_images, log
from benchmarks.pipeline_bench import Workspace, best, run_igaudit

TUTORIAL_SCRIPT = """
import sys, time
from pathlib import Path
import numpy as np, tensorflow as tf, keras
from PIL import Image
from benchmarks.references import TutorialIG
path, data, size, lo, hi, output = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
net = keras.models.load_model(path, compile=False)
scale = lambda x: x * (hi - lo) + lo
# the tutorial differentiates the softmax of logits: a probability model gives its log (logits up to a constant)
model = (lambda x: net(scale(x))) if output == 'logits' else (lambda x: tf.math.log(tf.maximum(net(scale(x)), 1e-30)))
ig = TutorialIG(model)
black = tf.zeros((size, size, 3), tf.float32)
for file in sorted(Path(data).glob('*/*.png')):
    image = tf.constant(np.asarray(Image.open(file).convert('RGB'), np.float32) / 255.0)
    target = int(tf.argmax(model(image[None])[0]))
    ig.integrated_gradients(black, image, target, m_steps=50, batch_size=32).numpy()
"""


def run_tutorial(model: Path, data: Path, size: int, input_range=(0.0, 1.0), output: str = "logits") -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", TUTORIAL_SCRIPT, str(model), str(data), str(size),
                           str(input_range[0]), str(input_range[1]), output], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    result = {"seconds": time.perf_counter() - started, "exit": done.returncode}
    if done.returncode:
        result["error"] = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
        log(f"  tutorial script failed: {result['error']}")
    return result


def _samples(config_out: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    if not (config_out / "images").exists():
        return {}
    samples = [r["gradient_samples"] for r in pq.read_table(str(config_out / "images")).to_pylist()]
    return {"samples_median": float(np.median(samples)), "samples_mean": float(np.mean(samples))}


def _compare(name: str, config: Path, out: Path, tutorial_args: tuple, images: int, repeats: int) -> dict:
    runs, tutorial = [], []
    for r in range(repeats):
        log(f"  {name}: igaudit run, tutorial script ({images} images, repeat {r + 1}/{repeats})")
        runs.append(run_igaudit(config))
        tutorial.append(run_tutorial(*tutorial_args))
    return {"images": images, "runs": runs, "tutorial": tutorial, **_samples(out)}


def _mobilenet_files(root: Path, n: int) -> tuple[Path, Path]:
    """MobileNetV2 (benchmarks.common.mobilenet_v2: seed-0 weights, calibrated batch norm) saved as
    .keras, and n 224x224 bench images as PNGs under root/data/<class>/."""
    import numpy as np
    from PIL import Image

    from benchmarks.common import mobilenet_v2
    images = bench_images(n, MOBILENET_SIZE)
    model = root / "mobilenet_v2.keras"
    mobilenet_v2(images[:8]).net.save(model)
    for i, im in enumerate(images):
        path = root / "data" / f"c{i % 4}" / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(im * 255).astype(np.uint8)).save(path)
    return model, root / "data"


def startup_and_whole_runs(quick: bool) -> dict:
    import yaml
    repeats = 1 if quick else 3
    demo_n = 100 if quick else 400
    mobile_n = 8 if quick else 32
    ws = Workspace(demo_n)
    root = Path(tempfile.mkdtemp(prefix="igaudit-bench-startup-"))
    try:
        result = {}
        one = ws.dataset("one", 1)
        config = ws.config("one", one, steps="auto", rule="adaptive")
        result["startup"] = _compare("startup (demo CNN, one image)", config, ws.root / "out" / "one",
                                     (ws.model, one, 64), 1, repeats)
        many = ws.dataset("many", demo_n)
        config = ws.config("many", many, steps="auto", rule="adaptive")
        result["demo"] = _compare("whole run, demo CNN", config, ws.root / "out" / "many",
                                  (ws.model, many, 64), demo_n, max(1, repeats - 1))
        model, data = _mobilenet_files(root, mobile_n)
        names = root / "class_names.txt"   # ImageNet's 1000 outputs; the images' folders name 4 of them
        names.write_text("".join(f"c{i}\n" for i in range(1000)))
        config = root / "mobilenet.yaml"
        config.write_text(yaml.safe_dump({
            "input": {"pattern": str(data / "*" / "*.png")},
            "model": {"path": str(model), "input_range": [-1, 1], "output": "logits",
                      "class_names": str(names)},
            "output": {"dir": str(root / "out")}}))
        result["mobilenet_v2"] = _compare("whole run, MobileNetV2 224", config, root / "out",
                                          (model, data, MOBILENET_SIZE, (-1.0, 1.0), "logits"), mobile_n, 1)
        return result
    finally:
        ws.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def render(add, t: dict) -> list:
    must = []
    s = t.get("startup")
    add("## Startup and whole runs against a bare script")
    add("")
    add("Whole processes, start to exit, best of the repeats (`benchmarks/startup.py`). The floor: a script "
        "that imports TensorFlow, loads the model and attributes one image (the TF tutorial's IG, 50 steps), "
        "writing nothing. `igaudit run`: defaults (`steps: auto`, masks, overlays, tables, report).")
    add("")
    add("| | images | `igaudit run` | bare script (tutorial IG) | ratio | igaudit samples per image (median) |")
    add("|---|---|---|---|---|---|")
    rows = [("startup: one image, demo CNN", s, "igaudit / floor")] + \
           [(f"whole run, {name}", t.get(key), "speed-up") for key, name in
            (("demo", "demo CNN 64x64"), ("mobilenet_v2", "MobileNetV2 224x224 (seed-0 weights)"))]
    for label, r, kind in rows:
        if not r:
            continue
        ours, theirs = best(r["runs"], "seconds"), best(r["tutorial"], "seconds")
        if not (ours and theirs):
            add(f"| {label} | {r['images']} | failed | | | |")
            continue
        spread = lambda runs: "-".join(f"{x['seconds']:.1f}" for x in sorted(runs, key=lambda x: x["seconds"]))
        ratio = ours / theirs if kind == "igaudit / floor" else theirs / ours
        med = r.get("samples_median")
        add(f"| {label} | {r['images']} | {ours:.1f} s ({spread(r['runs'])}) | {theirs:.1f} s "
            f"({spread(r['tutorial'])}) | {ratio:.2f}x {kind} | {med:.0f} |" if med else
            f"| {label} | {r['images']} | {ours:.1f} s | {theirs:.1f} s | {ratio:.2f}x {kind} | - |")
        if kind == "igaudit / floor":
            must.append(("Startup: igaudit run on one image <= 1.3x the floor", f"{ratio:.2f}x ({ours:.1f} vs "
                         f"{theirs:.1f} s)", ratio <= 1.3))
        else:
            must.append((f"Whole run >= 2x the TF tutorial, {label[len('whole run, '):]}, {r['images']} images",
                         f"{ratio:.2f}x ({ours:.1f} vs {theirs:.1f} s)", ratio >= 2.0))
    add("")
    return must
