"""The skew benchmark's datasets: synthetic shapes with planted shortcuts, clean controls, and real
handwriting (scikit-learn's digits) and photos (scikit-image's bundled images).

Every dataset is written as root/{train,audit}/<class>/<name>.png (label = folder), with
root/audit.csv (uri,label,bbox) beside it and root/planted.json saying which audit images carry
the planted shortcut. Each image comes from its own generator keyed by (seed, split, class,
index), so a seed gives the same bytes every time.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageDraw

from igaudit.pipeline.demo import bounding_box

SIZE = 64
SHAPES = ("circle", "cross", "square", "triangle")
SPLITS = {"train": 0, "audit": 1}


# -- drawing ---------------------------------------------------------------------------------------
def noise_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random colour with noise and a gentle gradient (as the demo's)."""
    base = rng.integers(0, 256, 3)
    ramp = np.linspace(-1.0, 1.0, size)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None])[..., None]
    return np.clip(base + rng.normal(0.0, 18.0, (size, size, 3)) + 25.0 * gradient, 0, 255)


def stripe_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Diagonal stripes of two random colours, period 6 px, random phase: a background texture."""
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    on = ((xx + yy + rng.integers(6)) % 6) < 3
    return np.where(on[..., None], a, b) + rng.normal(0.0, 8.0, (size, size, 3))


def draw_shape(rng: np.random.Generator, shape: str, background: np.ndarray) -> tuple[np.ndarray, tuple]:
    """A shape of a random colour far from the background's mean, at a random place, angle and size.
    Returns the uint8 image and the shape's box (x0, y0, x1, y1). 'bar' spans the whole width
    (an object that touches the border); 'dot' is a small disc (an object much smaller than the rest)."""
    size = background.shape[0]
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    mean = background.reshape(-1, 3).mean(0)
    while True:
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - mean) > 140:
            break
    fill = tuple(int(v) for v in colour)
    draw = ImageDraw.Draw(image)
    r = rng.uniform(0.15, 0.3) * size
    cx, cy = rng.uniform(r + 2, size - r - 2, 2)
    theta = rng.uniform(0, 2 * math.pi)

    def ring(n, radius):
        return [(cx + radius * math.cos(theta + 2 * math.pi * k / n), cy + radius * math.sin(theta + 2 * math.pi * k / n))
                for k in range(n)]

    def rect(half_long, half_short, phi):
        c, s = math.cos(phi), math.sin(phi)
        return [(cx + c * u - s * v, cy + s * u + c * v)
                for u, v in ((-half_long, -half_short), (half_long, -half_short), (half_long, half_short),
                             (-half_long, half_short))]

    if shape == "circle":
        points = [(cx - r, cy - r), (cx + r, cy + r)]
        draw.ellipse(points, fill=fill)
    elif shape in ("square", "triangle"):
        points = ring(4 if shape == "square" else 3, r)
        draw.polygon(points, fill=fill)
    elif shape == "cross":
        points = rect(r, 0.22 * r, theta) + rect(r, 0.22 * r, theta + math.pi / 2)
        draw.polygon(points[:4], fill=fill)
        draw.polygon(points[4:], fill=fill)
    elif shape == "bar":
        half = rng.uniform(3, 6)
        cy = rng.uniform(half + 4, size - half - 4)
        points = [(0, cy - half), (size, cy + half)]
        draw.rectangle([0, cy - half, size, cy + half], fill=fill)
    elif shape == "dot":
        r = rng.uniform(2.5, 4.5)
        cx, cy = rng.uniform(r + 4, size - r - 4, 2)
        points = [(cx - r, cy - r), (cx + r, cy + r)]
        draw.ellipse(points, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(image), bounding_box(points, size)


# -- planted shortcuts: each edits a uint8 image in place of the original ------------------------
def corner_patch(image: np.ndarray, rng) -> np.ndarray:
    """The demo's 6x6 magenta/white checker at (2, 2)."""
    from igaudit.pipeline.demo import paste_shortcut
    return paste_shortcut(image)


def border_stripe(image: np.ndarray, rng) -> np.ndarray:
    """A 2-pixel yellow stripe along the bottom edge."""
    out = image.copy()
    out[-2:, :] = (255, 210, 0)
    return out


TAG = np.array([[0, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]], bool)


def corner_tag(image: np.ndarray, rng) -> np.ndarray:
    """A 5x5 black-on-white tag in the top-right or the bottom-left corner (chosen per image)."""
    out = image.copy()
    h, w = out.shape[:2]
    s = max(5, round(5 * h / SIZE))
    tag = np.repeat(np.repeat(TAG, s // 5, 0), s // 5, 1)
    s = tag.shape[0]
    y, x = (2, w - s - 2) if rng.uniform() < 0.5 else (h - s - 2, 2)
    out[y:y + s, x:x + s] = np.where(tag[..., None], 0, 255)
    return out


def faint(image: np.ndarray) -> np.ndarray:
    """The image at 15% of its contrast: its object is hard to see."""
    mean = image.reshape(-1, 3).mean(0)
    return np.clip(mean + 0.15 * (image.astype(np.float64) - mean), 0, 255).astype(np.uint8)


def colour_cast(image: np.ndarray, rng) -> np.ndarray:
    """A red cast over the whole frame."""
    return np.clip(image.astype(np.float64) * (1.3, 0.8, 0.8) + (30, 0, 0), 0, 255).astype(np.uint8)


# -- sources of images ----------------------------------------------------------------------------
def shapes_source(classes=SHAPES, texture_class: Optional[str] = None) -> Callable:
    def make(rng, name):
        background = stripe_texture(rng, SIZE) if name == texture_class else noise_background(rng, SIZE)
        return draw_shape(rng, name, background)
    return make, list(classes)


def digits_source(size: int = 32) -> tuple:
    """scikit-learn's handwritten digits (8x8, 1797 images), each drawn once per split index: the
    index picks the digit's images in turn, train from the first 70% of each digit, audit from the rest."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    names = [str(d) for d in range(10)]
    pools = {}
    for d in range(10):
        items = digits.images[digits.target == d]
        cut = int(0.7 * len(items))
        pools[(0, str(d))], pools[(1, str(d))] = items[:cut], items[cut:]

    def make(rng, name, split, index):
        pool = pools[(split, name)]
        grey = pool[index % len(pool)] / 16.0
        big = Image.fromarray((grey * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        g = np.asarray(big, np.float64)
        return np.repeat(g[..., None], 3, -1).astype(np.uint8), (0, 0, size, size)
    return make, names, {n: len(pools[(1, n)]) for n in names}


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def photos_source() -> tuple:
    """Random crops (a third to two thirds of the short side, mirrored at random) of scikit-image's
    bundled colour photos, one class per photo. The left 60% of each photo feeds train, the right
    40% audit, so no audit crop repeats a training pixel."""
    from skimage import data
    photos = {name: getattr(data, name)()[..., :3] for name in PHOTOS}

    def make(rng, name, split):
        photo = photos[name]
        h, w = photo.shape[:2]
        lo, hi = (0, int(0.6 * w)) if split == 0 else (int(0.6 * w), w)
        side = int(rng.uniform(1 / 3, 2 / 3) * min(h, hi - lo))
        side = min(side, hi - lo)
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(lo, hi - side + 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((SIZE, SIZE), Image.BILINEAR)
        out = np.asarray(crop)
        return (out[:, ::-1] if rng.uniform() < 0.5 else out).copy(), (0, 0, SIZE, SIZE)
    return make, list(PHOTOS)


# -- writing ---------------------------------------------------------------------------------------
def write_dataset(root: Path, kind: str, seed: int, per_class: int = 150, audit_per_class: int = 50) -> dict:
    """Write one benchmark dataset; returns its planted.json content.

    kind: one of DATASETS' keys. planted.json: {"kind", "class", "images": [audit uris carrying the
    shortcut], "classes"}.
    """
    spec = DATASETS[kind]
    audit_per_class = spec.get("audit", audit_per_class)
    root = Path(root)
    for split in SPLITS:
        shutil.rmtree(root / split, ignore_errors=True)
    source = spec["source"]()
    make, classes = source[0], source[1]
    caps = source[2] if len(source) > 2 else {}
    planted_images, manifest = [], []
    for split, split_index in SPLITS.items():
        n = per_class if split == "train" else audit_per_class
        for ci, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            count = min(n, caps.get(name, n)) if split == "audit" else n
            for i in range(count):
                rng = np.random.default_rng([seed, split_index, ci, i])
                if spec["source"] is digits_source:
                    image, box = make(rng, name, split_index, i if split == "audit" else i + seed * 7)
                elif spec["source"] is photos_source:
                    image, box = make(rng, name, split_index)
                else:
                    image, box = make(rng, name)
                chosen = rng.uniform() < spec.get("rate", 1.0)
                if spec.get("faint") and chosen:
                    # faint images in every class, the tag only on the planted class's: there the tag
                    # carries the class (as a watermark did for one photo archive's horses), and
                    # faintness alone says nothing about the class
                    image = faint(image)
                planted = name == spec.get("class") and chosen
                if planted:
                    image = spec["plant"](image, rng)
                path = folder / f"{name}_{i:04d}.png"
                Image.fromarray(image).save(path)
                if split == "audit":
                    manifest.append({"uri": str(path), "label": name, "bbox": ",".join(str(v) for v in box)})
                    if planted:
                        planted_images.append(str(path))
    with open(root / "audit.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["uri", "label", "bbox"])
        writer.writeheader()
        writer.writerows(manifest)
    info = {"kind": kind, "class": spec.get("class"), "images": planted_images, "classes": classes,
            "planted": spec.get("planted")}
    (root / "planted.json").write_text(json.dumps(info, indent=1))
    return info


DATASETS = {
    # planted shortcuts
    "corner_patch": {"source": shapes_source, "class": "triangle", "plant": corner_patch,
                     "planted": "a corner patch on the whole class"},
    "border_stripe": {"source": shapes_source, "class": "square", "plant": border_stripe,
                      "planted": "a thin border stripe on the whole class"},
    "partial_tag": {"source": shapes_source, "class": "circle", "plant": corner_tag, "rate": 0.35, "faint": True,
                    "audit": 150,
                    "planted": "a tag on 35% of the class (its faint images), in one of two corners"},
    "colour_cast": {"source": shapes_source, "class": "cross", "plant": colour_cast,
                    "planted": "a red colour cast on the whole class"},
    "background_texture": {"source": lambda: shapes_source(texture_class="square"), "class": "square",
                           "plant": lambda image, rng: image, "boxes": True,
                           "planted": "a striped background behind the class's objects (object boxes given)"},
    "digits_partial_tag": {"source": digits_source, "class": "8", "plant": corner_tag, "rate": 0.35, "faint": True,
                           "size": 32, "audit": 150,
                           "planted": "a tag on 35% of the handwritten 8s (their faint images), in one of two corners"},
    "photos_corner_patch": {"source": photos_source, "class": "coffee", "plant": corner_patch,
                            "planted": "a corner patch on every crop of one photo"},
    # clean controls
    "clean_shapes": {"source": lambda: shapes_source(SHAPES + ("bar", "dot")), "boxes": True,
                     "planted": None},
    "clean_digits": {"source": digits_source, "size": 32, "planted": None},
    "clean_photos": {"source": photos_source, "planted": None},
}
