"""Every input accounted for, reruns safe, hostile inputs contained."""
import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from pipeline.config import from_dict
from pipeline.job import read_images_table, run_job
from tests.conftest import CLASSES, make_tiny_dataset, tiny_config
from transforms.attribute import Explained, IGModelHandler
from transforms.decode import DecodeImages
from transforms.ig import IGBatch
from transforms.models import ModelSpec
from transforms.records import DecodedImage, ImageBytes, Rejected

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "images"


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(7)
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def mutations(seeds: list[bytes], n: int, seed: int = 0) -> list[bytes]:
    """Truncations, flipped bytes, spliced headers and inserted junk, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        data = bytearray(seeds[i % len(seeds)])
        kind = i % 4
        if kind == 0:
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == 1:
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 12))):
                data[pos] ^= int(rng.integers(1, 256))
        elif kind == 2:
            other = seeds[int(rng.integers(0, len(seeds)))]
            cut = int(rng.integers(1, min(len(data), len(other))))
            data = other[:cut] + data[cut:] if rng.random() < 0.5 else data[:cut] + other[cut:]
        else:
            pos = int(rng.integers(0, len(data)))
            data = data[:pos] + bytes(rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8)) + data[pos:]
        out.append(bytes(data))
    return out


def test_fuzzed_images_through_the_decode_stage_are_all_accounted_for():
    inputs = [ImageBytes(f"mem://{i}", "x", f"id{i}", data) for i, data in enumerate(mutations(_seed_images(), 300))]
    with BeamTestPipeline() as p:
        result = p | beam.Create(inputs) | DecodeImages((16, 16))
        decoded_ids = result.decoded | "DecodedIds" >> beam.Map(lambda d: d.image_id)
        rejected_ids = result.rejected | "RejectedIds" >> beam.Map(lambda r: r.image_id)
        all_ids = (decoded_ids, rejected_ids) | beam.Flatten()
        assert_that(all_ids, equal_to([f"id{i}" for i in range(len(inputs))]))
        assert_that(result.rejected | "Reasons" >> beam.Map(lambda r: bool(r.reason) and r.stage == "decode")
                    | beam.Distinct(), equal_to([True]), label="reasons")


def _mixed_manifest(tmp_path: Path, tiny_assets) -> tuple[Path, int]:
    rows = [{"uri": str(p), "label": p.parent.name} for p in sorted(tiny_assets["data"].glob("*/*"))]
    fixture_files = sorted(p for p in FIXTURES.iterdir() if p.is_file())
    rows += [{"uri": str(p), "label": CLASSES[i % len(CLASSES)]} for i, p in enumerate(fixture_files)]
    rows.append({"uri": str(tmp_path / "vanished.png"), "label": "ant"})   # listed but not there
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["uri", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest, len(rows)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/images not present")
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


def test_non_finite_model_outputs_become_rejects():
    class NaNModel:
        def probabilities(self, images):
            return np.tile([0.9, 0.1], (len(images), 1))

        def explain(self, images, baselines, targets, image_ids, references=None):
            n = len(images)
            att = np.zeros_like(images)
            att[0, 0, 0, 0] = np.nan
            r = IGBatch(att, np.zeros((n, 2)), np.zeros(n, int), np.ones(n), np.zeros(n, int),
                        np.ones(n), np.zeros(n), np.zeros(n), 3)
            return Explained(r, np.full(n, 2), np.full(n, 3))

    handler = IGModelHandler(ModelSpec("m.keras", (4, 4), (0.0, 1.0), "logits"), ["a", "b"])
    batch = [DecodedImage(f"u{i}", "a", f"id{i}", np.zeros((4, 4, 3), np.float32)) for i in range(2)]
    out = list(handler.run_inference(batch, NaNModel()))
    assert isinstance(out[0], Rejected) and out[0].reason.startswith("non_finite")
    assert not isinstance(out[1], Rejected)


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
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--config", str(cfg_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw)


def _outputs(out: Path) -> dict:
    rows = sorted(read_images_table(str(out)).to_pylist(), key=lambda r: r["image_id"])
    masks = {p.name: p.read_bytes() for p in sorted((out / "masks").glob("*"))}
    return {"rows": rows, "masks": masks}


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


def test_background_file_writes_finish_before_the_bundle_and_failures_surface(tmp_path, monkeypatch):
    """WriteArtifacts writes on a background thread: every file exists once finish_bundle
    returns, and a failed write fails the bundle instead of vanishing."""
    from transforms import render
    from transforms.records import AttributionResult
    from transforms import write
    from transforms.write import _WriteArtifactsFn
    monkeypatch.setattr(write, "MAX_PENDING_WRITES", 2)

    def result(i):
        rng = np.random.default_rng(i)
        return AttributionResult(uri=f"u{i}", label="a", image_id=f"id{i}",
                                 pixels=rng.uniform(size=(8, 8, 3)).astype(np.float32),
                                 attribution=rng.normal(size=(8, 8, 3)).astype(np.float32), label_index=0,
                                 predicted=0, confidence=0.9, target=0, score_input=0.9, score_baseline=0.1,
                                 completeness_gap=0.0, steps=8, rule="trapezoid")

    def run(out_dir):
        fn = _WriteArtifactsFn(str(out_dir), ["a"], True, True, True, 4, 0.1, render.DEFAULT_OPTIONS)
        fn.setup()
        fn.start_bundle()
        rows = []
        try:
            for i in range(5):
                rows += list(fn.process(result(i)))
                assert len(fn._pending) <= 2      # bounded: the oldest write is awaited
            fn.finish_bundle()
        finally:
            fn.teardown()
        return rows

    rows = run(tmp_path / "out")
    assert [r["image_id"] for r in rows] == [f"id{i}" for i in range(5)]
    for i in range(5):
        for rel in (f"masks/id{i}.png", f"overlays/id{i}.png", f"raw/id{i}.npy"):
            assert (tmp_path / "out" / rel).is_file(), rel
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the output dir should be")
    with pytest.raises(Exception):
        run(blocked)


def test_local_files_are_written_atomically_into_new_folders_and_replace_old_ones(tmp_path):
    from transforms.write import write_file_atomically
    target = tmp_path / "masks" / "deeper" / "a.png"
    write_file_atomically(str(target), b"first")
    assert target.read_bytes() == b"first"
    write_file_atomically(str(target), b"second")          # a retried bundle rewrites its files
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]   # no temporary left behind
