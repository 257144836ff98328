"""Shared fixtures: a tiny labelled dataset with broken files mixed in, and a tiny saved model."""
import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
importlib.import_module("igaudit.transforms")  # before TensorFlow: tests run with igaudit's oneDNN setting

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

CLASSES = ("ant", "bee", "cat")
SIZE = 24
# An extra set of odd and malformed images beside the repository (not in it): the tests marked shared_fixtures
# use it where it is present and are deselected where it is not, so a fresh clone skips nothing.
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "images"


def pytest_collection_modifyitems(config, items):
    if (SHARED_FIXTURES / "MANIFEST.csv").is_file():
        return
    absent = [item for item in items if item.get_closest_marker("shared_fixtures")]
    if absent:
        config.hook.pytest_deselected(items=absent)
        items[:] = [item for item in items if not item.get_closest_marker("shared_fixtures")]


def make_tiny_dataset(root: Path, per_class: int = 4, broken: bool = True) -> dict:
    """PNG/JPEG images under root/<class>/, odd sizes included; a few broken files."""
    rng = np.random.default_rng(0)
    good = 0
    for ci, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = (SIZE, SIZE) if i % 2 == 0 else (SIZE + 7, SIZE * 2)  # some need padding
            pixels = rng.integers(0, 80, size=(h, w, 3), dtype=np.uint8)
            pixels[h // 4: 3 * h // 4, w // 4: 3 * w // 4, ci] = 230     # a class-coloured square
            ext = "png" if i % 3 else "jpg"
            Image.fromarray(pixels).save(folder / f"img{i}.{ext}")
            good += 1
    bad = 0
    if broken:
        (root / "ant" / "empty.png").write_bytes(b"")
        (root / "bee" / "notes.png").write_bytes(b"this is not an image")
        png = (root / "cat" / "img1.png").read_bytes()
        (root / "cat" / "truncated.png").write_bytes(png[: len(png) // 2])
        bad = 3
    return {"good": good, "bad": bad}


def make_tiny_model(path: Path, classes: int = len(CLASSES), size: int = SIZE, seed: int = 0) -> Path:
    import keras
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes),
    ])
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    counts = make_tiny_dataset(root / "data")
    model = make_tiny_model(root / "tiny.keras")
    return {"root": root, "data": root / "data", "model": model, **counts}


def tiny_config(assets, out_dir: Path, **sections) -> dict:
    raw = {
        "input": {"pattern": str(assets["data"] / "*" / "*")},
        "model": {"path": str(assets["model"]), "input_size": [SIZE, SIZE]},
        "attribution": {"steps": 8, "rule": "trapezoid", "batch_size": 4, "chunk_size": 16},
        "output": {"dir": str(out_dir)},
        # the tiny model is untrained (it predicts one class): every run of it is suspect, which the tests of
        # suspect runs show with fail_on_suspect on; the others check other things and exit 0 or 3
        "analysis": {"grid": 4, "fail_on_suspect": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    from igaudit.transforms.attribution.choices import ignored_settings
    for key in ignored_settings(raw["attribution"].get("method", "integrated_gradients"), raw["attribution"]):
        if key in ("steps", "rule"):         # the base's IG settings, not what a test of another method sets
            del raw["attribution"][key]
    return raw
