"""The command line: overrides, Beam flags passed through, one-line errors with exit code 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from igaudit.pipeline.cli import _split_beam_args
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def igaudit(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def test_split_beam_args():
    assert _split_beam_args(["run", "--config", "c.yaml", "--", "--runner=X", "--set"]) == (
        ["run", "--config", "c.yaml"], ["--runner=X", "--set"])


@pytest.mark.slow
def test_run_with_overrides_and_beam_flags(tiny_assets, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tiny_assets, tmp_path / "out"))
    done = igaudit("run", "--config", str(cfg), "--set", "attribution.steps=4", "--set", "output.overlays=false",
                   "--direct_num_workers=1")
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stdout and str(tmp_path / "out" / "report.html") in done.stdout
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["attribution"]["steps"] == 4
    assert run["config"]["output"]["overlays"] is False
    assert run["beam_args"] == ["--direct_num_workers=1"]


@pytest.mark.slow
@pytest.mark.parametrize("mutate, needle", [
    (lambda raw: raw["attribution"].update(steps=0), "attribution.steps"),
    (lambda raw: raw["attribution"].update(rule="simpson"), "attribution.rule"),
    (lambda raw: raw.update(modle={}), "modle"),
    (lambda raw: raw["model"].update(path="/nonexistent/model.keras"), "/nonexistent/model.keras"),
    (lambda raw: raw["input"].update(pattern="/nonexistent/*/*.png"), "/nonexistent/*/*.png"),
    (lambda raw: raw["model"].update(input_size=[32, 32]), "input_size"),
    (lambda raw: raw["output"].update(dir=__file__ + "/out"), "cannot be written"),
])
def test_user_errors_are_one_line_with_exit_code_2(tiny_assets, tmp_path, mutate, needle):
    raw = tiny_config(tiny_assets, tmp_path / "out")
    mutate(raw)
    done = igaudit("run", "--config", str(write_config(tmp_path / "c.yaml", raw)))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("igaudit: error:") and needle in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_missing_config_file(tmp_path):
    done = igaudit("run", "--config", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "missing.yaml" in done.stderr and "Traceback" not in done.stderr
