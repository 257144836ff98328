"""Progress a user can follow on a CLI run: progress lines, a closing summary, metrics in run.json (the throttling
itself: tests/transforms/test_progress.py)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from igaudit.transforms.progress import PROGRESS_ENV
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli_run(tiny_assets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("progress")
    config = tmp / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_assets, tmp / "out")))
    env = dict(os.environ, **{PROGRESS_ENV: "0"})   # a line per batch, so a short run shows some
    done = subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(config)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {"done": done, "out": tmp / "out"}


@pytest.mark.slow
def test_local_run_prints_progress_lines_without_library_noise(cli_run):
    err = cli_run["done"].stderr
    counts = [int(n) for n in re.findall(r"^igaudit progress: (\d+) images? attributed by worker pid \d+ "
                                         r"\(\d+\.\d images/s\)$", err, flags=re.M)]
    assert counts and counts == sorted(counts) and counts[-1] == 12, err
    assert "apache_beam" not in err and "INFO" not in err and "WARNING" not in err, err


@pytest.mark.slow
def test_local_run_ends_with_a_summary(cli_run):
    out = cli_run["done"].stdout
    assert re.search(r"^igaudit: 15 images matched, 3 classes; writing to ", out, flags=re.M), out
    match = re.search(r"^igaudit: attributed 12 of 15 images \(3 rejected\) in (\d+\.\d) s; (\d+\.\d) images/s; "
                      r"accuracy (\d\.\d\d)$", out, flags=re.M)
    assert match and float(match.group(2)) > 0, out
    wall = re.search(r"wall time \(s\)</th><td>([0-9.]+)<", (cli_run["out"] / "report.html").read_text()).group(1)
    assert match.group(1) == wall                  # the console and the report give the same wall time
    assert float(match.group(3)) == pytest.approx(json.loads((cli_run["out"] / "run.json").read_text())["accuracy"],
                                                  abs=0.005)
    assert re.search(r"^igaudit: (nothing flagged.*|shortcut .+)$", out, flags=re.M), out
    assert f"igaudit: report: {cli_run['out'] / 'report.html'}" in out


@pytest.mark.slow
def test_run_json_carries_the_metrics_queried_from_the_result(cli_run):
    run = json.loads((cli_run["out"] / "run.json").read_text())
    counters = run["metrics"]["counters"]
    assert counters["images_read"] == 15 and counters["decoded"] == 12 and counters["attributed"] == 12
    assert counters["rejected_read"] == 0 and counters["rejected_decode"] == 3 and counters["rejected_attribute"] == 0
    assert counters["gradient_samples"] == 12 * 9        # trapezoid with 8 steps: 9 samples per image
    ig = run["metrics"]["distributions"]["ig_batch_ms"]
    assert ig["count"] >= 3 and ig["sum"] >= ig["max"] >= ig["min"] >= 0
    assert run["timings"]["images_per_second"] > 0
    clock = run["metrics"]["distributions"]["attribute_clock_ms"]   # a start and an end per batch
    assert clock["count"] == 2 * ig["count"] and clock["max"] > clock["min"] >= 0
    assert run["timings"]["attribution_seconds"] == pytest.approx((clock["max"] - clock["min"]) / 1000, abs=1e-3)
    assert run["timings"]["attribution_seconds"] <= run["timings"]["pipeline_seconds"]
    assert run["timings"]["attribution_images_per_second"] == pytest.approx(
        12 / run["timings"]["attribution_seconds"], rel=1e-3)


@pytest.mark.slow
def test_on_a_terminal_a_local_run_draws_one_live_progress_bar(tiny_assets, tmp_path):
    """stderr on a pseudo-terminal: the rich bar (images of matched, rate, rejected, ETA) instead of the
    periodic lines, and the summary after it."""
    import pty
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_assets, tmp_path / "out", attribution={"steps": 64})))
    leader, follower = pty.openpty()
    env = dict(os.environ, **{PROGRESS_ENV: "0", "TERM": "xterm", "COLUMNS": "160"})
    proc = subprocess.Popen([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(config)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:          # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.communicate(timeout=300)[0]
    os.close(leader)
    terminal = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    assert proc.returncode == 0, terminal
    assert re.search(r"attributing .*\d+ of 15 images · \d+\.\d/s · \d+ rejected · ETA", terminal), terminal
    assert "igaudit progress:" not in terminal           # no periodic lines under the bar
    assert re.search(r"(analysing|writing the report) .*12 of 15 images", terminal), terminal   # not a bare 100%
    assert "igaudit: attributed 12 of 15 images" in stdout


def test_the_bar_names_the_stage_after_attribution():
    from igaudit.pipeline.live import ProgressBar
    bar = ProgressBar(10)
    try:
        assert bar.stage({"attributed": 4, "rejected": 1}) == "attributing"
        assert bar.stage({"attributed": 9, "rejected": 1}) == "analysing"
        assert bar.stage({"attributed": 9, "rejected": 1, "tests": 12}) == "analysing (12 intervention tests)"
        assert bar.stage({"attributed": 9, "rejected": 1, "tests": 12, "finishing": 1}) == "writing the report"
    finally:
        bar.__exit__(None, None, None)
    records = ProgressBar(None)          # TFRecord records: no total, the tests tell attribution is over
    try:
        assert records.stage({"attributed": 40, "rejected": 0}) == "attributing"
        assert records.stage({"attributed": 40, "rejected": 0, "tests": 1}).startswith("analysing")
    finally:
        records.__exit__(None, None, None)
