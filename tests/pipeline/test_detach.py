"""A job submitted and left alone finishes itself: `igaudit run --detach` to Beam's local job service, with
its workers in an external worker pool (the shape of a Flex Template launch on Dataflow). The launcher
returns first; the job then writes report.html, run.json and _SUCCESS, and equals a local run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from igaudit.pipeline.run_dir import read_images_table
from tests.conftest import tiny_config
from tests.e2e.test_runners_agree import ROOT, assert_rows_equal, free_port, stop_process_group, wait_for_port

pytestmark = pytest.mark.slow


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    with open(log, "wb") as f:    # the worker pool starts workers with `python` from PATH: this venv's
        return subprocess.Popen([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=log.parent)


@pytest.fixture(scope="module")
def job_service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("services")
    job_port, pool_port = free_port(), free_port()
    service = start(["apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
                    folder / "job_service.log")
    pool = start(["apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"],
                 folder / "worker_pool.log")
    try:
        wait_for_port(service, job_port)
        wait_for_port(pool, pool_port)
        yield ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL",
               f"--environment_config=localhost:{pool_port}"], folder
    finally:
        stop_process_group(pool)
        stop_process_group(service)


def test_a_detached_job_finishes_itself_and_equals_a_local_run(tiny_assets, tmp_path, job_service):
    beam_args, services = job_service
    out, local = tmp_path / "detached", tmp_path / "local"
    raw = tiny_config(tiny_assets, out, attribution={"steps": 32})
    raw["analysis"]["fail_on_suspect"] = True    # the untrained tiny model is suspect: wait must say 4, as attached
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    cwd = tmp_path / "elsewhere"        # the worker pool's directory differs: relative paths must not matter
    cwd.mkdir()
    launched = time.time()
    done = subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(config), "--detach",
                           "--", *beam_args], cwd=cwd, capture_output=True, text=True, timeout=300)
    returned = time.time()
    assert done.returncode == 0, done.stderr
    assert "submitted job job-" in done.stdout
    assert not (out / "_SUCCESS").exists()          # the launcher returned before the job ended
    assert f"igaudit wait {out}" in done.stdout
    waited = subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", "wait", "--config", str(config),
                             "--timeout", "600", "--poll", "0.5"], cwd=cwd, capture_output=True, text=True, timeout=700)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in services.glob("*.log"))
    assert (out / "_SUCCESS").exists(), logs
    assert waited.returncode == 4, waited.stderr + waited.stdout
    assert "igaudit: suspect: 100% of images are predicted" in waited.stderr
    assert "igaudit: attributed 12 of 15 images" in waited.stdout and "igaudit: report:" in waited.stdout
    finished = (out / "_SUCCESS").stat().st_mtime
    assert finished > returned > launched
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "ok" and info["counts"] == {"matched": 15, "attributed": 12, "rejected": 3,
                                                   "not_converged": info["counts"]["not_converged"], "reused": 0}
    assert "igaudit report" in (out / "report.html").read_text()

    raw["output"]["dir"] = str(local)
    config.write_text(yaml.safe_dump(raw))
    assert subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(config)], cwd=ROOT,
                          capture_output=True, timeout=600).returncode == waited.returncode
    assert_rows_equal(read_images_table(str(out)).to_pylist(), read_images_table(str(local)).to_pylist(),
                      key=lambda r: r["image_id"])
    assert {p.name: p.read_bytes() for p in (out / "masks").iterdir()} == \
        {p.name: p.read_bytes() for p in (local / "masks").iterdir()}


def test_detach_with_a_local_runner_is_a_user_error(tiny_assets, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_assets, tmp_path / "out")))
    done = subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(config), "--detach"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--detach needs a runner whose workers outlive this process" in done.stderr
    assert not (tmp_path / "out").exists()
