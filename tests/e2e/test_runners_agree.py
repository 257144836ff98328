"""The same audit on three runners gives the same results (the launch options for remote runners:
tests/pipeline/test_runner.py).

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
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from igaudit.pipeline.config import from_dict
from igaudit.pipeline.job import run_job
from igaudit.pipeline.run_dir import read_images_table
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
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
@pytest.mark.slow
def test_portable_runner_through_the_job_service_matches_in_process(runs):
    assert_same_results(runs["in_process"][0], runs["portable"][0])
    # the job really went through the job service: it ran and finished it
    log = runs["job_service_log"]
    assert re.search(r"Running job 'job-", log), log[-2000:]
    assert re.search(r"Completed job in .* with state DONE", log), log[-2000:]


@pytest.mark.slow
def test_two_worker_processes_match_in_process(runs):
    assert_same_results(runs["in_process"][0], runs["two_processes"][0])
    # one model per worker process by default: both processes loaded their own copy
    loads = runs["two_processes"][1].metrics["distributions"]["load_model_latency_milli_secs"]["count"]
    assert loads == 2


@pytest.mark.slow
def test_metrics_from_every_runner_carry_the_counters(runs):
    expected = {"images_read": 15, "decoded": 12, "attributed": 12, "rejected_read": 0, "rejected_decode": 3,
                "rejected_attribute": 0, "gradient_samples": 12 * 9}   # trapezoid, 8 steps: 9 samples
    for name in ("in_process", "portable", "two_processes"):
        metrics = runs[name][1].metrics
        assert {k: metrics["counters"][k] for k in expected} == expected, name
        ig = metrics["distributions"]["ig_batch_ms"]
        assert ig["count"] >= 3 and 0 <= ig["min"] <= ig["mean"] <= ig["max"], name   # batches of <= 4


@pytest.mark.slow
def test_shared_model_serves_both_processes(runs, tiny_assets, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("IGAUDIT_PROGRESS_SECONDS", "0")   # a progress line per batch, with the worker's pid
    out = tmp_path / "shared"
    summary = audit(tiny_assets, out, TWO_PROCESSES, model={"share_across_processes": True})
    assert_same_results(runs["in_process"][0], out)
    # one load for the whole run, yet both worker processes attributed images (through the proxy)
    assert summary.metrics["distributions"]["load_model_latency_milli_secs"]["count"] == 1
    pids = set(re.findall(r"igaudit progress: \d+ images? attributed by worker pid (\d+)", capfd.readouterr().err))
    assert len(pids) == 2, pids
