"""pipeline/demo.py: the shapes dataset with a planted shortcut, the tiny model, and `igaudit demo` (what `make demo`
runs) from an empty folder."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from igaudit.pipeline import demo

ROOT = Path(__file__).resolve().parents[2]


def _tree_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = demo.make_dataset(tmp_path / "a", n_per_class=6, seed=3)
    b = demo.make_dataset(tmp_path / "b", n_per_class=6, seed=3)
    c = demo.make_dataset(tmp_path / "c", n_per_class=6, seed=4)
    bytes_a = _tree_bytes(tmp_path / "a")
    assert bytes_a == _tree_bytes(tmp_path / "b")
    assert a == b
    assert (tmp_path / "a" / "demo.json").read_bytes() == (tmp_path / "b" / "demo.json").read_bytes()
    bytes_c = _tree_bytes(tmp_path / "c")
    assert bytes_c.keys() == bytes_a.keys()
    assert all(bytes_c[k] != bytes_a[k] for k in bytes_a)
    assert c["shortcut"] == a["shortcut"]


def test_counts_classes_and_sizes(tmp_path):
    meta = demo.make_dataset(tmp_path, n_per_class=10, size=48)
    assert meta["classes"] == sorted(meta["classes"]) == ["circle", "cross", "square", "triangle"]
    for split, n in (("train", 10), ("audit", 5)):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == meta["classes"]
        for name in meta["classes"]:
            files = sorted((tmp_path / split / name).glob("*.png"))
            assert len(files) == n == meta["counts"][split][name]
            assert _pixels(files[0]).shape == (48, 48, 3)
    assert len(meta["files"]) == 4 * 15
    assert json.loads((tmp_path / "demo.json").read_text()) == meta
    # The audit split is a separate draw, not a copy of the first training images.
    train0 = _tree_bytes(tmp_path / "train")
    audit0 = _tree_bytes(tmp_path / "audit")
    assert not set(train0.values()) & set(audit0.values())


def test_shortcut_only_in_its_class_at_its_rate(tmp_path):
    meta = demo.make_dataset(tmp_path, n_per_class=40, shortcut_class="triangle", shortcut_rate=0.9)
    assert meta["shortcut"]["class"] == "triangle"
    assert meta["shortcut"]["box"] == [2, 2, 8, 8]
    assert meta["shortcut"]["counts"] == {"train": 36, "audit": 18}
    for split, n in (("train", 40), ("audit", 20)):
        for name in meta["classes"]:
            flags = [demo.has_shortcut(_pixels(p)) for p in sorted((tmp_path / split / name).glob("*.png"))]
            if name == "triangle":
                assert sum(flags) == round(0.9 * n)
            else:
                assert not any(flags), (split, name)
    # The per-file metadata agrees with the pixels.
    for entry in meta["files"]:
        assert demo.has_shortcut(_pixels(tmp_path / entry["path"])) == entry["shortcut"]


@pytest.mark.parametrize("kwargs", [{"shortcut_class": None}, {"shortcut_rate": 0.0}])
def test_no_shortcut_plants_none(tmp_path, kwargs):
    meta = demo.make_dataset(tmp_path, n_per_class=8, **kwargs)
    assert not any(demo.has_shortcut(_pixels(p)) for p in tmp_path.rglob("*.png"))
    assert not any(f["shortcut"] for f in meta["files"])
    if kwargs.get("shortcut_class", "x") is None:
        assert meta["shortcut"] is None


def test_rebuild_drops_stale_files(tmp_path):
    demo.make_dataset(tmp_path, n_per_class=8)
    demo.make_dataset(tmp_path, n_per_class=4)
    assert len(list((tmp_path / "train" / "circle").glob("*.png"))) == 4


def test_patch_helpers():
    patch = demo.shortcut_patch()
    assert patch.shape == (6, 6, 3) and patch.dtype == np.uint8
    image = np.zeros((64, 64, 3), np.uint8)
    assert not demo.has_shortcut(image)
    assert demo.has_shortcut(demo.paste_shortcut(image))
    assert not demo.has_shortcut(image)  # paste_shortcut copies


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="shortcut_class"):
        demo.make_dataset(tmp_path, shortcut_class="hexagon")
    with pytest.raises(ValueError, match="shortcut_rate"):
        demo.make_dataset(tmp_path, shortcut_rate=1.5)


@pytest.mark.slow
def test_tiny_training_gives_a_loadable_model_that_beats_chance(tmp_path):
    from igaudit.pipeline.config import ModelConfig
    from igaudit.transforms.attribution.models import load_classifier

    demo.make_dataset(tmp_path / "data", n_per_class=60)
    model_path = tmp_path / "models" / "tiny.keras"
    metrics = demo.train_model(tmp_path / "data", model_path, epochs=25)
    assert metrics["seconds"] < 60
    assert metrics["train_accuracy"] > 0.8
    assert metrics["shortcut_flip_rate"] > 0.5  # the patch alone sways the model
    assert model_path.stat().st_size < 2_000_000
    assert (tmp_path / "models" / "class_names.txt").read_text().split() == \
        ["circle", "cross", "square", "triangle"]

    clf = load_classifier(ModelConfig(path=str(model_path), input_size=(64, 64), input_range=(0.0, 1.0),
                                      output="logits"))
    assert clf.num_classes == 4
    x, y, classes = demo.load_split(tmp_path / "data", "audit")
    predicted = np.argmax(clf(x).numpy(), axis=1)
    accuracy = float(np.mean(predicted == y))
    assert accuracy > 0.5, accuracy  # chance is 0.25
    assert accuracy == pytest.approx(metrics["audit_accuracy"], abs=1e-6)


def test_ensure_demo_builds_only_what_is_missing(tmp_path, monkeypatch, capsys):
    trained = []

    def fake_train(data_root, out_path, epochs, seed=0):
        trained.append(Path(out_path))
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_bytes(b"model")
        return {"seconds": 0.0, "train_accuracy": 1.0, "audit_accuracy": 1.0}

    monkeypatch.setattr(demo, "train_model", fake_train)
    monkeypatch.setattr(demo, "DEMO_IMAGES_PER_CLASS", 4)
    root, model = tmp_path / "data" / "demo", tmp_path / "models" / "demo.keras"

    demo.ensure_demo(root, model)
    out = capsys.readouterr().out
    assert "building demo dataset" in out and "training demo model" in out
    assert (root / "demo.json").is_file() and len(trained) == 1

    demo.ensure_demo(root, model)  # everything present: nothing to do
    assert capsys.readouterr().out == "" and len(trained) == 1

    model.unlink()  # model missing: retrain only
    demo.ensure_demo(root, model)
    out = capsys.readouterr().out
    assert "building" not in out and "training" in out and len(trained) == 2

    demo.ensure_demo(root, model, shortcut=False)  # other setting: rebuild both
    out = capsys.readouterr().out
    assert "building" in out and len(trained) == 3
    assert json.loads((root / "demo.json").read_text())["shortcut"] is None
    assert not any(demo.has_shortcut(_pixels(p)) for p in root.rglob("*.png"))


# -- `igaudit demo` from scratch -------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_from_scratch(tmp_path):
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "local.yaml", tmp_path / "configs" / "local.yaml")
    # igaudit comes from the installed package (pip install -e .), whatever the working folder
    done = subprocess.run([sys.executable, "-m", "igaudit.pipeline.cli", "demo"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = re.search(r"igaudit: report: (\S+report\.html)", done.stdout)
    assert report, done.stdout
    assert Path(report.group(1)) == tmp_path / "out" / "demo" / "report.html"
    assert Path(report.group(1)).is_file()
    assert (tmp_path / "models" / "demo.keras").stat().st_size < 2_000_000
    findings = pq.read_table(tmp_path / "out" / "demo" / "findings.parquet").to_pylist()
    shortcuts = [f for f in findings if f["outcome"] == "shortcut"]
    assert [f["class_name"] for f in shortcuts] == ["triangle"]     # one finding, whatever metrics saw it
    # one self-contained file, a few MB: every picture embedded, none linked as a dependency
    assert Path(report.group(1)).stat().st_size <= 5_000_000
    print(f"demo report: {Path(report.group(1)).stat().st_size} bytes")
    html = Path(report.group(1)).read_text()
    assert not re.search(r'<img[^>]+src="(?!data:)', html)
    assert re.search(r"<div class=class><h3>([^<]+?) <span", html).group(1) == "triangle"
    # the console names each finding, so its lines reconcile with the "1 new finding" count
    assert "igaudit: no reference run: 1 new finding" in done.stdout
    assert re.search(rf"^igaudit: shortcut {re.escape(shortcuts[0]['finding'])} \(new\): class 'triangle', "
                     rf".*top-left.*: {re.escape(shortcuts[0]['evidence'])}$", done.stdout, flags=re.M), done.stdout
