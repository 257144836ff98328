"""`igaudit run` end to end on Beam's local runner versus the bare engine on the same images, and
peak memory against dataset size.

Each `igaudit run` is its own process (`python -m igaudit.pipeline.cli run --config ...`), started and
reaped with os.wait4 by a small launcher process (`REAPER`), which reports its wall time and its own
peak RSS (ru_maxrss; the local runner runs the pipeline in that process). Why the launcher: on Linux
a process keeps the peak RSS of the process it was forked from across exec, so a run forked straight
from this benchmark (gigabytes after the throughput section) would report this benchmark's peak,
not its own (the memory table did, until 2026-12-01: 3,283 MiB at 1000 and at 4000 images).

Pipeline images/s, two ways:
- (N - 1) / (T(N images) - T(1 image)): the one-image run's wall time is the startup (TensorFlow
  import, model check and load, Beam graph and runner start, report and _SUCCESS), reported on
  its own. Differencing two processes' wall times carries both startups' noise (1-2 s here).
- the N-image run's attribution phase, from its run.json: N / (last batch end - first batch
  start), every per-image cost (read, decode, batching, IG, summary, files, Parquet rows,
  combiners) inside, startup and wind-down outside.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from benchmarks.common import CONFIG_CHUNK, DEMO_MODEL, DEMO_SIZE, ROOT, STEPS, demo_dataset, log

CLASSES = ("circle", "cross", "square", "triangle")
FINISHED = (0, 3)   # igaudit's exit codes for a complete run (3: complete, and a flag raised an alert)


class Workspace:
    """Datasets, model and configs for the pipeline runs, in one temp dir."""

    def __init__(self, images: int):
        self.root = Path(tempfile.mkdtemp(prefix="igaudit-bench-pipe-"))
        self.base = demo_dataset(max(8, images // 2)) / "audit"
        self.files = sorted(self.base.glob("*/*.png"))
        (self.root / "class_names.txt").write_text("".join(f"{c}\n" for c in CLASSES))
        if DEMO_MODEL.is_file():
            self.model = self.root / "demo.keras"
            shutil.copyfile(DEMO_MODEL, self.model)
            self.model_kind = "trained models/demo.keras"
        else:
            import keras

            from igaudit.pipeline.demo import build_model
            keras.utils.set_random_seed(0)
            self.model = self.root / "demo.keras"
            build_model(4, DEMO_SIZE).save(self.model)
            self.model_kind = "build_model(4, 64), seed-0 weights"

    def dataset(self, name: str, count: int) -> Path:
        """`count` demo images under root/name/<class>/: the base images, copied under new names
        (so new image ids) as often as needed."""
        folder = self.root / name
        if folder.exists():
            return folder
        for k in range(count):
            src = self.files[k % len(self.files)]
            dst = folder / src.parent.name / f"{src.stem}_r{k // len(self.files)}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        return folder

    def config(self, name: str, data: Path, steps=STEPS, masks: bool = True, overlays: bool = True,
               batch_size: int = 16, chunk_size: int = CONFIG_CHUNK, rule: str = "trapezoid") -> Path:
        import yaml
        raw = {
            "input": {"pattern": str(data / "*" / "*.png")},
            "model": {"path": str(self.model), "input_size": [DEMO_SIZE, DEMO_SIZE],
                      "class_names": str(self.root / "class_names.txt")},
            "attribution": {"steps": steps, "rule": rule, "batch_size": batch_size,
                            "chunk_size": chunk_size},
            "output": {"dir": str(self.root / "out" / name), "masks": masks, "overlays": overlays},
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


REAPER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": time.perf_counter() - started, "max_rss_kb": usage.ru_maxrss,
               "exit": os.waitstatus_to_exitcode(status)}, f)
"""


def run_igaudit(config: Path, env: Optional[dict] = None, args: Sequence[str] = ()) -> dict:
    """One `igaudit run` in a child process (environment `env`, extra Beam flags `args`): wall seconds,
    peak RSS (MiB), exit code; started by the small `REAPER` process (module docstring)."""
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file, \
            tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "reaped.json"
        subprocess.run([sys.executable, "-c", REAPER, str(report), sys.executable, "-m", "igaudit.pipeline.cli",
                        "run", "--config", str(config), *args], cwd=ROOT, env=env, stdout=out_file,
                       stderr=err_file)
        reaped = json.loads(report.read_text())
        seconds = reaped["seconds"]
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    result = {"seconds": seconds, "max_rss_mb": reaped["max_rss_kb"] / 1024.0, "exit": reaped["exit"]}
    if reaped["exit"] not in FINISHED:
        result["error"] = (err.decode(errors="replace").strip().splitlines() or ["?"])[-1][:300]
        log(f"  igaudit run failed ({config.name}): {result['error']}")
    else:
        tail = out.decode(errors="replace").strip().splitlines()
        result["summary"] = next((line for line in tail if "attributed" in line), "")
        result.update(attribution_phase(config))
    return result


def attribution_phase(config: Path) -> dict:
    """The run's own timing of its attribution phase (run.json `timings`: first batch start to last
    batch end, from the `attribute_clock_ms` metric): startup excluded without a second run."""
    import json

    import yaml
    out_dir = Path(yaml.safe_load(config.read_text())["output"]["dir"])
    timings = json.loads((out_dir / "run.json").read_text()).get("timings", {})
    if "attribution_images_per_second" not in timings:
        return {}
    return {"phase_seconds": timings["attribution_seconds"],
            "phase_images_per_s": timings["attribution_images_per_second"]}


def bare_engine(ws: Workspace, data: Path, batch_size: int = 16, chunk_size: int = CONFIG_CHUNK) -> dict:
    """The engine alone on the same images, decoded the pipeline's way, same model wrapper and settings."""
    from igaudit.pipeline.config import ModelConfig
    from igaudit.transforms.attribution.engine import GradientEngine
    from igaudit.transforms.attribution.integrated_gradients import integrated_gradients
    from igaudit.transforms.attribution.models import load_classifier
    from igaudit.transforms.imaging.decode import decode_image
    files = sorted(data.glob("*/*.png"))
    started = time.perf_counter()
    pixels = np.stack([decode_image(f.read_bytes(), (DEMO_SIZE, DEMO_SIZE), "pad") for f in files])
    decode_seconds = time.perf_counter() - started
    classifier = load_classifier(ModelConfig(path=str(ws.model), input_size=(DEMO_SIZE, DEMO_SIZE),
                                             input_range=(0.0, 1.0), output="logits"))
    engine = GradientEngine(classifier, (DEMO_SIZE, DEMO_SIZE, 3), output="logits", score="probability",
                            chunk_size=chunk_size)

    def attribute(batch):
        return integrated_gradients(engine, batch, np.zeros_like(batch), None, rule="trapezoid", steps=STEPS)
    attribute(pixels[:batch_size])  # trace + warm up
    started = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        attribute(pixels[i:i + batch_size])
    seconds = time.perf_counter() - started
    return {"images": len(files), "seconds": seconds, "images_per_s": len(files) / seconds,
            "decode_images_per_s": len(files) / decode_seconds}


def pipeline_vs_engine(ws: Workspace, n: int, repeats: int, artifacts_off: bool) -> dict:
    data = ws.dataset(f"pipe{n}", n)
    one = ws.dataset("pipe1", 1)
    runs_n, runs_1, engines = [], [], []
    for r in range(repeats):
        log(f"  pipeline: 1-image run, {n}-image run, bare engine (repeat {r + 1}/{repeats})")
        runs_1.append(run_igaudit(ws.config("one", one)))
        runs_n.append(run_igaudit(ws.config(f"n{n}", data)))
        engines.append(bare_engine(ws, data))
    result = {"images": n, "model": ws.model_kind, "runs_1": runs_1, "runs_n": runs_n, "engine": engines}
    if artifacts_off:
        log("  pipeline: without masks and overlays")
        result["runs_n_no_artifacts"] = [run_igaudit(ws.config(f"n{n}-noart", data, masks=False, overlays=False))]
    return result


def memory_flat(ws: Workspace, sizes: tuple, steps: int) -> dict:
    rows = []
    for count in sizes:
        data = ws.dataset(f"mem{count}", count)
        log(f"  memory: igaudit run over {count} images (steps {steps})")
        rows.append({"images": count, **run_igaudit(ws.config(f"mem{count}", data, steps=steps))})
    return {"steps": steps, "runs": rows}


def best(values: list, key: str, lowest: bool = True) -> Optional[float]:
    ok = [v[key] for v in values if v.get("exit", 0) in FINISHED and key in v]
    return (min(ok) if lowest else max(ok)) if ok else None
