"""The report's pictures: each chosen image as what the model saw beside its overlay, embedded as data URIs.

Only a bounded number of images per class is ever read here (pipeline/report_data.py picks them), so
the report stays a few MB whatever the run's size. The model-input image is decoded again from the
input (file or TFRecord record) with the run's size and resize mode, which also gives the padded
area under `resize: pad`; the overlay is the run's own (overlays/<id>.png, or its shard's row; the mask's heat
map when overlays were off). Anything that cannot be read is shown as missing, never fails the report.
"""
from __future__ import annotations

import base64
import io
from typing import Optional

import numpy as np
from PIL import Image

from igaudit.transforms.artifacts import ShardCache, row_artifacts
from igaudit.transforms.imaging.colormaps import heatmap
from igaudit.transforms.imaging.decode import DecodeSpec, box_to_model

MAX_SHOWN = 160          # css pixels: an image is shown at most this wide, and never past 2x its pixels
MAX_EMBEDDED = 160       # pixels: bigger model inputs are shrunk before embedding (they are shown smaller anyway)
MIN_EMBEDDED = 64        # pixels: the byte budget never shrinks a picture below this
BYTE_BUDGET = 4_000_000  # bytes of embedded pictures in one report; past it every picture is shrunk alike
HATCH = np.array([80, 170, 255], np.float64)   # the padded area: light-blue diagonal stripes


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def encode(picture: np.ndarray, side: int = MAX_EMBEDDED) -> str:
    """uint8 H x W x 3 -> a data URI at most `side` pixels wide and high: lossless PNG, or WebP (quality 90)
    when that is much smaller (photos)."""
    im = Image.fromarray(picture)
    if max(im.size) > side:
        scale = side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    png = io.BytesIO()
    im.save(png, "PNG", optimize=True)
    webp = io.BytesIO()
    try:
        im.save(webp, "WEBP", quality=90, method=4)
    except (OSError, KeyError):          # a Pillow built without WebP
        webp = None
    if webp is not None and webp.tell() < 0.7 * png.tell():
        return data_uri(webp.getvalue(), "image/webp")
    return data_uri(png.getvalue())


def shown_size(width: int, height: int) -> tuple[int, int]:
    """css size: as large as MAX_SHOWN allows, but never more than 2x the picture's own pixels."""
    scale = min(2.0, MAX_SHOWN / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _read_png(out_dir: str, row: dict, kind: str, shards: Optional[ShardCache] = None) -> Optional[np.ndarray]:
    """The row's mask or overlay (`kind`) as pixels, from its file or its shard (`transforms/artifacts.py`);
    None when the run did not write it or it cannot be read."""
    try:
        data = row_artifacts(out_dir, row, cache=shards, kinds=(kind,))[kind]
        if data is None:
            return None
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB") if im.mode != "L" else im)
    except Exception:      # noqa: BLE001 - a missing or foreign file only loses one picture
        return None


def hatch(picture: np.ndarray, box: tuple) -> np.ndarray:
    """Stripes over everything outside box (x0, y0, x1, y1): the padding the model saw as black."""
    h, w = picture.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    x0, y0, x1, y1 = box
    outside = (xx < int(round(x0))) | (xx >= int(round(x1))) | (yy < int(round(y0))) | (yy >= int(round(y1)))
    stripes = outside & (((xx + yy) // 2) % 3 == 0)
    out = picture.astype(np.float64)
    out[stripes] = HATCH
    return out.astype(np.uint8)


def model_input(uri: str, cfg, spec: DecodeSpec) -> tuple[Optional[np.ndarray], Optional[tuple]]:
    """(uint8 model-input picture, content box in model pixels or None when nothing was padded). cfg: the run's
    `Config` (its input section says how to read the uri); spec: how the run decoded it (a one-channel model's
    picture is grey, as the model saw it)."""
    from igaudit.transforms.tfrecords import input_bytes
    size, resize = spec.size, spec.resize
    try:
        pixels, original = spec.decode_sized(input_bytes(uri, cfg.input))
    except Exception:      # noqa: BLE001 - the input moved or changed since the run: the overlay still shows
        return None, None
    picture = np.round(np.clip(pixels[..., :3] if pixels.shape[-1] >= 3 else np.repeat(pixels, 3, -1), 0, 1)
                       * 255).astype(np.uint8)
    box = None
    if resize == "pad":
        x0, y0, x1, y1 = box_to_model((0, 0, *original), original, size, "pad")
        if x0 >= 0.5 or y0 >= 0.5 or x1 <= size[1] - 0.5 or y1 <= size[0] - 0.5:
            box = (x0, y0, x1, y1)
    return picture, box


def image_pair(out_dir: str, row: dict, cfg, spec: Optional[DecodeSpec] = None,
               shards: Optional[ShardCache] = None) -> dict:
    """One image for the template: ids, captions and the two embedded pictures (either may be None). spec: the
    run's decode spec (run.json's `decode`); a run made before it was recorded: the overlay's size, RGB.
    shards: shards already read (layout shards)."""
    overlay = _read_png(out_dir, row, "overlay", shards)
    mask = None if overlay is not None else _read_png(out_dir, row, "mask", shards)
    reference = overlay if overlay is not None else mask
    if spec is None:
        size = tuple(reference.shape[:2]) if reference is not None else tuple(cfg.model.input_size or (0, 0))
        spec = DecodeSpec(size, cfg.model.resize, cfg.input.max_pixels) if min(size) > 0 else None
    size = spec.size if spec is not None else (0, 0)
    original, box = model_input(row["uri"], cfg, spec) if spec is not None else (None, None)
    if overlay is None and mask is not None:
        heat = heatmap(mask.astype(np.float64) / 255.0)
        overlay = heat if original is None else np.round(0.6 * heat + 0.4 * original).astype(np.uint8)
    if original is not None and box is not None:
        original = hatch(original, box)
    padded = None if box is None else 1.0 - (box[2] - box[0]) * (box[3] - box[1]) / float(size[0] * size[1])
    return {"image_id": row["image_id"], "label": row.get("label"), "predicted": row.get("predicted_name"),
            "confidence": row.get("confidence"), "outlier_score": row.get("outlier"),
            "pixels": {"original": original, "overlay": overlay}, "size": size, "original": None, "overlay": None,
            "overlay_link": row.get("overlay_path"), "width": 0, "height": 0, "padded": padded}


def embed(pairs: list[dict], uses: Optional[list[int]] = None, budget: int = BYTE_BUDGET) -> int:
    """Encode every pair's pictures (image_pair's "pixels") into data URIs, shrinking them all alike until they
    fit `budget` bytes (not below MIN_EMBEDDED pixels); sets the size they are shown at. uses: how often
    each pair appears in the page (an image can be typical, unsure and an exemplar). Returns the bytes."""
    side = MAX_EMBEDDED
    uses = uses or [1] * len(pairs)
    while True:
        encoded = [{k: encode(v, side) for k, v in p["pixels"].items() if v is not None} for p in pairs]
        total = sum(n * len(uri) for e, n in zip(encoded, uses) for uri in e.values())
        if total <= budget or side <= MIN_EMBEDDED:
            break
        side = max(MIN_EMBEDDED, int(side * np.sqrt(budget / total) * 0.95))
    for p, e in zip(pairs, encoded):
        p.update(e)
        h, w = p["size"] if min(p["size"] or (0,)) > 0 else (0, 0)
        scale = min(1.0, side / max(h, w, 1))      # the embedded picture's own pixels
        p["width"], p["height"] = shown_size(max(1, round(w * scale)), max(1, round(h * scale))) if h else (0, 0)
    return total
