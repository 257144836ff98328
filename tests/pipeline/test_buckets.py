"""Every path in the config on gs:// and s3://, against real servers started here: Google's storage emulator
(gcp-storage-emulator, honoured through STORAGE_EMULATOR_HOST) and moto's S3 server (Beam's --s3_* flags).
A full run equals a local run, an audit finds its reference on the bucket, models load from the bucket (and
are cached locally), and output.dir ownership holds there too."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from igaudit.pipeline import audit as audits
from igaudit.pipeline.config import from_dict
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.job import run_job
from igaudit.pipeline.run_dir import read_images_table, read_table
from igaudit.transforms.artifacts import read_artifacts
from tests.conftest import CLASSES, SIZE, tiny_config
from tests.e2e.test_runners_agree import free_port, wait_for_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
BUCKET = "igaudit-test"
# Runs that check something other than the pictures write none: each object costs a few requests, and on
# S3 each of Beam's calls builds a new client (~0.4 s here).
FEW_FILES = {"masks": False, "overlays": False}


@dataclass
class Bucket:
    scheme: str
    beam_args: list
    s3_client: object = None      # uploads to S3 go through boto3: Beam's S3 writer cannot write empty objects

    def uri(self, *parts: str) -> str:
        return "/".join([f"{self.scheme}://{BUCKET}", *parts])

    def upload(self, local: Path, *parts: str) -> str:
        """A local file or folder, copied to uri(*parts)."""
        target = self.uri(*parts)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for f in files:
            dest = target if local.is_file() else target + "/" + str(f.relative_to(local))
            if self.s3_client is not None:
                self.s3_client.put_object(Bucket=BUCKET, Key=dest.split("/", 3)[3], Body=f.read_bytes())
                continue
            with FileSystems.create(dest) as out:
                out.write(f.read_bytes())
        return target

    def download(self, prefix: str, local: Path) -> Path:
        for m in FileSystems.match([prefix.rstrip("/") + "/**"])[0].metadata_list:
            dest = local / m.path[len(prefix.rstrip("/")) + 1:]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with FileSystems.open(m.path) as f:
                dest.write_bytes(f.read())
        return local


@pytest.fixture(scope="module", params=["gs", "s3"])
def bucket(request):
    port = free_port()
    saved_env = dict(os.environ)
    if request.param == "gs":
        proc = subprocess.Popen([str(BIN / "gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={port}",
                                 "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ.update(STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{port}", GOOGLE_CLOUD_PROJECT="test",
                          NO_GCE_CHECK="true")
        # Beam retries Google's credential discovery for ~25 s in every process before it connects
        # anonymously; the emulator needs no credentials, so this test process starts with that answer.
        from apache_beam.internal.gcp import auth
        auth._Credentials._credentials_init, auth._Credentials._credentials = True, None
        wait_for_port(proc, port)
        from google.cloud import storage
        storage.Client().create_bucket(BUCKET)
        beam_args, client = [], None
    else:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(proc, port)
        beam_args = [f"--s3_endpoint_url=http://127.0.0.1:{port}", "--s3_access_key_id=testing",
                     "--s3_secret_access_key=testing", "--s3_region_name=us-east-1"]
        import boto3
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
    FileSystems.set_options(PipelineOptions(beam_args))
    try:
        yield Bucket(request.param, beam_args, client)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        os.environ.clear()
        os.environ.update(saved_env)
        FileSystems.set_options(PipelineOptions([]))


@pytest.fixture(scope="module")
def uploaded(bucket, tiny_assets, tmp_path_factory):
    """The tiny dataset, model, class names and a baseline image, locally and on the bucket."""
    local = tmp_path_factory.mktemp(f"local-{bucket.scheme}")
    (local / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    Image.fromarray(np.full((SIZE, SIZE, 3), 40, np.uint8)).save(local / "baseline.png")
    return {"local": local, "data": bucket.upload(tiny_assets["data"], "data"),
            "model": bucket.upload(tiny_assets["model"], "models", "tiny.keras"),
            "classes": bucket.upload(local / "classes.txt", "classes.txt"),
            "baseline": bucket.upload(local / "baseline.png", "baseline.png")}


def by_stem(rows: list[dict]) -> dict:
    """Rows keyed by the file stem: image ids hash the uri, which differs between the bucket and disk."""
    return {(r["label"], r["image_id"].rsplit("-", 1)[0]): r for r in rows}


def test_a_full_run_with_every_path_on_the_bucket_equals_a_local_run(bucket, uploaded, tiny_assets, tmp_path):
    extra = {"attribution": {"baseline": uploaded["baseline"]}}
    remote_cfg = tiny_config(tiny_assets, bucket.uri("runs", "full"), **extra)
    remote_cfg["input"]["pattern"] = uploaded["data"] + "/*/*"
    remote_cfg["model"].update(path=uploaded["model"], class_names=uploaded["classes"])
    summary = run_job(from_dict(remote_cfg), bucket.beam_args)
    assert summary.matched == 15 and summary.attributed == 12 and summary.rejected == 3
    out = bucket.download(bucket.uri("runs", "full"), tmp_path / "from-bucket")
    assert (out / "_SUCCESS").read_text().strip()                 # not empty: S3 refuses zero-byte objects
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "ok"
    html = (out / "report.html").read_text()                      # inputs read again from the bucket
    if bucket.scheme == "s3":                                     # the key is in neither file
        assert "--s3_secret_access_key=***" in info["beam_args"]
        assert "s3_secret_access_key=testing" not in (out / "run.json").read_text() + html
    assert "input not readable" not in html and "no overlay" not in html

    local_cfg = tiny_config(tiny_assets, tmp_path / "local", attribution={"baseline": str(uploaded["local"] /
                                                                                         "baseline.png")})
    local_cfg["model"]["class_names"] = str(uploaded["local"] / "classes.txt")
    run_job(from_dict(local_cfg))
    a, b = by_stem(read_images_table(str(out)).to_pylist()), by_stem(read_images_table(str(tmp_path / "local"))
                                                                      .to_pylist())
    assert a.keys() == b.keys() and len(a) == 12
    for key in a:
        for column in ("predicted", "confidence", "score_baseline", "attribution_sum", "completeness_gap", "grid"):
            assert np.allclose(a[key][column], b[key][column], rtol=1e-6, atol=1e-9), (key, column)
        assert (out / a[key]["mask_path"]).read_bytes() == (tmp_path / "local" / b[key]["mask_path"]).read_bytes()
    assert sorted(r["reason"] for r in read_table(str(out / "rejected.parquet")).to_pylist()) == \
        sorted(r["reason"] for r in read_table(str(tmp_path / "local" / "rejected.parquet")).to_pylist())


def test_a_manifest_on_the_bucket_reads_its_relative_uris_there(bucket, uploaded, tiny_assets, tmp_path):
    rows = [f"{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(tiny_assets["data"].glob("*/img*"))]
    (tmp_path / "m.csv").write_text("uri,label\n" + "\n".join(rows) + "\n")
    manifest = bucket.upload(tmp_path / "m.csv", "data", "m.csv")     # uris relative to the manifest's folder
    cfg = tiny_config(tiny_assets, bucket.uri("runs", "manifest"), input={"pattern": None, "manifest": manifest},
                      output=FEW_FILES)
    cfg["model"]["path"] = uploaded["model"]
    summary = run_job(from_dict(cfg), bucket.beam_args)
    assert summary.matched == summary.attributed == 12


# Listing, deleting and reading back go through Beam's FileSystems the same way on both stores; s3 (moto, ~90 s
# a test here) runs the full run, the manifest and the inputs, gs these too and the rest (CI time). Dataflow
# reads gs:// only.
ON_GS_ONLY = pytest.mark.parametrize("bucket", ["gs"], indirect=True)


def test_an_audit_on_the_bucket_finds_the_earlier_run_and_reuses_its_unchanged_images_into_shards(bucket, uploaded,
                                                                                                 tiny_assets):
    cfg = tiny_config(tiny_assets, bucket.uri("audits"), output={"masks": False, "overlays": True})
    cfg["input"]["pattern"] = uploaded["data"] + "/*/*"
    cfg["model"]["path"] = uploaded["model"]
    first, ref = audits.audit(from_dict(cfg), bucket.beam_args)
    assert ref is None and first.out_dir.startswith(bucket.uri("audits", "run="))
    overlays = [m.path for m in FileSystems.match([FileSystems.join(first.out_dir, "overlays", "*.png")])[0]
                .metadata_list]
    assert len(overlays) == first.attributed                               # layout files: one object an image
    cfg["output"]["layout"] = "shards"                                     # not a setting that shapes a row
    second, ref = audits.audit(from_dict(cfg), bucket.beam_args)
    assert ref == first.out_dir and second.out_dir != first.out_dir
    assert second.reused == second.attributed == first.attributed          # audit.reuse: nothing changed
    assert not FileSystems.match([FileSystems.join(second.out_dir, "overlays", "*.png")])[0].metadata_list
    shards = FileSystems.match([FileSystems.join(second.out_dir, "artifacts", "*.parquet")])[0].metadata_list
    assert len(shards) == 1                                                # rewritten into this run's layout
    rows = read_images_table(second.out_dir).to_pylist()
    some = rows[0]["image_id"]
    with FileSystems.open(FileSystems.join(first.out_dir, "overlays", f"{some}.png")) as f:
        assert read_artifacts(second.out_dir, some)["overlay"] == f.read()     # the reader, on the bucket
    with FileSystems.open(FileSystems.join(second.out_dir, "report.html")) as f:
        html = f.read().decode()
    assert "no overlay" not in html and "data:image" in html               # the report opens the shards
    assert audits.completed_runs(bucket.uri("audits")) == [first.out_dir, second.out_dir]
    skew = read_table(FileSystems.join(second.out_dir, "skew.parquet")).to_pylist()
    assert any(r["metric"] == "ref_grid_js" for r in skew)
    assert read_table(FileSystems.join(second.out_dir, "findings.parquet")).num_rows >= 0   # written on the bucket


def test_models_load_from_the_bucket_through_a_local_cache(bucket, tmp_path, monkeypatch):
    import keras
    import tensorflow as tf

    from igaudit.pipeline.config import ModelConfig
    from igaudit.transforms.attribution.model_files import CACHE_ENV
    from igaudit.transforms.attribution.models import load_classifier
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    model.export(str(tmp_path / "exported"), verbose=False)

    class Module(tf.Module):      # a TF2 hub-style module: raw variables and a __call__, no Keras
        def __init__(self, kernel, bias):
            super().__init__()
            self.kernel, self.bias = tf.Variable(kernel), tf.Variable(bias)

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, x):
            return tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), self.kernel) + self.bias

    rng = np.random.default_rng(1)
    hub = Module(rng.normal(size=(192, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32))
    tf.saved_model.save(hub, str(tmp_path / "hub"))
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    for name, fmt, reference in (("m.keras", "auto", model), ("m.h5", "auto", model),
                                 ("exported", "auto", model), ("hub", "hub", hub)):
        remote = bucket.upload(tmp_path / name, "models", name)
        classifier = load_classifier(ModelConfig(remote, format=fmt))
        np.testing.assert_allclose(classifier(tf.constant(x)).numpy(), reference(x).numpy(), rtol=1e-5, atol=1e-6)
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 4
    load_classifier(ModelConfig(bucket.uri("models", "m.keras")))      # again: from the cache, no new copy
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached


@ON_GS_ONLY
def test_ownership_holds_on_the_bucket(bucket, uploaded, tiny_assets):
    foreign = bucket.uri("foreign")
    with FileSystems.create(foreign + "/masks/mine.png") as f:
        f.write(b"not igaudit's")
    cfg = tiny_config(tiny_assets, foreign, output={"overlays": False})
    cfg["input"]["pattern"] = uploaded["data"] + "/*/*"
    cfg["model"]["path"] = uploaded["model"]
    with pytest.raises(UserError, match="not an igaudit run folder"):
        run_job(from_dict(cfg), bucket.beam_args)
    assert [m.path for m in FileSystems.match([foreign + "/**"])[0].metadata_list] == [foreign + "/masks/mine.png"]
    run = bucket.uri("owned")
    cfg["output"]["dir"] = run
    run_job(from_dict(cfg), bucket.beam_args)
    with FileSystems.create(run + "/masks/keep.txt") as f:
        f.write(b"a note")
    masks = {m.path for m in FileSystems.match([run + "/masks/*"])[0].metadata_list}
    run_job(from_dict(cfg), bucket.beam_args)
    assert {m.path for m in FileSystems.match([run + "/masks/*"])[0].metadata_list} == masks
    with FileSystems.open(run + "/masks/keep.txt") as f:
        assert f.read() == b"a note"
    cfg["output"]["dir"] = uploaded["data"] + "/out"                    # inside the inputs' folder
    with pytest.raises(UserError, match="overlaps the inputs"):
        run_job(from_dict(cfg), bucket.beam_args)


@ON_GS_ONLY
def test_the_dataflow_job_request_is_built_offline(bucket, uploaded, tiny_assets):
    """Beam's Dataflow dry run: the shipped configs/dataflow.yaml, pointed at the emulated bucket, builds the
    job request (nothing is submitted): igaudit's stages, the worker container or the setup file, the GPU."""
    from igaudit.pipeline.config import load_config
    from igaudit.pipeline.runner import SETUP_FILE
    overrides = [f"input.pattern={uploaded['data']}/*/*", f"model.path={uploaded['model']}",
                 f"model.class_names={uploaded['classes']}", f"output.dir={bucket.uri('dataflow')}"]
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "dataflow.yaml", overrides)
    flags = ["--dry_run=True", f"--temp_location={bucket.uri('tmp')}", f"--staging_location={bucket.uri('staging')}"]
    summary = run_job(cfg, flags)
    job = summary.job_request
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    for stage in ("MatchImages", "AuditImages", "AuditImages/ReadImageBytes", "AuditImages/DecodeImages",
                  "AuditImages/Attribute/RunInference", "AuditImages/WriteArtifacts", "AuditImages/AggregateClasses",
                  "AuditImages/FlagSkew", "AuditImages/Finalize"):
        assert stage in names, stage
    environments = list(job.proto_pipeline.components.environments.values())
    from apache_beam.portability.api import beam_runner_api_pb2
    images = {beam_runner_api_pb2.DockerPayload.FromString(e.payload).container_image for e in environments}
    assert images == {cfg.beam["sdk_container_image"]}
    assert all(e.resource_hints["beam:resources:accelerator:v1"] ==
               b"type:nvidia-tesla-t4;count:1;install-nvidia-driver" for e in environments)
    assert not FileSystems.match([bucket.uri("dataflow") + "/**"])[0].metadata_list    # checked, not written
    # without a container the launcher ships igaudit as an sdist of setup.py
    beam = {k: v for k, v in cfg.beam.items() if k not in ("sdk_container_image", "sdk_location")}
    import dataclasses
    summary = run_job(dataclasses.replace(cfg, beam=beam), flags)
    job = summary.job_request
    assert job.options.get_all_options()["setup_file"] == str(SETUP_FILE)
    staged = [a for e in job.proto_pipeline.components.environments.values() for a in e.dependencies]
    assert any(b"workflow.tar.gz" in a.role_payload for a in staged), staged


@pytest.mark.slow
def test_the_dataflow_dry_run_is_offline(tiny_assets, tmp_path):
    """The shipped configs/dataflow.yaml as it is (gs://my-bucket does not exist) through the CLI, with the
    storage endpoint pointed at a closed port: any list or read of the bucket would fail or hang, so a built
    job request means none happened."""
    import subprocess
    import sys
    import time
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, STORAGE_EMULATOR_HOST="http://127.0.0.1:9", GOOGLE_CLOUD_PROJECT="test",
               NO_GCE_CHECK="true")
    started = time.time()
    for command in ("run", "audit"):
        done = subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", command, "--config",
                               "configs/dataflow.yaml", "--", "--dry_run=True"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "dry run: the Dataflow job request is built" in done.stdout
        assert "the class names come from the bucket" in done.stderr
    assert time.time() - started < 120
