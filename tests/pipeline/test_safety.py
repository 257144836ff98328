"""Safe and honest runs, end to end through the CLI: igaudit never destroys what it did not write, never
calls a broken run a success, stops cleanly on a signal, refuses mistyped Beam flags, and takes models of
any channel count. Every case hashes every pre-existing file before and after."""
from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from igaudit.pipeline.cli import main
from igaudit.pipeline.run_dir import read_images_table
from tests.conftest import CLASSES, SIZE, make_tiny_dataset, tiny_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """main() installs its SIGINT/SIGTERM handlers; give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def snapshot(folder: Path) -> dict:
    """Every file under folder -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write_config(tmp_path: Path, raw: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def run_cli(config: Path, *extra: str) -> int:
    return main(["run", "--config", str(config), *extra])


def rows_by_id(out: Path) -> dict:
    return {r["image_id"]: r for r in read_images_table(str(out)).to_pylist()}


# -- ownership -------------------------------------------------------------------------------------------
def test_a_foreign_folder_and_the_folder_holding_the_inputs_are_refused_untouched(tiny_assets, tmp_path, capsys):
    foreign = tmp_path / "mine"
    (foreign / "images").mkdir(parents=True)
    (foreign / "images" / "family.jpg").write_bytes(b"\xff\xd8 a family photo")
    (foreign / "overlays").mkdir()
    (foreign / "overlays" / "keep.txt").write_text("notes")
    (foreign / "report.html").write_text("<p>my report</p>")
    before = snapshot(tmp_path)
    assert run_cli(write_config(tmp_path, tiny_config(tiny_assets, foreign)), "--set", "analysis.grid=4") == 2
    err = capsys.readouterr().err
    assert "is not empty and is not an igaudit run folder" in err and str(foreign) in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == {**before, "config.yaml": snapshot(tmp_path)["config.yaml"]}

    # inputs at proj/images/<label>/*.png, output.dir proj: the folder holding the inputs
    proj = tmp_path / "proj"
    make_tiny_dataset(proj / "images", per_class=2, broken=False)
    before = snapshot(proj)
    raw = tiny_config(tiny_assets, proj, input={"pattern": str(proj / "images" / "*" / "*")})
    for out in (proj, proj / "images" / "out", tmp_path):     # holds them, inside their folder, holds them
        raw["output"]["dir"] = str(out)
        assert run_cli(write_config(tmp_path, raw, "inputs.yaml"), "--overwrite") == 2
        assert "overlaps the inputs" in capsys.readouterr().err
        assert snapshot(proj) == before
    assert not (proj / ".igaudit").exists()


def test_a_rerun_keeps_foreign_files_and_equals_a_clean_run(tiny_assets, tmp_path, capsys):
    out = tmp_path / "out"
    config = write_config(tmp_path, tiny_config(tiny_assets, out))
    assert run_cli(config) == 0
    first_masks = sorted(p.name for p in (out / "masks").iterdir())
    (out / "masks" / "keep.txt").write_text("a note beside the masks")
    (out / "masks" / "notes.png").write_bytes(b"not igaudit's")
    (out / "mine").mkdir()
    (out / "mine" / "data.csv").write_text("a,b\n")
    (out / "README.txt").write_text("what this folder is")
    foreign = {k: v for k, v in snapshot(out).items()
               if k in ("masks/keep.txt", "masks/notes.png", "mine/data.csv", "README.txt")}
    assert len(foreign) == 4
    assert run_cli(config) == 0
    after = snapshot(out)
    assert all(after[k] == v for k, v in foreign.items())
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(first_masks + ["keep.txt", "notes.png"])
    clean = tmp_path / "clean"
    assert run_cli(write_config(tmp_path, tiny_config(tiny_assets, clean), "clean.yaml")) == 0
    a, b = rows_by_id(out), rows_by_id(clean)
    assert a.keys() == b.keys()
    for key in a:
        for column in ("predicted", "score_input", "attribution_sum", "grid"):
            assert np.allclose(a[key][column], b[key][column], rtol=1e-6, atol=1e-9), column
    assert {p.name: p.read_bytes() for p in (clean / "masks").iterdir()} == \
        {n: (out / "masks" / n).read_bytes() for n in first_masks}
    # --overwrite on a foreign folder deletes it all, as documented
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x.txt").write_text("gone")
    raw = tiny_config(tiny_assets, mine)
    assert run_cli(write_config(tmp_path, raw, "mine.yaml"), "--overwrite") == 0
    assert not (mine / "x.txt").exists() and (mine / "_SUCCESS").exists()


def test_overwrite_refuses_a_folder_holding_the_model_or_the_config_and_touches_nothing(tiny_assets, tmp_path,
                                                                                         capsys):
    """--overwrite deletes everything in output.dir: never when that folder holds what the run reads."""
    proj = tmp_path / "proj"
    (proj / "models").mkdir(parents=True)
    model = proj / "models" / "m.keras"
    model.write_bytes(Path(tiny_assets["model"]).read_bytes())
    (proj / "notes.txt").write_text("the team's notes")
    raw = tiny_config(tiny_assets, proj, model={"path": str(model)})
    config = write_config(proj, raw, "audit.yaml")
    before = snapshot(proj)
    assert run_cli(config, "--overwrite") == 2                      # holds the model (and the config)
    err = capsys.readouterr().err
    assert "holds model.path" in err and str(model) in err and "--overwrite would delete" in err
    assert "Traceback" not in err and snapshot(proj) == before
    raw = tiny_config(tiny_assets, proj / "models")                  # the model is elsewhere; the config is here
    config = write_config(proj / "models", raw, "audit.yaml")
    before = snapshot(proj)
    assert run_cli(config, "--overwrite") == 2
    assert "holds the config file" in capsys.readouterr().err and snapshot(proj) == before
    raw = tiny_config(tiny_assets, model / "sub")                    # inside a model file's path: refused too
    assert run_cli(write_config(tmp_path, raw, "inside.yaml"), "--overwrite") == 2
    assert snapshot(proj) == before


def test_success_is_the_last_file_written(tiny_assets, tmp_path):
    """A consumer that waits on _SUCCESS reads the final run.json: the launcher's metrics are in it."""
    out = tmp_path / "out"
    assert run_cli(write_config(tmp_path, tiny_config(tiny_assets, out))) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "ok" and "pipeline_seconds" in info["timings"]
    last = max((p for p in out.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    assert last.name == "_SUCCESS"


# -- honest status -----------------------------------------------------------------------------------------
def test_all_junk_inputs_fail_the_run_without_success(tmp_path, tiny_assets, capsys):
    junk = tmp_path / "junk"
    for label in CLASSES:
        (junk / label).mkdir(parents=True)
        (junk / label / "a.png").write_bytes(b"not an image")
        (junk / label / "b.jpg").write_bytes(b"")
    out = tmp_path / "out"
    raw = tiny_config(tiny_assets, out, input={"pattern": str(junk / "*" / "*")})
    assert run_cli(write_config(tmp_path, raw)) == 1
    err = capsys.readouterr().err
    assert "run failed: no image was attributed" in err and "Traceback" not in err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "no image was attributed" in info["reason"]
    assert not (out / "_SUCCESS").exists()


def oracle_model(path: Path) -> Path:
    """A model that needs [0, 255] pixels: logit c = relu(mean of channel c - 48). The tiny dataset's class
    colour square lifts its channel's mean to 58-88 (background 27-40, padding included), so on [0, 255] it
    is right; fed [0, 1] pixels every logit is 0 and it says 'ant' for everything."""
    import keras
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="relu")])
    model.layers[-1].set_weights([np.eye(3, dtype=np.float32), np.full(3, -48.0, np.float32)])
    model.save(path)
    return path


def test_a_wrong_input_range_is_a_suspect_run_in_run_json_the_console_and_the_report(tiny_assets, tmp_path, capsys):
    model = oracle_model(tmp_path / "oracle.keras")
    right = tmp_path / "right"
    raw = tiny_config(tiny_assets, right, model={"path": str(model), "input_range": [0, 255]},
                      analysis={"fail_on_suspect": True})
    # the oracle decides by one channel's mean alone: the audit may flag that (exit 3); it must not fail
    assert run_cli(write_config(tmp_path, raw)) in (0, 3)
    out = capsys.readouterr()
    assert "accuracy 1.00" in out.out and "warning" not in out.err and "suspect" not in out.err
    info = json.loads((right / "run.json").read_text())
    assert info["warnings"] == [] and info["suspect"] == []
    wrong = tmp_path / "wrong"
    raw = tiny_config(tiny_assets, wrong, model={"path": str(model), "input_range": [0, 1]},
                      analysis={"fail_on_suspect": True})
    assert run_cli(write_config(tmp_path, raw, "wrong.yaml")) == 4          # complete, but suspect
    out = capsys.readouterr()
    assert "accuracy 0.33" in out.out
    info = json.loads((wrong / "run.json").read_text())
    assert info["accuracy"] == pytest.approx(1 / 3) and info["exit_code"] == 4 and (wrong / "_SUCCESS").exists()
    assert any("near or below chance (chance is 0.33" in w and "model.input_range" in w for w in info["suspect"])
    assert any("predicted 'ant'" in w for w in info["suspect"])
    assert "igaudit: suspect:" in out.err and "model.input_range" in out.err
    assert "near or below chance" in (wrong / "report.html").read_text()


# -- interrupts ----------------------------------------------------------------------------------------------
def _slow_config(tmp_path: Path, out: Path) -> Path:
    data = tmp_path / "data"
    if not data.exists():
        for k in range(6):
            make_tiny_dataset(data / f"part{k}", per_class=4, broken=False)
    from tests.conftest import make_tiny_model
    model = tmp_path / "m.keras"
    if not model.exists():
        make_tiny_model(model)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    raw = tiny_config({"data": data, "model": model}, out, attribution={"steps": 64, "batch_size": 2,
                                                                         "chunk_size": 16})
    raw["input"]["pattern"] = str(data / "*" / "*" / "*")
    raw["model"]["class_names"] = str(tmp_path / "classes.txt")
    return write_config(tmp_path, raw, f"{out.name}.yaml")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_stops_it_at_once_without_a_traceback_and_the_rerun_equals_a_clean_run(tmp_path, sig,
                                                                                                   code):
    out = tmp_path / "out"
    config = _slow_config(tmp_path, out)
    proc = subprocess.Popen([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "masks").glob("*.png"))) < 3:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    sent = time.time()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert time.time() - sent < 10
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert len([line for line in stderr.splitlines() if "interrupted" in line]) == 1
    assert not (out / "_SUCCESS").exists()
    assert subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(config)], cwd=ROOT,
                          capture_output=True, timeout=600).returncode == 0
    clean = tmp_path / "clean"
    assert subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config",
                           str(_slow_config(tmp_path, clean))], cwd=ROOT, capture_output=True,
                          timeout=600).returncode == 0
    a, b = rows_by_id(out), rows_by_id(clean)
    assert a.keys() == b.keys()
    assert all(np.isclose(a[k]["attribution_sum"], b[k]["attribution_sum"], rtol=1e-6, atol=1e-9) for k in a)
    assert {p.name: p.read_bytes() for p in (out / "masks").iterdir()} == \
        {p.name: p.read_bytes() for p in (clean / "masks").iterdir()}
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.startswith("beam-temp")]


def test_ctrl_c_on_a_terminal_with_worker_processes_is_one_line_and_nothing_draws_over_the_bar(tmp_path):
    """Two SDK worker processes, a pseudo-terminal, SIGINT to the whole foreground group (what Ctrl-C does):
    the workers' TensorFlow start-up lines never reach the terminal, and the interrupt is the last line,
    with no traceback from Beam's threads or the dying workers after it. (A worker process that has run no
    bundle yet has not imported igaudit, and would still print Python's KeyboardInterrupt traceback.)"""
    import pty
    import re
    out = tmp_path / "out"
    config = _slow_config(tmp_path, out)
    leader, follower = pty.openpty()
    (tmp_path / "tmp").mkdir()          # the bar's board folder lands here: one file per worker process
    env = dict(os.environ, TERM="xterm", COLUMNS="160", TMPDIR=str(tmp_path / "tmp"))
    proc = subprocess.Popen([sys.executable, "-m", "igaudit.pipeline.cli", "run", "--config", str(config), "--",
                             "--direct_num_workers=2", "--direct_running_mode=multi_processing"], cwd=ROOT, env=env,
                            stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    chunks, sent, deadline = [], None, time.time() + 300
    while time.time() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        # both worker processes are attributing (each has imported igaudit, which quiets its Ctrl-C)
        if sent is None and len(list((tmp_path / "tmp").glob("igaudit-progress-*/*.json"))) >= 2:
            sent = time.time()
            os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    os.close(leader)
    terminal = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    lines = [line.strip() for line in re.split(r"[\r\n]+", terminal) if line.strip()]
    assert sent is not None and proc.returncode == 130, terminal
    assert lines[-1].startswith("igaudit: interrupted (SIGINT)"), lines[-5:]
    assert sum("interrupted" in line for line in lines) == 1
    for noise in ("Traceback", "Worker subprocess", "oneDNN", "cuda", "RpcError", "ERROR"):
        assert noise not in terminal, noise
    stray = [line for line in lines if not line.startswith(("igaudit: ", "attributing"))]
    assert lines[0].startswith("igaudit: ") and not stray, stray or lines[:3]


# -- Beam flags --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, named", [
    (["--", "--stes=3"], ["--stes", "attribution.steps"]),
    (["--", "--direct_num_worker=2"], ["--direct_num_worker", "--direct_num_workers"]),
    (["--runner=DirectRuner"], ["DirectRuner", "DirectRunner", "DataflowRunner"]),
    (["--", "--runner=DaskRunner"], ["DaskRunner", "loses data"]),
])
def test_mistyped_beam_flags_and_runners_are_user_errors_naming_them(tiny_assets, tmp_path, capsys, flags, named):
    out = tmp_path / "out"
    assert run_cli(write_config(tmp_path, tiny_config(tiny_assets, out)), *flags) == 2
    err = capsys.readouterr().err
    assert all(n in err for n in named) and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_flag_the_runner_ignores_is_a_warning(tiny_assets, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(write_config(tmp_path, tiny_config(tiny_assets, out)), "--", "--num_workers=3") == 0
    assert "--num_workers is ignored by the local runner" in capsys.readouterr().err


# -- channels ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 4])
def test_a_model_of_one_or_four_channels_attributes_every_image(tiny_assets, tmp_path, channels):
    import keras
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((SIZE, SIZE, channels)),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    out = tmp_path / "out"
    raw = tiny_config(tiny_assets, out, model={"path": str(tmp_path / "m.keras")})
    raw["model"].pop("input_size")                        # the model's own shape is used
    assert run_cli(write_config(tmp_path, raw), "--set", "output.raw=true") == 0
    rows = list(rows_by_id(out).values())
    assert len(rows) == tiny_assets["good"]
    assert all(len(r["channel_shares"]) == channels for r in rows)
    raw_array = np.load(out / "raw" / f"{rows[0]['image_id']}.npy")
    assert raw_array.shape == (SIZE, SIZE, channels)
    from PIL import Image
    assert Image.open(out / "overlays" / f"{rows[0]['image_id']}.png").mode == "RGB"
    # a config that disagrees with the model gets advice it can follow
    raw["model"]["input_size"] = [SIZE + 8, SIZE + 8]
    assert run_cli(write_config(tmp_path, raw, "bad.yaml")) == 2
