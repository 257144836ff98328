"""Attribution -> pictures: an 8-bit mask and a heat overlay (plain numpy + Pillow).

The default look follows the TensorFlow IG tutorial: absolute attribution summed
over channels, the inferno colour map, blended over the image.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Matplotlib's inferno sampled at 9 evenly spaced points; interpolated to 256 entries.
_INFERNO_ANCHORS = np.array([
    (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
    (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)], np.float64)
INFERNO = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO_ANCHORS)),
                              _INFERNO_ANCHORS[:, c]) for c in range(3)], axis=1).astype(np.uint8)

PNG_COMPRESS_LEVEL = 1  # fast; masks are small and compress well anyway


def attribution_mask(attribution: np.ndarray, clip_percentile: float = 99.0) -> np.ndarray:
    """H x W x C attribution -> H x W float in [0, 1]: sum of |IG| over channels, clipped."""
    magnitude = np.abs(attribution).sum(axis=-1)
    # NaN/inf (e.g. overflowed gradients) would poison the percentile and index the colour map out of range
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    top = np.percentile(magnitude, clip_percentile) if magnitude.size else 0.0
    if not np.isfinite(top) or top <= 0:
        top = magnitude.max() if magnitude.size and magnitude.max() > 0 else 1.0
    return np.clip(magnitude / top, 0.0, 1.0)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """[0, 1] mask -> uint8 grayscale."""
    return np.round(mask * 255.0).astype(np.uint8)


def heatmap(mask: np.ndarray, cmap: np.ndarray = INFERNO) -> np.ndarray:
    """[0, 1] mask -> uint8 H x W x 3 colours."""
    return cmap[np.round(mask * 255.0).astype(np.int64)]


def overlay_image(pixels: np.ndarray, mask: np.ndarray, image_weight: float = 0.4) -> np.ndarray:
    """Heat map blended over the model-input image (pixels in [0, 1])."""
    heat = heatmap(mask).astype(np.float32) / 255.0
    blended = (1.0 - image_weight) * heat + image_weight * np.clip(pixels, 0.0, 1.0)
    return np.round(blended * 255.0).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def grid_heatmap_png(grid: np.ndarray, scale: int = 8) -> bytes:
    """A G x G distribution -> an upscaled inferno PNG (for the report)."""
    g = np.asarray(grid, np.float64)
    top = g.max()
    norm = g / top if top > 0 else g
    picture = heatmap(norm)
    picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    return png_bytes(picture)
