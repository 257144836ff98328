"""`python -m benchmarks.buckets [--images 100]`: a whole `igaudit run` with its inputs and outputs on local
disk, on gs:// (gcp-storage-emulator) and on s3:// (moto's server), side by side in one run, with Beam's
filesystems as they come (`object_stores.beam_as_is`) and with igaudit's client reuse
(`transforms/object_stores.py`, the default), the latter also with `output.layout: shards` (the per-image
files as a few Parquet shards: `transforms/artifacts.py`). Each run is its own process; the demo's images (audit split)
and an untrained demo CNN (attribution costs the same), config defaults (masks and overlays on). Writes the
table to benchmarks/BUCKETS.md and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import cpu_info, demo_dataset, publish

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUCKET = "igaudit-bench"


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait(port: int) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no server on port {port}")


VARIANTS = ((False, "files"), (True, "files"), (True, "shards"))     # (client reuse, output.layout)


def child(where: str, reuse: bool, layout: str, data: str, model: str, port: int) -> dict:
    """One run in this process: where is local | gs | s3; reuse: igaudit's client reuse, else Beam as it is;
    layout: output.layout."""
    from igaudit.transforms import object_stores
    if not reuse:
        object_stores.beam_as_is()
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
    from igaudit.pipeline.config import from_dict
    from igaudit.pipeline.job import run_job
    args = []
    if where == "gs":
        os.environ.update(STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{port}", GOOGLE_CLOUD_PROJECT="test",
                          NO_GCE_CHECK="true")
        from apache_beam.internal.gcp import auth
        auth._Credentials._credentials_init, auth._Credentials._credentials = True, None
    elif where == "s3":
        args = [f"--s3_endpoint_url=http://127.0.0.1:{port}", "--s3_access_key_id=testing",
                "--s3_secret_access_key=testing", "--s3_region_name=us-east-1"]
        FileSystems.set_options(PipelineOptions(args))
    prefix = str(Path(data)) if where == "local" else f"{where}://{BUCKET}/{'reuse' if reuse else 'as-is'}-{layout}"
    if where != "local":
        for f in sorted(Path(data).rglob("*.png")):
            with FileSystems.create(f"{prefix}/data/{f.relative_to(data)}") as out:
                out.write(f.read_bytes())
    pattern = f"{prefix}/*/*.png" if where == "local" else f"{prefix}/data/*/*.png"
    out_dir = tempfile.mkdtemp(prefix="igaudit-bench-out-") if where == "local" else f"{prefix}/out"
    cfg = from_dict({"input": {"pattern": pattern}, "model": {"path": model}, "output": {"dir": out_dir, "layout": layout},
                     "analysis": {"fail_on_suspect": False}})
    started = time.time()
    summary = run_job(cfg, args)
    return {"where": where, "reuse": reuse, "layout": layout, "seconds": time.time() - started,
            "images": summary.attributed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.buckets", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "BUCKETS.md"))
    parser.add_argument("--child", nargs=6, metavar=("WHERE", "REUSE", "LAYOUT", "DATA", "MODEL", "PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        where, reuse, layout, data, model, port = args.child
        print(json.dumps(child(where, reuse == "1", layout, data, model, int(port))))
        return 0
    from benchmarks.common import quiet_tensorflow
    quiet_tensorflow()
    from igaudit.pipeline.demo import build_model
    data = demo_dataset(max(2, -(-args.images // 2))) / "audit"
    work = Path(tempfile.mkdtemp(prefix="igaudit-bench-buckets-"))
    model = work / "demo.keras"
    build_model(4).save(model)
    gs_port, s3_port = _free_port(), _free_port()
    servers = [subprocess.Popen([str(BIN / "gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={gs_port}",
                                 "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
               subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    rows = []
    try:
        _wait(gs_port)
        _wait(s3_port)
        os.environ.update(STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{gs_port}", GOOGLE_CLOUD_PROJECT="test",
                          NO_GCE_CHECK="true")
        from google.cloud import storage
        storage.Client().create_bucket(BUCKET)
        import boto3
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        for reuse, layout in VARIANTS:
            for where, port in (("local", 0), ("gs", gs_port), ("s3", s3_port)):
                done = subprocess.run([sys.executable, "-m", "benchmarks.buckets", "--child", where, str(int(reuse)),
                                       layout, str(data), str(model), str(port)], cwd=ROOT, capture_output=True,
                                      text=True)
                if done.returncode:
                    raise RuntimeError(f"{where} run failed:\n{done.stderr[-3000:]}")
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        for s in servers:
            s.kill()
        shutil.rmtree(work, ignore_errors=True)
    local = {(r["reuse"], r["layout"]): r["seconds"] for r in rows if r["where"] == "local"}
    lines = ["# Buckets: a whole run on local disk, gs:// and s3://", "",
             f"`python -m benchmarks.buckets --images {args.images}` on {cpu_info()[0]}: {rows[0]['images']} demo "
             "images, config defaults (masks and overlays written), against gcp-storage-emulator and moto's S3 "
             "server on this machine; each run a process of its own, start-up included.", "",
             "| where | Beam's filesystems | output.layout | seconds | x local (same columns) |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['where']} | {'clients reused (igaudit)' if r['reuse'] else 'as they come'} | "
                     f"{r['layout']} | {r['seconds']:.1f} | {r['seconds'] / local[(r['reuse'], r['layout'])]:.2f} |")
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
