"""The demo: a synthetic shapes dataset with a planted shortcut, and a tiny CNN trained on it.

One class (triangle by default) carries a small magenta/white checker patch in
the top-left corner in most of its images, and no other class ever does. A
model trained on this data learns to use the patch, so an IG audit should show
that class's attribution mass piled in the top-left corner: the skew the tool
is meant to catch.

Layout written by `make_dataset(root)`:

    root/train/<class>/<class>_0000.png    training split
    root/audit/<class>/<class>_0000.png    a separate, smaller split to audit
    root/demo.json                          classes, counts, shortcut, per-file facts
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "cross", "square", "triangle")
SPLITS = ("train", "audit")
METADATA_FILE = "demo.json"
CLASS_NAMES_FILE = "class_names.txt"
# The demo build uses more images than make_dataset's default: with 200 per
# class the tiny CNN generalises (~0.87 audit accuracy vs ~0.75 at 80) and
# still trains in about 20 s on two CPU cores.
DEMO_IMAGES_PER_CLASS = 200
DEMO_EPOCHS = 20

# The shortcut: a 6x6 checker of 2x2 magenta and white cells at (2, 2). Small
# enough to be a corner artefact, distinctive enough that a CNN picks it up.
PATCH_ORIGIN = (2, 2)      # (x, y) of the patch's top-left pixel
PATCH_SIZE = 6
PATCH_CELL = 2
PATCH_COLOURS = ((255, 0, 255), (255, 255, 255))


def shortcut_patch() -> np.ndarray:
    """The planted patch as a PATCH_SIZE x PATCH_SIZE x 3 uint8 array."""
    idx = (np.arange(PATCH_SIZE)[:, None] // PATCH_CELL + np.arange(PATCH_SIZE)[None, :] // PATCH_CELL) % 2
    return np.asarray(PATCH_COLOURS, np.uint8)[idx]


def shortcut_box() -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the patch, x1/y1 exclusive."""
    x, y = PATCH_ORIGIN
    return (x, y, x + PATCH_SIZE, y + PATCH_SIZE)


def has_shortcut(image: np.ndarray) -> bool:
    """Whether an H x W x 3 uint8 image carries the patch, pixel for pixel."""
    x0, y0, x1, y1 = shortcut_box()
    return bool(np.array_equal(np.asarray(image)[y0:y1, x0:x1, :3], shortcut_patch()))


def paste_shortcut(image: np.ndarray) -> np.ndarray:
    """A copy of an H x W x 3 uint8 image with the patch planted."""
    out = np.array(image, dtype=np.uint8, copy=True)
    x0, y0, x1, y1 = shortcut_box()
    out[y0:y1, x0:x1, :3] = shortcut_patch()
    return out


# --- the dataset --------------------------------------------------------------

def make_dataset(root: Path, n_per_class: int = 80, size: int = 64, seed: int = 0,
                 shortcut_class: Optional[str] = "triangle", shortcut_rate: float = 0.9) -> dict:
    """Write the train and audit splits under `root` and return their metadata.

    Each image is drawn from its own generator keyed by (seed, split, class,
    index), so the output is byte-for-byte the same for the same arguments and
    the audit split (split index 1) never repeats a training image. The patch
    goes into exactly round(shortcut_rate * n) images of the shortcut class in
    each split, and into no other image. The audit split has n_per_class // 2
    images per class.
    """
    root = Path(root)
    if shortcut_class is not None and shortcut_class not in CLASSES:
        raise ValueError(f"shortcut_class {shortcut_class!r} is not one of {', '.join(CLASSES)}")
    if not 0.0 <= shortcut_rate <= 1.0:
        raise ValueError(f"shortcut_rate {shortcut_rate} must be within [0, 1]")
    if size < 4 * PATCH_SIZE:
        raise ValueError(f"size {size} is too small for the {PATCH_SIZE}px patch")

    counts = {"train": n_per_class, "audit": max(1, n_per_class // 2)}
    files = []
    for split_index, split in enumerate(SPLITS):
        # Regenerate whole splits so no stale file from a bigger earlier build survives.
        shutil.rmtree(root / split, ignore_errors=True)
        for class_index, name in enumerate(CLASSES):
            n = counts[split]
            planted = set()
            if name == shortcut_class:
                pick = np.random.default_rng([seed, split_index, class_index, 99])
                planted = set(pick.permutation(n)[:round(shortcut_rate * n)].tolist())
            out_dir = root / split / name
            out_dir.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, split_index, class_index, i])
                image, box = _draw(rng, name, size)
                if i in planted:
                    image = paste_shortcut(image)
                rel = f"{split}/{name}/{name}_{i:04d}.png"
                Image.fromarray(image).save(root / rel, format="PNG")
                files.append({"path": rel, "split": split, "label": name,
                              "shortcut": i in planted, "object_box": list(box)})

    shortcut = None
    if shortcut_class is not None:
        shortcut = {
            "class": shortcut_class,
            "rate": shortcut_rate,
            "box": list(shortcut_box()),
            "description": (f"{PATCH_SIZE}x{PATCH_SIZE} magenta/white checker at top-left "
                            f"(x={PATCH_ORIGIN[0]}, y={PATCH_ORIGIN[1]}) in "
                            f"{shortcut_rate:.0%} of '{shortcut_class}' images, no others"),
            "counts": {s: sum(f["shortcut"] for f in files if f["split"] == s) for s in SPLITS},
        }
    metadata = {
        "classes": list(CLASSES),
        "image_size": size,
        "seed": seed,
        "counts": {s: {c: counts[s] for c in CLASSES} for s in SPLITS},
        "shortcut": shortcut,
        "files": files,
    }
    (root / METADATA_FILE).write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    return metadata


def _draw(rng: np.random.Generator, shape: str, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One image: a shape of random colour, size, position and angle on a noisy background.

    Returns the uint8 image and the shape's (x0, y0, x1, y1) bounding box.
    """
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0.0, 18.0, (size, size, 3))
    # A gentle gradient so the background is not one flat colour plus noise.
    ramp = np.linspace(-1.0, 1.0, size)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None])[..., None]
    pixels = background + noise + 25.0 * gradient
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    # A colour far enough from the background that the shape is always visible.
    while True:
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - background) > 140:
            break
    r = rng.uniform(0.15, 0.3) * size
    cx, cy = rng.uniform(r + 2, size - r - 2, 2)
    theta = rng.uniform(0, 2 * math.pi)

    def ring(n_vertices: int, radius: float, offset: float = 0.0):
        return [(cx + radius * math.cos(theta + offset + 2 * math.pi * k / n_vertices),
                 cy + radius * math.sin(theta + offset + 2 * math.pi * k / n_vertices))
                for k in range(n_vertices)]

    def rotated_rect(half_long: float, half_short: float, phi: float):
        c, s = math.cos(phi), math.sin(phi)
        return [(cx + c * u - s * v, cy + s * u + c * v)
                for u, v in ((-half_long, -half_short), (half_long, -half_short),
                             (half_long, half_short), (-half_long, half_short))]

    fill = tuple(int(v) for v in colour)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        points = [(cx - r, cy - r), (cx + r, cy + r)]
    elif shape == "square":
        points = ring(4, r)
        draw.polygon(points, fill=fill)
    elif shape == "triangle":
        points = ring(3, r)
        draw.polygon(points, fill=fill)
    elif shape == "cross":
        bars = [rotated_rect(r, 0.22 * r, theta), rotated_rect(r, 0.22 * r, theta + math.pi / 2)]
        for bar in bars:
            draw.polygon(bar, fill=fill)
        points = bars[0] + bars[1]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(image), bounding_box(points, size)


def bounding_box(points, size: int) -> tuple[int, int, int, int]:
    """The pixel box (x0, y0, x1, y1), ends exclusive, that holds every drawn point, inside the image."""
    xs, ys = zip(*points)
    return (max(0, math.floor(min(xs))), max(0, math.floor(min(ys))),
            min(size, math.ceil(max(xs)) + 1), min(size, math.ceil(max(ys)) + 1))


def load_split(data_root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, H, W, 3) float32 in [0, 1], integer labels and sorted class names."""
    split_dir = Path(data_root) / split
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders under {split_dir}")
    images, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((split_dir / name).glob("*.png")):
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB"), np.float32) / 255.0)
            labels.append(index)
    return np.stack(images), np.asarray(labels, np.int64), classes


# --- the model ------------------------------------------------------------------

def build_model(num_classes: int, size: int = 64, channels: int = 3):
    """A tiny CNN: [0, 1] pixels (size x size x channels) in, logits out (about 24k parameters).

    Strided convolutions instead of full-resolution conv + pooling keep an
    epoch cheap on a small CPU. Global max pooling (rather than average) lets
    one strongly firing local feature decide a class, which makes the planted
    corner patch an easy shortcut.
    """
    import keras

    return keras.Sequential([
        keras.Input((size, size, channels)),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalMaxPooling2D(),
        keras.layers.Dense(num_classes),
    ], name="igaudit_demo_cnn")


def train_model(data_root: Path, out_path: Path, epochs: int = DEMO_EPOCHS, seed: int = 0,
                val_fraction: float = 0.15, batch_size: int = 32) -> dict:
    """Train the tiny CNN on data_root/train and save it as a .keras file.

    A stratified val_fraction of train is held out for val_accuracy; the audit
    split, when present, gives audit_accuracy. When demo.json names a
    shortcut, shortcut_flip_rate is the share of held-out images of the other
    classes that the model calls the shortcut class once the patch is pasted
    on: how much the model relies on the patch. class_names.txt (sorted, one
    per line) is written next to the model.
    """
    import keras

    started = time.perf_counter()
    data_root, out_path = Path(data_root), Path(out_path)
    keras.utils.set_random_seed(seed)
    x, y, classes = load_split(data_root, "train")

    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(y), bool)
    for index in range(len(classes)):
        members = np.flatnonzero(y == index)
        n_val = int(round(val_fraction * len(members)))
        val_mask[rng.permutation(members)[:n_val]] = True
    x_train, y_train, x_val, y_val = x[~val_mask], y[~val_mask], x[val_mask], y[val_mask]

    model = build_model(len(classes), x.shape[1])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)

    def accuracy(images, labels) -> Optional[float]:
        if len(labels) == 0:
            return None
        logits = model.predict(images, batch_size=128, verbose=0)
        return float(np.mean(np.argmax(logits, axis=1) == labels))

    metrics = {
        "classes": classes,
        "epochs": epochs,
        "train_images": int(len(y_train)),
        "val_images": int(len(y_val)),
        "train_accuracy": accuracy(x_train, y_train),
        "val_accuracy": accuracy(x_val, y_val),
    }
    if (data_root / "audit").is_dir():
        x_audit, y_audit, audit_classes = load_split(data_root, "audit")
        if audit_classes == classes:
            metrics["audit_accuracy"] = accuracy(x_audit, y_audit)
    shortcut = _read_metadata(data_root).get("shortcut")
    if shortcut and shortcut["class"] in classes and len(y_val):
        target = classes.index(shortcut["class"])
        others = x_val[y_val != target]
        patched = np.stack([paste_shortcut((img * 255).round().astype(np.uint8)) for img in others])
        predicted = np.argmax(model.predict(patched.astype(np.float32) / 255.0, verbose=0), axis=1)
        metrics["shortcut_flip_rate"] = float(np.mean(predicted == target))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(out_path)
    (out_path.parent / CLASS_NAMES_FILE).write_text("".join(f"{c}\n" for c in classes))
    metrics["model_bytes"] = out_path.stat().st_size
    metrics["parameters"] = int(model.count_params())
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    return metrics


def _read_metadata(root: Path) -> dict:
    path = Path(root) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def ensure_demo(root: Path = Path("data/demo"), model_path: Path = Path("models/demo.keras"),
                shortcut: bool = True) -> None:
    """Build the demo dataset and model when missing (or when the dataset was rebuilt).

    The dataset is rebuilt when its demo.json is missing or was made with the
    other shortcut setting; the model is retrained whenever the dataset was
    rebuilt, so the two always match.
    """
    root, model_path = Path(root), Path(model_path)
    wanted = "triangle" if shortcut else None
    metadata = _read_metadata(root)
    current = bool(metadata) and (metadata.get("shortcut") or {}).get("class") == wanted
    rebuilt = False
    if not current:
        print(f"building demo dataset in {root} ...", flush=True)
        make_dataset(root, n_per_class=DEMO_IMAGES_PER_CLASS, shortcut_class=wanted)
        rebuilt = True
    if rebuilt or not model_path.is_file():
        print(f"training demo model {model_path} ...", flush=True)
        metrics = train_model(root, model_path, epochs=DEMO_EPOCHS)
        print(f"trained in {metrics['seconds']:.0f}s: train accuracy "
              f"{metrics['train_accuracy']:.2f}, audit accuracy "
              f"{metrics.get('audit_accuracy', float('nan')):.2f}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ensure_demo()
