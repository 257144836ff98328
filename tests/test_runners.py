"""The same audit on three runners gives the same results; launch options for remote runners.

In-process FnApiRunner (the default) vs PortableRunner through Beam's local job service
(LOOPBACK workers: the job API Flink's and Spark's job servers speak) vs two SDK worker
processes (`--direct_running_mode=multi_processing`), and with `model.share_across_processes`
one model copy serving both processes. Catches pickling and coder problems before a cluster does.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import from_dict, load_config
from pipeline.job import (SETUP_FILE, pipeline_options, read_images_table, run_job, runs_on_remote_workers,
                          worker_code_options)
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
TWO_PROCESSES = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
FLOAT_TOL = {"rtol": 1e-5, "atol": 1e-7}   # batch composition differs between runners: float32 noise only


# -- running --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_job_service(log_path: Path) -> tuple[subprocess.Popen, int]:
    """Beam's local job service on a free loopback port, in its own process group."""
    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    log.close()
    return proc, port


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"job service exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"job service did not listen on port {port} within {timeout} s")


def stop_process_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)   # the group we created with start_new_session
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass


def audit(assets, out: Path, beam_args=(), **sections):
    sections.setdefault("output", {}).setdefault("raw", True)
    return run_job(from_dict(tiny_config(assets, out, **sections)), list(beam_args))


@pytest.fixture(scope="module")
def runs(tiny_assets, tmp_path_factory):
    """{name: (out dir, RunSummary)} for the in-process, portable and two-process runs."""
    root = tmp_path_factory.mktemp("runners")
    job_log = root / "job_service.log"
    proc, port = start_job_service(job_log)      # boots while the in-process run works
    try:
        done = {"in_process": (root / "in_process", audit(tiny_assets, root / "in_process"))}
        wait_for_port(proc, port)
        portable_args = ["--runner=PortableRunner", f"--job_endpoint=localhost:{port}",
                         "--environment_type=LOOPBACK"]
        done["portable"] = (root / "portable", audit(tiny_assets, root / "portable", portable_args))
    finally:
        stop_process_group(proc)
    done["two_processes"] = (root / "two_processes", audit(tiny_assets, root / "two_processes", TWO_PROCESSES))
    done["job_service_log"] = job_log.read_text(errors="replace")
    return done


# -- comparing ------------------------------------------------------------------------------------
def _assert_values_equal(a, b, where: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert np.isclose(a, b, **FLOAT_TOL), f"{where}: {a} != {b}"
    elif isinstance(a, list) and a and isinstance(a[0], float):
        assert np.allclose(a, b, **FLOAT_TOL), f"{where}: {a} != {b}"
    elif isinstance(a, list) and a and isinstance(a[0], tuple):   # Parquet maps come back as pairs
        assert sorted(a) == sorted(b), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_rows_equal(rows_a: list[dict], rows_b: list[dict], key) -> None:
    rows_a, rows_b = sorted(rows_a, key=key), sorted(rows_b, key=key)
    assert [key(r) for r in rows_a] == [key(r) for r in rows_b]
    for a, b in zip(rows_a, rows_b):
        assert a.keys() == b.keys()
        for column in a:
            _assert_values_equal(a[column], b[column], f"{key(a)}.{column}")


def assert_same_results(out_a: Path, out_b: Path) -> None:
    images_a = read_images_table(str(out_a)).to_pylist()
    images_b = read_images_table(str(out_b)).to_pylist()
    assert len(images_a) == 12
    assert_rows_equal(images_a, images_b, key=lambda r: r["image_id"])
    classes = [pq.read_table(out / "classes.parquet").to_pylist() for out in (out_a, out_b)]
    assert_rows_equal(*classes, key=lambda r: (r["group_by"], r["class_name"]))
    rejected = [pq.read_table(out / "rejected.parquet").to_pylist() for out in (out_a, out_b)]
    assert sorted(map(str, rejected[0])) == sorted(map(str, rejected[1]))
    masks_a = sorted(p.name for p in (out_a / "masks").glob("*.png"))
    assert masks_a == sorted(p.name for p in (out_b / "masks").glob("*.png")) and len(masks_a) == 12
    for name in masks_a:
        a = np.asarray(Image.open(out_a / "masks" / name), np.int16)
        b = np.asarray(Image.open(out_b / "masks" / name), np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name   # 8-bit rounding at most
        raw = name.replace(".png", ".npy")
        assert np.allclose(np.load(out_a / "raw" / raw), np.load(out_b / "raw" / raw), rtol=1e-4, atol=1e-7), raw


# -- equivalence ----------------------------------------------------------------------------------
def test_portable_runner_through_the_job_service_matches_in_process(runs):
    assert_same_results(runs["in_process"][0], runs["portable"][0])
    # the job really went through the job service: it ran and finished it
    log = runs["job_service_log"]
    assert re.search(r"Running job 'job-", log), log[-2000:]
    assert re.search(r"Completed job in .* with state DONE", log), log[-2000:]


def test_two_worker_processes_match_in_process(runs):
    assert_same_results(runs["in_process"][0], runs["two_processes"][0])
    # one model per worker process by default: both processes loaded their own copy
    loads = runs["two_processes"][1].metrics["distributions"]["load_model_latency_milli_secs"]["count"]
    assert loads == 2


def test_metrics_from_every_runner_carry_the_counters(runs):
    expected = {"images_read": 15, "decoded": 12, "attributed": 12, "rejected_read": 0, "rejected_decode": 3,
                "rejected_attribute": 0, "gradient_samples": 12 * 9}   # trapezoid, 8 steps: 9 samples
    for name in ("in_process", "portable", "two_processes"):
        metrics = runs[name][1].metrics
        assert {k: metrics["counters"][k] for k in expected} == expected, name
        ig = metrics["distributions"]["ig_batch_ms"]
        assert ig["count"] >= 3 and 0 <= ig["min"] <= ig["mean"] <= ig["max"], name   # batches of <= 4


def test_shared_model_serves_both_processes(runs, tiny_assets, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("IGAUDIT_PROGRESS_SECONDS", "0")   # a progress line per batch, with the worker's pid
    out = tmp_path / "shared"
    summary = audit(tiny_assets, out, TWO_PROCESSES, model={"share_across_processes": True})
    assert_same_results(runs["in_process"][0], out)
    # one load for the whole run, yet both worker processes attributed images (through the proxy)
    assert summary.metrics["distributions"]["load_model_latency_milli_secs"]["count"] == 1
    pids = set(re.findall(r"igaudit progress: \d+ images? attributed by worker pid (\d+)", capfd.readouterr().err))
    assert len(pids) == 2, pids


# -- shipping code to workers ---------------------------------------------------------------------
def options_of(*args) -> dict:
    from apache_beam.options.pipeline_options import PipelineOptions
    return PipelineOptions(list(args)).get_all_options()


@pytest.mark.parametrize("args, remote", [
    ([], False),
    (["--runner=DirectRunner"], False),
    (["--runner=PrismRunner"], False),
    (["--runner=DataflowRunner"], True),
    (["--runner=dataflow"], True),
    (["--runner=PortableRunner", "--job_endpoint=localhost:8099"], True),              # DOCKER by default
    (["--runner=PortableRunner", "--environment_type=LOOPBACK"], False),
    (["--runner=PortableRunner", "--environment_type=EXTERNAL", "--environment_config=w:50000"], True),
    (["--runner=FlinkRunner"], False),                                                  # [auto]: local Flink
    (["--runner=FlinkRunner", "--flink_master=flink:8081"], True),
    (["--runner=FlinkRunner", "--flink_master=flink:8081", "--environment_type=LOOPBACK"], False),
    (["--runner=SparkRunner"], False),                                                  # local[4]
    (["--runner=SparkRunner", "--spark_master_url=spark://m:7077"], True),
])
def test_which_runners_have_remote_workers(args, remote):
    assert runs_on_remote_workers(options_of(*args)) is remote


def test_worker_code_options_adds_the_setup_file_only_when_needed():
    setup = f"--setup_file={SETUP_FILE}"
    assert worker_code_options(options_of()) == []
    assert worker_code_options(options_of("--direct_num_workers=2")) == []
    assert worker_code_options(options_of("--runner=DataflowRunner")) == [setup]
    assert worker_code_options(options_of("--runner=FlinkRunner", "--flink_master=f:8081",
                                          "--environment_type=PROCESS")) == [setup]
    # something else already ships the code
    for given in (["--setup_file=/x/setup.py"], ["--extra_package=/x/igaudit.tar.gz"],
                  ["--extra_packages=/x/igaudit.tar.gz"], ["--sdk_container_image=img:1"],
                  ["--environment_type=DOCKER", "--environment_config=img:1"], ["--environment_config=img:1"],
                  ["--environment_type=DOCKER", "--environment_option=docker_container_image=img:1"]):
        assert worker_code_options(options_of("--runner=PortableRunner", *given)) == [], given
    assert worker_code_options(options_of("--runner=DataflowRunner", "--sdk_container_image=img:1")) == []
    # an installed (non-checkout) igaudit has no setup.py to ship
    assert worker_code_options(options_of("--runner=DataflowRunner"), setup_file=Path("/nonexistent/setup.py")) == []


def test_launcher_adds_setup_file_to_the_options_beam_sends(tiny_assets, tmp_path):
    cfg = from_dict(tiny_config(tiny_assets, tmp_path / "o", beam={"runner": "FlinkRunner",
                                                                   "flink_master": "flink:8081"}))
    sent = pipeline_options(cfg, ["--environment_type=PROCESS"]).get_all_options()
    assert sent["setup_file"] == str(SETUP_FILE) and sent["flink_master"] == "flink:8081"
    assert pipeline_options(cfg, []).get_all_options()["setup_file"] == str(SETUP_FILE)   # DOCKER, no image
    assert pipeline_options(cfg, ["--environment_type=LOOPBACK"]).get_all_options()["setup_file"] is None


def test_shipped_dataflow_config_options():
    cfg = load_config(ROOT / "configs" / "dataflow.yaml")
    assert cfg.input.pattern.startswith("gs://") and cfg.model.path.startswith("gs://")
    assert cfg.output.dir.startswith("gs://")
    sent = pipeline_options(cfg, []).get_all_options()
    assert sent["runner"] == "DataflowRunner"
    for key in ("project", "region", "temp_location", "staging_location", "machine_type", "sdk_container_image"):
        assert sent[key], key
    assert sent["temp_location"].startswith("gs://") and sent["staging_location"].startswith("gs://")
    accelerator = [o for o in sent["dataflow_service_options"] if o.startswith("worker_accelerator=")]
    assert accelerator == ["worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]
    assert sent["machine_type"].startswith("n1-")          # T4s attach to N1 machines
    assert sent["setup_file"] is None and not sent["extra_packages"]   # the container has the code
    assert sent["sdk_location"] == "container"              # and Beam too: nothing to stage
    assert sent["num_workers"] >= 1 and sent["max_num_workers"] >= sent["num_workers"]
    # the same config with the image removed ships the code as an sdist instead
    no_image = pipeline_options(cfg, ["--sdk_container_image="]).get_all_options()
    assert no_image["setup_file"] == str(SETUP_FILE)


def test_shipped_flink_config_options():
    cfg = load_config(ROOT / "configs" / "flink.yaml")
    sent = pipeline_options(cfg, []).get_all_options()
    assert sent["runner"] == "FlinkRunner"
    assert re.fullmatch(r"[\w.-]+:8081", sent["flink_master"])
    assert sent["environment_type"] == "DOCKER" and sent["environment_config"]
    assert runs_on_remote_workers(sent) and sent["setup_file"] is None      # the container has the code
    assert sent["flink_version"] in ("1.19", "1.20", "2.0", "2.1", "2.2")
    assert sent["flink_submit_uber_jar"] is True           # only the REST port has to be reachable
    # PROCESS workers run our boot command on the task managers: the launcher ships an sdist
    process = pipeline_options(cfg, ["--environment_type=PROCESS",
                                     '--environment_config={"command": "/opt/apache/beam/boot"}'])
    assert process.get_all_options()["setup_file"] == str(SETUP_FILE)


def test_setup_py_builds_an_sdist_with_the_code(tmp_path):
    """What Beam's stager does with --setup_file (its fallback when `build` is not installed)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        (project / name).write_bytes((ROOT / name).read_bytes())
    for package in ("pipeline", "transforms"):
        (project / package).mkdir()
        for f in (ROOT / package).iterdir():
            if f.is_file() and f.suffix in (".py", ".html"):
                (project / package / f.name).write_bytes(f.read_bytes())
    done = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
                          cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (sdist,) = (tmp_path / "dist").glob("igaudit-*.tar.gz")
    names = tarfile.open(sdist).getnames()
    for module in ("pipeline/job.py", "pipeline/cli.py", "transforms/ig.py", "transforms/attribute.py"):
        assert any(n.endswith(module) for n in names), module
