"""`python -m benchmarks.incremental [--images 2000] [--new 0.05]`: what a second `igaudit audit` costs when a
share of the dataset is new (audit.reuse on, the default), against the first audit of the same folder, and
against the same second audit with audit.reuse off. Each audit is a process of its own, start-up included;
the demo's images (audit split, new ones from its train split) and an untrained demo CNN (attribution costs
the same), config defaults (masks and overlays on). Writes benchmarks/INCREMENTAL.md and prints it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchmarks.common import cpu_info, demo_dataset, publish

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.15       # issue 27: a second audit with 5% new images costs at most this share of the first


def child(data: str, model: str, out: str, day: int, reuse: bool) -> dict:
    """One audit in this process; the dates keep the runs in order."""
    from igaudit.pipeline.audit import audit
    from igaudit.pipeline.config import from_dict
    cfg = from_dict({"input": {"pattern": f"{data}/*/*.png"}, "model": {"path": model}, "output": {"dir": out},
                     "analysis": {"fail_on_suspect": False}, "audit": {"reuse": reuse}})
    started = time.time()
    summary, _ = audit(cfg, now=datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(days=day))
    return {"seconds": time.time() - started, "images": summary.attributed, "reused": summary.reused}


def _audit(data: Path, model: Path, out: Path, day: int, reuse: bool) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.incremental", "--child", str(data), str(model), str(out),
                           str(day), str(int(reuse))], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"audit failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(row, file=sys.stderr, flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.incremental", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--new", type=float, default=0.05, help="share of new images in the second audit")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "INCREMENTAL.md"))
    parser.add_argument("--child", nargs=5, metavar=("DATA", "MODEL", "OUT", "DAY", "REUSE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        data, model, out, day, reuse = args.child
        print(json.dumps(child(data, model, out, int(day), reuse == "1")))
        return 0
    from benchmarks.common import quiet_tensorflow
    quiet_tensorflow()
    from igaudit.pipeline.demo import build_model
    demo = demo_dataset(max(2, -(-args.images // 2)))
    work = Path(tempfile.mkdtemp(prefix="igaudit-bench-incremental-"))
    try:
        data, model = work / "data", work / "demo.keras"
        build_model(4).save(model)
        first_images = sorted((demo / "audit").rglob("*.png"))[:args.images]
        for f in first_images:
            (data / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, data / f.parent.name / f.name)
        first = _audit(data, model, work / "reuse", 0, True)
        shutil.copytree(work / "reuse", work / "fresh")          # the same first run, for the run without reuse
        new = sorted((demo / "train").rglob("*.png"))[:round(args.new * len(first_images))]
        for f in new:
            shutil.copy(f, data / f.parent.name / f"new_{f.name}")
        second = _audit(data, model, work / "reuse", 1, True)
        without = _audit(data, model, work / "fresh", 1, False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = second["seconds"] / first["seconds"]
    lines = ["# Incremental audits: a second audit pays for what changed", "",
             f"`python -m benchmarks.incremental --images {args.images} --new {args.new}` on {cpu_info()[0]}: "
             f"{first['images']} demo images, then {len(new)} new ones ({args.new:.0%}); config defaults (masks and "
             "overlays written), each audit a process of its own, start-up included.", "",
             "| audit | images | reused | seconds | x the first audit |", "| --- | --- | --- | --- | --- |",
             f"| first | {first['images']} | {first['reused']} | {first['seconds']:.1f} | 1.00 |",
             f"| second, audit.reuse on (default) | {second['images']} | {second['reused']} | {second['seconds']:.1f} "
             f"| {ratio:.2f} |",
             f"| second, audit.reuse off | {without['images']} | {without['reused']} | {without['seconds']:.1f} | "
             f"{without['seconds'] / first['seconds']:.2f} |", "",
             f"Target: the second audit at most {TARGET:.0%} of the first: "
             f"{'met' if ratio <= TARGET else 'NOT met'} ({ratio:.0%})."]
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
