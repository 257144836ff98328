"""Workers x TensorFlow threads inside one machine: `igaudit run` on Beam's local runner with one worker
and every core against several workers splitting the cores.

Each setting is a whole `igaudit run` over the same demo images (the default step policy, masks and
overlays on), in its own process, with:
- workers: Beam's `--direct_num_workers` (with `--direct_running_mode=multi_processing` for more than
  one: each worker a process of its own, with its own model copy and TensorFlow runtime);
- threads: TensorFlow's intra-op / inter-op pools per worker, through TF_NUM_INTRAOP_THREADS /
  TF_NUM_INTEROP_THREADS (TensorFlow reads them when its runtime starts, in every process; the
  workers inherit the launcher's environment). None: TensorFlow's default (one thread per core).

The settings run in turn, repeat after repeat, so a burst of load from other processes hits all of
them; the best repeat of each counts. Rates: the run's own attribution phase (run.json timings) and
the whole run's wall time.
"""
from __future__ import annotations

import os

from benchmarks.common import log
from benchmarks.pipeline_bench import FINISHED, Workspace, best, run_igaudit

# (label, workers, intra-op threads per worker, inter-op threads per worker)
SETTINGS = (
    ("1 worker, TensorFlow's default threads", 1, None, None),
    ("2 workers x 1 intra / 1 inter thread", 2, 1, 1),
    ("2 workers, TensorFlow's default threads each", 2, None, None),
)


def setting_env(intra, inter) -> dict:
    env = dict(os.environ)
    for key, value in (("TF_NUM_INTRAOP_THREADS", intra), ("TF_NUM_INTEROP_THREADS", inter)):
        env.pop(key, None)
        if value is not None:
            env[key] = str(value)
    return env


def beam_args(workers: int) -> list[str]:
    if workers == 1:
        return []
    return [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]


def workers_threads(ws: Workspace, n: int, repeats: int) -> dict:
    data = ws.dataset(f"scale{n}", n)
    config = ws.config(f"scale{n}", data, steps="auto", rule="adaptive")
    runs = {label: [] for label, *_ in SETTINGS}
    for r in range(repeats):
        for label, workers, intra, inter in SETTINGS:
            log(f"  scaling: {label} (repeat {r + 1}/{repeats})")
            runs[label].append(run_igaudit(config, env=setting_env(intra, inter), args=beam_args(workers)))
    rows = []
    for label, workers, intra, inter in SETTINGS:
        rs = runs[label]
        rows.append({"setting": label, "workers": workers, "intra": intra, "inter": inter, "runs": rs,
                     "seconds": best(rs, "seconds"), "phase_images_per_s": best(rs, "phase_images_per_s", lowest=False)})
    return {"images": n, "repeats": repeats, "rows": rows}


def render(add, t: dict) -> list:
    add("## Workers x TensorFlow threads (one machine)")
    add("")
    add(f"`igaudit run` over {t['images']} demo images, defaults (`steps: auto`, masks and overlays), best of "
        f"{t['repeats']} (`benchmarks/scaling.py`): Beam's local runner with one worker, or "
        "`--direct_num_workers=2 --direct_running_mode=multi_processing`; TensorFlow's thread pools per "
        "worker through TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS.")
    add("")
    add("| setting | wall time | attribution phase images/s | vs 1 worker |")
    add("|---|---|---|---|")
    base = t["rows"][0]
    for row in t["rows"]:
        rate, first = row["phase_images_per_s"], base["phase_images_per_s"]
        add(f"| {row['setting']} | {row['seconds'] or float('nan'):.1f} s | {rate or float('nan'):.2f} | "
            f"{(rate / first) if rate and first else float('nan'):.2f}x |")
    add("")
    for row in t["rows"]:
        for r in row["runs"]:
            if r.get("exit", 0) not in FINISHED:
                add(f"- {row['setting']}: a run failed: `{r.get('error')}`")
    fastest = max(t["rows"], key=lambda r: r["phase_images_per_s"] or 0)
    add(f"Fastest here: {fastest['setting']}.")
    add("")
    return []
