"""transforms/imaging/render.py: the `render:` options (polarity, clipping, colour maps, overlay modes) and the
golden default look.

Regenerate the golden files after an intended change of the default look:
    IGAUDIT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/transforms/imaging/test_render_modes.py -k golden
"""
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from igaudit.pipeline.config import RenderConfig
from igaudit.transforms.imaging import morphology, render
from igaudit.transforms.imaging.colormaps import INFERNO, VIRIDIS, resolve_cmap
from igaudit.transforms.imaging.morphology import label_components
from igaudit.transforms.imaging.png import png_bytes
from igaudit.transforms.imaging.render import (attribution_mask, mask_image, overlay_image, polarity_map, render_mask,
                                               render_overlay)

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
H, W = 40, 56


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def synthetic_case():
    """A fixed image and attribution built from exact arithmetic only (no sin/exp), so every platform
    computes the same floats."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    pixels = np.stack([x / (W - 1), y / (H - 1), ((x * 3 + y * 5) % 11) / 10.0], axis=-1)
    blob = np.maximum(0.0, 1.0 - ((x - 36) ** 2 + (y - 15) ** 2) / 81.0) ** 2           # radius 9
    texture = ((x * 7 + y * 13) % 17) / 17.0 - 0.5                                      # signed
    attribution = np.stack([2.0 * blob + 0.1 * texture, blob - 0.05 * texture, 0.2 * texture], axis=-1)
    return pixels.astype(np.float32), attribution.astype(np.float32)


def check_golden(name: str, array: np.ndarray):
    path = GOLDEN / name
    if os.environ.get("IGAUDIT_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(array))
    assert path.exists(), f"{path} missing; run with IGAUDIT_UPDATE_GOLDEN=1 to create it"
    expected = np.asarray(Image.open(path))
    assert expected.shape == array.shape and expected.dtype == array.dtype
    differ = np.argwhere(np.any((expected != array).reshape(array.shape[0], array.shape[1], -1), axis=-1))
    assert not len(differ), (f"{len(differ)} pixels differ from {path.name}, first at {differ[:5].tolist()}; "
                             f"if the change is intended, regenerate with IGAUDIT_UPDATE_GOLDEN=1")


# -- the default look --------------------------------------------------------------------------------
def test_golden_default_overlay():
    pixels, attribution = synthetic_case()
    check_golden("default_overlay.png", render_overlay(pixels, attribution, RenderConfig()))


def test_golden_default_mask():
    _, attribution = synthetic_case()
    check_golden("default_mask.png", render_mask(attribution, RenderConfig()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_defaults_reproduce_the_original_functions_exactly(dtype):
    rng = np.random.default_rng(0)
    pixels = rng.random((23, 31, 3)).astype(np.float32)
    attribution = rng.normal(size=(23, 31, 3)).astype(dtype)
    attribution[3, 4, 1] = np.nan
    attribution[5, 6, 0] = np.inf
    np.testing.assert_array_equal(render_overlay(pixels, attribution, RenderConfig()),
                                  overlay_image(pixels, attribution_mask(attribution, 99.0), 0.4, INFERNO))
    np.testing.assert_array_equal(render_mask(attribution, RenderConfig()),
                                  mask_image(attribution_mask(attribution, 99.0)))
    options = RenderConfig()
    assert (options.polarity, options.clip_upper, options.clip_lower, resolve_cmap(options.cmap, options.polarity),
            options.overlay, options.image_weight) == ("absolute", 99.0, 0.0, "inferno", "heat", 0.4)


# -- every mode renders a PNG of the right size ---------------------------------------------------------
MODES = [dict(overlay=o, polarity=p, cmap=c)
         for o in ("heat", "heat_gray", "masked", "outlines")
         for p in ("absolute", "positive", "negative", "both")
         for c in ("auto", "inferno", "viridis", "pink_green", "red_green")
         if not (p == "both" and c in ("inferno", "viridis"))]


@pytest.mark.parametrize("kw", MODES, ids=lambda kw: "-".join(kw.values()))
def test_every_mode_renders_a_png_of_the_right_size(kw):
    pixels, attribution = synthetic_case()
    options = RenderConfig(**kw)
    overlay = decode(png_bytes(render_overlay(pixels, attribution, options)))
    assert overlay.mode == "RGB" and overlay.size == (W, H)
    mask = decode(png_bytes(render_mask(attribution, options)))
    assert mask.mode == "L" and mask.size == (W, H)
    assert decode(render.render_png(pixels, attribution, options)).size == (W, H)
    assert decode(render.render_png(None, attribution, options)).mode == "L"


@pytest.mark.parametrize("kw", [{}, {"polarity": "both"}, {"overlay": "heat_gray", "clip_lower": 20.0},
                                {"polarity": "negative", "cmap": "red_green"}, {"overlay": "outlines"}])
def test_a_shared_shown_map_draws_the_same_pictures(kw):
    # WriteArtifacts computes the shown map once for the mask and the overlay
    pixels, attribution = synthetic_case()
    options = RenderConfig(**kw)
    shown = render.shown_map(attribution, options)
    np.testing.assert_array_equal(render_mask(attribution, options, shown), render_mask(attribution, options))
    np.testing.assert_array_equal(render_overlay(pixels, attribution, options, shown),
                                  render_overlay(pixels, attribution, options))


def test_uint8_and_grayscale_pixels_are_accepted():
    pixels, attribution = synthetic_case()
    as_uint8 = np.round(pixels * 255).astype(np.uint8)
    np.testing.assert_allclose(render_overlay(as_uint8, attribution, RenderConfig()).astype(int),
                               render_overlay(pixels, attribution, RenderConfig()).astype(int), atol=1)
    assert render_overlay(pixels[..., 0], attribution, RenderConfig()).shape == (H, W, 3)
    assert render_overlay(pixels, attribution.sum(-1), RenderConfig()).shape == (H, W, 3)   # H x W attribution


# -- polarity -----------------------------------------------------------------------------------------
def test_polarity_maps():
    a = np.random.default_rng(1).normal(size=(6, 7, 3))
    pos, neg = polarity_map(a, "positive"), polarity_map(a, "negative")
    np.testing.assert_allclose(pos, np.maximum(a, 0).sum(-1))
    np.testing.assert_allclose(neg, np.maximum(-a, 0).sum(-1))
    np.testing.assert_allclose(pos + neg, polarity_map(a, "absolute"))
    np.testing.assert_allclose(pos - neg, polarity_map(a, "both"))


def test_only_negative_attribution_is_black_for_positive_polarity():
    rng = np.random.default_rng(2)
    attribution = -rng.random((16, 16, 3))                     # strictly negative everywhere
    black = np.zeros((16, 16, 3))
    positive = RenderConfig(polarity="positive", image_weight=0.0)
    negative = RenderConfig(polarity="negative", image_weight=0.0)
    assert np.all(render_mask(attribution, positive) == 0)
    np.testing.assert_array_equal(render_overlay(black, attribution, positive), np.broadcast_to(INFERNO[0], (16, 16, 3)))
    assert render_mask(attribution, negative).max() == 255
    assert (render_overlay(black, attribution, negative) != INFERNO[0]).any(axis=-1).mean() > 0.9
    # and the masked / outlines views show nothing for the wrong sign
    masked = RenderConfig(polarity="positive", overlay="masked")
    assert np.all(render_overlay(np.ones((16, 16, 3)), attribution, masked) == 0)
    assert render_overlay(np.ones((16, 16, 3)), attribution, RenderConfig(polarity="negative", overlay="masked")).any()
    # absolute ignores the sign
    np.testing.assert_array_equal(render_mask(attribution, RenderConfig()), render_mask(-attribution, RenderConfig()))


def test_both_polarity_mask_is_signed_around_128():
    a = np.zeros((3, 3, 3))
    a[0, 0] = 1.0
    a[2, 2] = -1.0
    mask = render_mask(a, RenderConfig(polarity="both", clip_upper=100.0))
    assert mask[0, 0] == 255 and mask[2, 2] == 0 and mask[1, 1] == 128


# -- clipping -----------------------------------------------------------------------------------------
def test_clip_upper_and_lower_percentiles():
    magnitude = np.arange(1, 10001, dtype=np.float64).reshape(100, 100)
    a = magnitude[..., None]
    p90, p50 = np.percentile(magnitude, 90), np.percentile(magnitude, 50)
    upper = render.normalized_map(a, RenderConfig(clip_upper=90.0))
    assert np.all(upper[magnitude >= p90] == 1.0)
    np.testing.assert_allclose(upper[magnitude < p90], magnitude[magnitude < p90] / p90)
    both = render.normalized_map(a, RenderConfig(clip_upper=90.0, clip_lower=50.0))
    assert np.all(both[magnitude <= p50] == 0.0) and np.all(both[magnitude >= p90] == 1.0)
    middle = (magnitude > p50) & (magnitude < p90)
    np.testing.assert_allclose(both[middle], (magnitude[middle] - p50) / (p90 - p50))
    # clip_lower = 0 is no floor: the smallest value keeps its intensity
    assert render.normalized_map(a, RenderConfig(clip_upper=100.0))[0, 0] == pytest.approx(1 / 10000)
    # signed maps are clipped on magnitude, symmetrically
    signed = render.normalized_map(np.concatenate([a, -a])[..., :], RenderConfig(polarity="both", clip_upper=90.0))
    np.testing.assert_allclose(signed[:100], -signed[100:])


def test_flat_map_between_percentiles_does_not_divide_by_zero():
    a = np.ones((10, 10, 1))
    m = render.normalized_map(a, RenderConfig(clip_lower=10.0, clip_upper=90.0))
    assert np.all(np.isfinite(m))


# -- colour maps --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmap,neutral", [("pink_green", (247, 247, 247)), ("red_green", (255, 255, 255))])
def test_diverging_maps_are_neutral_at_zero(cmap, neutral):
    a = np.zeros((5, 5, 3))
    a[0, 0] = 1.0     # strongest positive
    a[4, 4] = -1.0    # strongest negative
    options = RenderConfig(polarity="both", cmap=cmap, image_weight=0.0, clip_upper=100.0)
    out = render_overlay(np.zeros((5, 5, 3)), a, options)
    zero = np.ones((5, 5), bool)
    zero[0, 0] = zero[4, 4] = False
    assert np.all(out[zero] == neutral)
    r, g, b = out[0, 0].astype(int)
    assert g > r                                    # positive: green
    r, g, b = out[4, 4].astype(int)
    assert r > g                                    # negative: pink / red
    # a map symmetric in sign gets mirrored colours: equal distance from neutral
    half = np.zeros((1, 2, 3))
    half[0, 0], half[0, 1] = 0.5, -0.5
    shown = render.normalized_map(half, RenderConfig(polarity="both", clip_upper=100.0))
    np.testing.assert_allclose(shown, [[1.0, -1.0]])


def test_diverging_map_with_one_signed_polarity_uses_its_half():
    a = np.zeros((2, 2, 3))
    a[0, 0] = 1.0
    a[1, 1] = -1.0
    pos = render_overlay(np.zeros((2, 2, 3)), a, RenderConfig(polarity="positive", cmap="red_green", image_weight=0.0,
                                                              clip_upper=100.0))
    np.testing.assert_array_equal(pos[0, 0], [0, 128, 0])
    np.testing.assert_array_equal(pos[1, 1], [255, 255, 255])
    neg = render_overlay(np.zeros((2, 2, 3)), a, RenderConfig(polarity="negative", cmap="red_green", image_weight=0.0,
                                                              clip_upper=100.0))
    np.testing.assert_array_equal(neg[1, 1], [255, 0, 0])
    np.testing.assert_array_equal(neg[0, 0], [255, 255, 255])


def test_viridis_overlay_uses_viridis():
    a = np.zeros((2, 2, 1))
    a[0, 0] = 1.0
    out = render_overlay(np.zeros((2, 2, 3)), a, RenderConfig(cmap="viridis", image_weight=0.0, clip_upper=100.0))
    np.testing.assert_array_equal(out[0, 0], VIRIDIS[255])
    np.testing.assert_array_equal(out[1, 1], VIRIDIS[0])


# -- overlay modes ------------------------------------------------------------------------------------
def test_heat_gray_blends_over_a_grayscale_image():
    pixels, attribution = synthetic_case()
    only_image = render_overlay(pixels, attribution, RenderConfig(overlay="heat_gray", image_weight=1.0))
    assert np.all(only_image[..., 0] == only_image[..., 1]) and np.all(only_image[..., 1] == only_image[..., 2])
    gray = np.asarray(Image.fromarray(np.round(pixels * 255).astype(np.uint8)).convert("L")).astype(int)
    np.testing.assert_allclose(only_image[..., 0].astype(int), gray, atol=1)
    blended = render_overlay(pixels, attribution, RenderConfig(overlay="heat_gray"))
    expected = overlay_image(render.grayscale(pixels), attribution_mask(attribution, 99.0), 0.4, INFERNO)
    np.testing.assert_array_equal(blended, expected)


@pytest.mark.parametrize("keep", [0.05, 0.2, 0.5])
def test_masked_keeps_exactly_the_top_fraction(keep):
    rng = np.random.default_rng(3)
    pixels = 0.2 + 0.8 * rng.random((30, 40, 3))          # no black pixels of its own
    attribution = rng.normal(size=(30, 40, 3))
    out = render_overlay(pixels, attribution, RenderConfig(overlay="masked", masked_keep=keep))
    kept = out.any(axis=-1)
    assert kept.sum() == round(keep * 30 * 40)
    magnitude = np.abs(attribution).sum(-1)
    assert magnitude[kept].min() > magnitude[~kept].max()             # the top ones, nothing else
    np.testing.assert_array_equal(out[kept], np.round(pixels[kept] * 255).astype(np.uint8))
    assert np.all(out[~kept] == 0)


def test_masked_with_ties_still_keeps_the_exact_count():
    attribution = np.ones((10, 10, 3))
    out = render_overlay(np.ones((10, 10, 3)), attribution, RenderConfig(overlay="masked", masked_keep=0.25))
    assert out.any(axis=-1).sum() == 25


def blob_scene(seed=4):
    """Gray image; attribution: a strong disk (radius 7 at (24, 30)), two isolated hot speckles, faint noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:64]
    disk = (y - 24) ** 2 + (x - 30) ** 2 <= 49
    attribution = 0.01 * rng.random((48, 64, 3))
    attribution[disk] += 1.0
    attribution[5, 5] += 5.0          # single-pixel speckles: the opening removes them
    attribution[40, 58] += 5.0
    pixels = np.full((48, 64, 3), 0.5)
    return pixels, attribution, disk


def test_outlines_surround_the_planted_blob_and_nothing_else():
    pixels, attribution, disk = blob_scene()
    options = RenderConfig(overlay="outlines", outline_top=disk.sum() / disk.size)
    out = render_overlay(pixels, attribution, options)
    drawn = np.all(out == options.outline_color, axis=-1)
    assert drawn.sum() > 20
    # every drawn pixel is on the blob's rim: inside the disk and next to the outside
    rim = disk & ~morphology.erode(disk, outside=False)
    assert np.all(rim[drawn])
    assert drawn.sum() >= 0.8 * rim.sum()
    # nothing near the speckles, nothing far from the blob
    yy, xx = np.nonzero(drawn)
    assert np.all((yy - 24) ** 2 + (xx - 30) ** 2 <= 8 ** 2)
    # the rest of the picture is the image
    np.testing.assert_array_equal(out[~drawn], np.full(((~drawn).sum(), 3), 128, np.uint8))


def test_outlines_keep_only_the_largest_regions():
    y, x = np.mgrid[0:60, 0:90]
    attribution = np.zeros((60, 90, 1))
    centres = [(12, 12, 7), (12, 45, 6), (12, 75, 5), (45, 20, 4), (45, 60, 3)]   # decreasing radius
    for cy, cx, r in centres:
        attribution[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] = 1.0
    fraction = (attribution[..., 0] > 0).mean()
    regions = morphology.top_regions(attribution[..., 0], fraction, regions=3)
    labels, sizes = label_components(regions)
    assert len(sizes) == 3
    for cy, cx, r in centres[:3]:
        assert regions[cy, cx]
    for cy, cx, r in centres[3:]:
        assert not regions[cy, cx]
    out = render_overlay(np.zeros((60, 90, 3)), attribution, RenderConfig(overlay="outlines", outline_top=fraction,
                                                                          outline_regions=3, outline_color=[255, 0, 255]))
    drawn = np.all(out == (255, 0, 255), axis=-1)
    near = [(y - cy) ** 2 + (x - cx) ** 2 <= (r + 1) ** 2 for cy, cx, r in centres]
    for ring in near[:3]:
        assert drawn[ring].sum() > 10
    for ring in near[3:]:
        assert not drawn[ring].any()
    assert not drawn[12, 12]                            # borders only, not the filled regions
    assert drawn.sum() == sum(drawn[ring].sum() for ring in near[:3])
