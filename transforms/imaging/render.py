"""Attribution -> pictures: 8-bit masks and overlays (plain numpy; PNGs written with zlib, no matplotlib).

The default look follows the TensorFlow IG tutorial: absolute attribution summed
over channels, clipped at the 99th percentile, the inferno colour map, blended
over the image. The `render:` config section (`pipeline.config.RenderConfig`) adds the
choices other tools offer (Captum's `visualize_image_attr`, PAIR saliency, Vertex
Explainable AI):

  polarity   absolute | positive | negative | both (signed, diverging colours)
  clipping   upper / lower percentiles (PAIR's VisualizeImageGrayscale)
  cmap       inferno | viridis | pink_green | red_green
  overlay    heat | heat_gray | masked | outlines

`render_mask(attribution, options)` and `render_overlay(pixels, attribution,
options)` are the entry points; with default options they give exactly
`mask_image(attribution_mask(a, 99))` and `overlay_image(pixels, attribution_mask(a, 99), 0.4, INFERNO)`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from igaudit.transforms.analysis.arraymath import channel_sum, percentile
from igaudit.transforms.imaging.colormaps import COLORMAPS, DIVERGING, heatmap, resolve_cmap, table, table_index
from igaudit.transforms.imaging.morphology import outline_pixels, top_fraction
from igaudit.transforms.imaging.png import png_bytes

if TYPE_CHECKING:
    from igaudit.pipeline.config import RenderConfig

POLARITIES = ("absolute", "positive", "negative", "both")
OVERLAYS = ("heat", "heat_gray", "masked", "outlines")


# -- the original API (the default look) ----------------------------------------------------------------
def attribution_mask(attribution: np.ndarray, clip_percentile: float) -> np.ndarray:
    """H x W x C attribution -> H x W float in [0, 1]: sum of |IG| over channels, clipped."""
    magnitude = channel_sum(np.abs(attribution))
    # NaN/inf (e.g. overflowed gradients) would poison the percentile and index the colour map out of range
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    return _scale(magnitude, clip_percentile, 0.0)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """[0, 1] mask -> uint8 grayscale."""
    return np.round(mask * 255.0).astype(np.uint8)


def overlay_image(pixels: np.ndarray, mask: np.ndarray, image_weight: float, cmap: np.ndarray) -> np.ndarray:
    """Heat map blended over the model-input image (pixels in [0, 1])."""
    weighted_colours = (1.0 - image_weight) * (cmap.astype(np.float32) / 255.0)   # per table entry, not pixel
    blended = np.take(weighted_colours, table_index(mask), axis=0) + image_weight * np.clip(pixels, 0.0, 1.0)
    return np.round(blended * 255.0).astype(np.uint8)


def grid_heatmap_png(grid: np.ndarray, scale: int = 8) -> bytes:
    """A G x G distribution -> an upscaled inferno PNG (for the report)."""
    g = np.asarray(grid, np.float64)
    top = g.max()
    norm = g / top if top > 0 else g
    picture = heatmap(norm)
    picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    return png_bytes(picture)


# -- maps ------------------------------------------------------------------------------------------------
def polarity_map(attribution: np.ndarray, polarity: str) -> np.ndarray:
    """H x W x C (or H x W) attribution -> H x W float map; non-finite pixels become 0.

    absolute/positive/negative are >= 0; both is signed.
    """
    a = np.asarray(attribution)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    # computed in the attribution's own float type, like `attribution_mask`, so defaults match it bit for bit
    if a.ndim == 2:
        a = a[..., None]
    if polarity == "absolute":
        values = channel_sum(np.abs(a))
    elif polarity == "positive":
        values = channel_sum(np.maximum(a, 0.0))
    elif polarity == "negative":
        values = channel_sum(np.maximum(-a, 0.0))
    elif polarity == "both":
        values = channel_sum(a)
    else:
        raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}; got {polarity!r}")
    return np.where(np.isfinite(values), values, 0.0)


def _scale(magnitude: np.ndarray, clip_upper: float, clip_lower: float) -> np.ndarray:
    """Non-negative map -> [0, 1]: the clip_upper percentile maps to 1, the clip_lower percentile to 0."""
    top = percentile(magnitude, clip_upper) if magnitude.size else 0.0
    if not np.isfinite(top) or top <= 0:
        # e.g. fewer than 1% nonzero pixels: scale by the max instead
        top = magnitude.max() if magnitude.size and magnitude.max() > 0 else 1.0
    if clip_lower <= 0 or not magnitude.size:
        return np.clip(magnitude / top, 0.0, 1.0)
    bottom = float(percentile(magnitude, clip_lower))
    if top <= bottom:  # a flat map between the two percentiles: everything above the floor is full
        return (magnitude > bottom).astype(np.float64)
    return np.clip((magnitude - bottom) / (top - bottom), 0.0, 1.0)


def normalized_map(attribution: np.ndarray, options: RenderConfig) -> np.ndarray:
    """The map that is shown: [0, 1] for one-signed polarities, [-1, 1] for polarity both."""
    values = polarity_map(attribution, options.polarity)
    if options.polarity == "both":
        return np.sign(values) * _scale(np.abs(values), options.clip_upper, options.clip_lower)
    return _scale(values, options.clip_upper, options.clip_lower)


def _display(values: np.ndarray, options: RenderConfig) -> np.ndarray:
    """Normalized map -> [0, 1] table position (signed maps: 0.5 is zero)."""
    return (values + 1.0) / 2.0 if options.polarity == "both" else values


def colormap(options: RenderConfig) -> np.ndarray:
    """The 256 x 3 table a map is looked up in, for the options' colour map and polarity."""
    name = resolve_cmap(options.cmap, options.polarity)
    colours = COLORMAPS[name]
    if name in DIVERGING and options.polarity != "both":
        if options.polarity == "negative":
            half = colours[127::-1]    # neutral -> negative colour
        else:
            half = colours[128:]       # neutral -> positive colour
        colours = table(half, np.linspace(0, 1, 128))
    return colours


def shown_map(attribution: np.ndarray, options: RenderConfig) -> np.ndarray:
    """The H x W map in [0, 1] that the mask and heat overlays draw (signed maps: 0.5 is zero).
    Compute it once and pass it as `shown` when drawing both pictures of one attribution."""
    return _display(normalized_map(attribution, options), options)


def render_mask(attribution: np.ndarray, options: RenderConfig,
                shown: Optional[np.ndarray] = None) -> np.ndarray:
    """Attribution -> uint8 H x W mask. Polarity both: 0 most negative, 128 zero, 255 most positive."""
    return mask_image(shown_map(attribution, options) if shown is None else shown)


def _as_unit_pixels(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        pixels = pixels.astype(np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    elif pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    elif pixels.shape[-1] == 4:
        pixels = pixels[..., :3]          # RGBA model input: pictures show its colours (alpha not drawn)
    return pixels


def grayscale(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] RGB -> [0, 1] gray RGB (ITU-R 601 luma, as Pillow's "L" conversion)."""
    luma = np.clip(pixels, 0.0, 1.0)[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(luma[..., None], 3, axis=-1)


def _ranking_map(attribution: np.ndarray, options: RenderConfig) -> np.ndarray:
    values = polarity_map(attribution, options.polarity)
    return np.abs(values) if options.polarity == "both" else values


def render_overlay(pixels: np.ndarray, attribution: np.ndarray, options: RenderConfig,
                   shown: Optional[np.ndarray] = None) -> np.ndarray:
    """Model-input image ([0, 1] floats or uint8, H x W x 3) and its attribution -> uint8 H x W x 3.
    `shown`: `shown_map(attribution, options)` if already computed (heat overlays use it)."""
    pixels = _as_unit_pixels(pixels)
    if options.overlay in ("heat", "heat_gray"):
        base = grayscale(pixels) if options.overlay == "heat_gray" else pixels
        shown = shown_map(attribution, options) if shown is None else shown
        return overlay_image(base, shown, options.image_weight, colormap(options))
    image = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    ranking = _ranking_map(attribution, options)
    if options.overlay == "masked":
        return image * top_fraction(ranking, options.masked_keep)[..., None].astype(np.uint8)
    # outlines
    border = outline_pixels(ranking, options.outline_top, options.outline_regions, options.outline_width)
    out = image.copy()
    out[border] = options.outline_color
    return out


def render_png(pixels: Optional[np.ndarray], attribution: np.ndarray, options: RenderConfig) -> bytes:
    """PNG of the overlay (or of the mask when `pixels` is None)."""
    if pixels is None:
        return png_bytes(render_mask(attribution, options))
    return png_bytes(render_overlay(pixels, attribution, options))
