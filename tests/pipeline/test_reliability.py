"""Every input accounted for, reruns safe, hostile inputs contained: whole runs (the stages' own checks are in
tests/transforms: test_decode.py fuzzes DecodeImages, test_attribute.py non-finite outputs, test_write.py the
file writes)."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from igaudit.pipeline.config import from_dict
from igaudit.pipeline.job import run_job
from igaudit.pipeline.run_dir import read_images_table
from tests.conftest import CLASSES, SHARED_FIXTURES, make_tiny_dataset, tiny_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = SHARED_FIXTURES


def _mixed_manifest(tmp_path: Path, tiny_assets) -> tuple[Path, int]:
    rows = [{"uri": str(p), "label": p.parent.name} for p in sorted(tiny_assets["data"].glob("*/*"))]
    fixture_files = sorted(p for p in FIXTURES.iterdir() if p.is_file())
    rows += [{"uri": str(p), "label": CLASSES[i % len(CLASSES)]} for i, p in enumerate(fixture_files)]
    # listed but not there (in a folder of its own: output.dir may not lie in a folder holding an input)
    rows.append({"uri": str(tmp_path / "gone" / "vanished.png"), "label": "ant"})
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["uri", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest, len(rows)


@pytest.mark.slow
@pytest.mark.shared_fixtures
def test_fixture_folder_mixed_into_a_dataset_reconciles(tiny_assets, tmp_path):
    manifest, n = _mixed_manifest(tmp_path, tiny_assets)
    out = tmp_path / "out"
    summary = run_job(from_dict(tiny_config(tiny_assets, out, input={"pattern": None, "manifest": str(manifest)})))
    assert summary.matched == n == summary.attributed + summary.rejected
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    stages = {r["uri"].rsplit("/", 1)[-1]: r["stage"] for r in rejected}
    assert stages["vanished.png"] == "read"
    expected = {row["file"]: row["expected"] for row in csv.DictReader((FIXTURES / "MANIFEST.csv").open())}
    attributed = {Path(r["uri"]).name for r in read_images_table(str(out)).to_pylist()}
    for name, outcome in expected.items():
        assert (name in attributed) == (outcome == "decode"), name
        if outcome == "reject":
            assert stages[name] == "decode"


@pytest.mark.slow
def test_hostile_ids_and_labels_stay_inside_the_output_dir(tiny_assets, tmp_path):
    images = sorted(tiny_assets["data"].glob("*/img*"))
    hostile = ["../../etc", "a/b", "a_b", "CON", "nul.txt", "x\x00y", "z" * 300, "..", "/abs/path", "ok-id"]
    manifest = tmp_path / "m.jsonl"
    import json
    manifest.write_text("".join(json.dumps({"uri": str(images[i]), "label": hostile[i % 4] if i % 2 else CLASSES[i % 3],
                                            "image_id": hid}) + "\n" for i, hid in enumerate(hostile)))
    out = tmp_path / "nested" / "out"
    cfg = tiny_config(tiny_assets, out, input={"pattern": None, "manifest": str(manifest)},
                      model={"class_names": str(_class_names(tmp_path))}, output={"raw": True})
    summary = run_job(from_dict(cfg))
    assert summary.matched == len(hostile) == summary.attributed + summary.rejected
    rows = read_images_table(str(out)).to_pylist()
    ids = [r["image_id"] for r in rows]
    assert len(set(ids)) == len(ids) == summary.attributed
    for image_id in ids:
        assert "/" not in image_id and ".." not in image_id and "\x00" not in image_id and len(image_id) <= 100
        assert image_id.split(".")[0].upper() not in {"CON", "NUL"}
    assert "ok-id" in ids
    written = [p for p in (tmp_path).rglob("*") if p.is_file()]
    assert all(str(p).startswith(str(out)) or p.name in ("m.jsonl", "classes.txt") for p in written)
    # stable: the same manifest again gives the same ids
    again = run_job(from_dict({**cfg, "output": {"dir": str(tmp_path / "again")}}))
    assert sorted(r["image_id"] for r in read_images_table(str(tmp_path / "again")).to_pylist()) == sorted(ids)
    assert again.attributed == summary.attributed


def _class_names(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def _run_cli(cfg_path: Path, **kw):
    return subprocess.Popen([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(cfg_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw)


def _outputs(out: Path) -> dict:
    rows = sorted(read_images_table(str(out)).to_pylist(), key=lambda r: r["image_id"])
    masks = {p.name: p.read_bytes() for p in sorted((out / "masks").glob("*"))}
    return {"rows": rows, "masks": masks}


@pytest.mark.slow
def test_killed_run_then_rerun_equals_a_clean_run(tmp_path):
    data = tmp_path / "data"
    for k in range(6):   # enough batches that the kill lands mid-way
        make_tiny_dataset(data / f"part{k}", per_class=4, broken=(k == 0))
    from tests.conftest import make_tiny_model
    model = make_tiny_model(tmp_path / "m.keras")
    assets = {"data": data, "model": model}

    def config(out):
        raw = tiny_config(assets, out, attribution={"steps": 64, "batch_size": 2, "chunk_size": 16})
        raw["input"]["pattern"] = str(data / "*" / "*" / "*")
        raw["model"]["class_names"] = str(_class_names(tmp_path))
        path = tmp_path / f"{out.name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    out = tmp_path / "out"
    proc = _run_cli(config(out))
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "masks").glob("*.png"))) < 3:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "_SUCCESS").exists()

    rerun = _run_cli(config(out))
    assert rerun.wait(timeout=600) == 0, rerun.communicate()
    clean = _run_cli(config(tmp_path / "clean"))
    assert clean.wait(timeout=600) == 0, clean.communicate()

    assert (out / "_SUCCESS").exists()
    a, b = _outputs(out), _outputs(tmp_path / "clean")
    assert a["masks"] == b["masks"]
    for x, y in zip(a["rows"], b["rows"]):
        x.pop("uri"), y.pop("uri")
        assert x.keys() == y.keys()
        assert x["image_id"] == y["image_id"] and x["predicted"] == y["predicted"]
        assert np.isclose(x["attribution_sum"], y["attribution_sum"], rtol=1e-6, atol=1e-9)
    assert len(a["rows"]) == len(b["rows"])
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.startswith("beam-temp")]
    assert not leftovers, leftovers
