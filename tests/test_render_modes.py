"""transforms/render.py: RenderOptions (polarity, clipping, colour maps, overlay modes) and the golden default look.

Regenerate the golden files after an intended change of the default look:
    IGAUDIT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_render_modes.py -k golden
"""
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transforms import render
from transforms.render import (INFERNO, PINK_GREEN, RED_GREEN, VIRIDIS, RenderOptions, attribution_mask,
                               label_components, mask_image, overlay_image, png_bytes, polarity_map,
                               render_mask, render_overlay)

GOLDEN = Path(__file__).parent / "golden"
H, W = 40, 56


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def luminance(rgb):
    return np.asarray(rgb, np.float64) @ np.array([0.2126, 0.7152, 0.0722])


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
    check_golden("default_overlay.png", render_overlay(pixels, attribution))


def test_golden_default_mask():
    _, attribution = synthetic_case()
    check_golden("default_mask.png", render_mask(attribution))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_defaults_reproduce_the_original_functions_exactly(dtype):
    rng = np.random.default_rng(0)
    pixels = rng.random((23, 31, 3)).astype(np.float32)
    attribution = rng.normal(size=(23, 31, 3)).astype(dtype)
    attribution[3, 4, 1] = np.nan
    attribution[5, 6, 0] = np.inf
    np.testing.assert_array_equal(render_overlay(pixels, attribution),
                                  overlay_image(pixels, attribution_mask(attribution)))
    np.testing.assert_array_equal(render_mask(attribution), mask_image(attribution_mask(attribution)))
    options = RenderOptions()
    assert (options.polarity, options.clip_upper, options.clip_lower, options.resolved_cmap, options.overlay,
            options.image_weight) == ("absolute", 99.0, 0.0, "inferno", "heat", 0.4)


# -- every mode renders a PNG of the right size ---------------------------------------------------------
MODES = [dict(overlay=o, polarity=p, cmap=c)
         for o in ("heat", "heat_gray", "masked", "outlines")
         for p in ("absolute", "positive", "negative", "both")
         for c in ("auto", "inferno", "viridis", "pink_green", "red_green")
         if not (p == "both" and c in ("inferno", "viridis"))]


@pytest.mark.parametrize("kw", MODES, ids=lambda kw: "-".join(kw.values()))
def test_every_mode_renders_a_png_of_the_right_size(kw):
    pixels, attribution = synthetic_case()
    options = RenderOptions(**kw)
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
    options = RenderOptions(**kw)
    shown = render.shown_map(attribution, options)
    np.testing.assert_array_equal(render_mask(attribution, options, shown), render_mask(attribution, options))
    np.testing.assert_array_equal(render_overlay(pixels, attribution, options, shown),
                                  render_overlay(pixels, attribution, options))


def test_uint8_and_grayscale_pixels_are_accepted():
    pixels, attribution = synthetic_case()
    as_uint8 = np.round(pixels * 255).astype(np.uint8)
    np.testing.assert_allclose(render_overlay(as_uint8, attribution).astype(int),
                               render_overlay(pixels, attribution).astype(int), atol=1)
    assert render_overlay(pixels[..., 0], attribution).shape == (H, W, 3)
    assert render_overlay(pixels, attribution.sum(-1)).shape == (H, W, 3)   # H x W attribution


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
    positive = RenderOptions(polarity="positive", image_weight=0.0)
    negative = RenderOptions(polarity="negative", image_weight=0.0)
    assert np.all(render_mask(attribution, positive) == 0)
    np.testing.assert_array_equal(render_overlay(black, attribution, positive), np.broadcast_to(INFERNO[0], (16, 16, 3)))
    assert render_mask(attribution, negative).max() == 255
    assert (render_overlay(black, attribution, negative) != INFERNO[0]).any(axis=-1).mean() > 0.9
    # and the masked / outlines views show nothing for the wrong sign
    masked = RenderOptions(polarity="positive", overlay="masked")
    assert np.all(render_overlay(np.ones((16, 16, 3)), attribution, masked) == 0)
    assert render_overlay(np.ones((16, 16, 3)), attribution, RenderOptions(polarity="negative", overlay="masked")).any()
    # absolute ignores the sign
    np.testing.assert_array_equal(render_mask(attribution), render_mask(-attribution))


def test_both_polarity_mask_is_signed_around_128():
    a = np.zeros((3, 3, 3))
    a[0, 0] = 1.0
    a[2, 2] = -1.0
    mask = render_mask(a, RenderOptions(polarity="both", clip_upper=100.0))
    assert mask[0, 0] == 255 and mask[2, 2] == 0 and mask[1, 1] == 128


# -- clipping -----------------------------------------------------------------------------------------
def test_clip_upper_and_lower_percentiles():
    magnitude = np.arange(1, 10001, dtype=np.float64).reshape(100, 100)
    a = magnitude[..., None]
    p90, p50 = np.percentile(magnitude, 90), np.percentile(magnitude, 50)
    upper = render.normalized_map(a, RenderOptions(clip_upper=90.0))
    assert np.all(upper[magnitude >= p90] == 1.0)
    np.testing.assert_allclose(upper[magnitude < p90], magnitude[magnitude < p90] / p90)
    both = render.normalized_map(a, RenderOptions(clip_upper=90.0, clip_lower=50.0))
    assert np.all(both[magnitude <= p50] == 0.0) and np.all(both[magnitude >= p90] == 1.0)
    middle = (magnitude > p50) & (magnitude < p90)
    np.testing.assert_allclose(both[middle], (magnitude[middle] - p50) / (p90 - p50))
    # clip_lower = 0 is no floor: the smallest value keeps its intensity
    assert render.normalized_map(a, RenderOptions(clip_upper=100.0))[0, 0] == pytest.approx(1 / 10000)
    # signed maps are clipped on magnitude, symmetrically
    signed = render.normalized_map(np.concatenate([a, -a])[..., :], RenderOptions(polarity="both", clip_upper=90.0))
    np.testing.assert_allclose(signed[:100], -signed[100:])


def test_flat_map_between_percentiles_does_not_divide_by_zero():
    a = np.ones((10, 10, 1))
    m = render.normalized_map(a, RenderOptions(clip_lower=10.0, clip_upper=90.0))
    assert np.all(np.isfinite(m))


# -- colour maps --------------------------------------------------------------------------------------
def test_viridis_table():
    assert VIRIDIS.shape == (256, 3) and VIRIDIS.dtype == np.uint8
    np.testing.assert_array_equal(VIRIDIS[0], [68, 1, 84])        # dark purple
    np.testing.assert_array_equal(VIRIDIS[128], [33, 145, 140])   # teal
    np.testing.assert_array_equal(VIRIDIS[255], [253, 231, 37])   # yellow
    assert np.all(np.diff(luminance(VIRIDIS)) >= -0.5)            # perceptually ordered


@pytest.mark.parametrize("table,neutral,negative,positive", [
    (PINK_GREEN, (247, 247, 247), (142, 1, 82), (39, 100, 25)),
    (RED_GREEN, (255, 255, 255), (255, 0, 0), (0, 128, 0)),
])
def test_diverging_tables(table, neutral, negative, positive):
    assert table.shape == (256, 3) and table.dtype == np.uint8
    np.testing.assert_array_equal(table[127], neutral)
    np.testing.assert_array_equal(table[128], neutral)
    np.testing.assert_array_equal(table[0], negative)
    np.testing.assert_array_equal(table[255], positive)


@pytest.mark.parametrize("cmap,neutral", [("pink_green", (247, 247, 247)), ("red_green", (255, 255, 255))])
def test_diverging_maps_are_neutral_at_zero(cmap, neutral):
    a = np.zeros((5, 5, 3))
    a[0, 0] = 1.0     # strongest positive
    a[4, 4] = -1.0    # strongest negative
    options = RenderOptions(polarity="both", cmap=cmap, image_weight=0.0, clip_upper=100.0)
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
    shown = render.normalized_map(half, RenderOptions(polarity="both", clip_upper=100.0))
    np.testing.assert_allclose(shown, [[1.0, -1.0]])


def test_diverging_map_with_one_signed_polarity_uses_its_half():
    a = np.zeros((2, 2, 3))
    a[0, 0] = 1.0
    a[1, 1] = -1.0
    pos = render_overlay(np.zeros((2, 2, 3)), a, RenderOptions(polarity="positive", cmap="red_green", image_weight=0.0,
                                                              clip_upper=100.0))
    np.testing.assert_array_equal(pos[0, 0], [0, 128, 0])
    np.testing.assert_array_equal(pos[1, 1], [255, 255, 255])
    neg = render_overlay(np.zeros((2, 2, 3)), a, RenderOptions(polarity="negative", cmap="red_green", image_weight=0.0,
                                                              clip_upper=100.0))
    np.testing.assert_array_equal(neg[1, 1], [255, 0, 0])
    np.testing.assert_array_equal(neg[0, 0], [255, 255, 255])


def test_viridis_overlay_uses_viridis():
    a = np.zeros((2, 2, 1))
    a[0, 0] = 1.0
    out = render_overlay(np.zeros((2, 2, 3)), a, RenderOptions(cmap="viridis", image_weight=0.0, clip_upper=100.0))
    np.testing.assert_array_equal(out[0, 0], VIRIDIS[255])
    np.testing.assert_array_equal(out[1, 1], VIRIDIS[0])


# -- overlay modes ------------------------------------------------------------------------------------
def test_heat_gray_blends_over_a_grayscale_image():
    pixels, attribution = synthetic_case()
    only_image = render_overlay(pixels, attribution, RenderOptions(overlay="heat_gray", image_weight=1.0))
    assert np.all(only_image[..., 0] == only_image[..., 1]) and np.all(only_image[..., 1] == only_image[..., 2])
    gray = np.asarray(Image.fromarray(np.round(pixels * 255).astype(np.uint8)).convert("L")).astype(int)
    np.testing.assert_allclose(only_image[..., 0].astype(int), gray, atol=1)
    blended = render_overlay(pixels, attribution, RenderOptions(overlay="heat_gray"))
    expected = overlay_image(render.grayscale(pixels), attribution_mask(attribution))
    np.testing.assert_array_equal(blended, expected)


@pytest.mark.parametrize("keep", [0.05, 0.2, 0.5])
def test_masked_keeps_exactly_the_top_fraction(keep):
    rng = np.random.default_rng(3)
    pixels = 0.2 + 0.8 * rng.random((30, 40, 3))          # no black pixels of its own
    attribution = rng.normal(size=(30, 40, 3))
    out = render_overlay(pixels, attribution, RenderOptions(overlay="masked", masked_keep=keep))
    kept = out.any(axis=-1)
    assert kept.sum() == round(keep * 30 * 40)
    magnitude = np.abs(attribution).sum(-1)
    assert magnitude[kept].min() > magnitude[~kept].max()             # the top ones, nothing else
    np.testing.assert_array_equal(out[kept], np.round(pixels[kept] * 255).astype(np.uint8))
    assert np.all(out[~kept] == 0)


def test_masked_with_ties_still_keeps_the_exact_count():
    attribution = np.ones((10, 10, 3))
    out = render_overlay(np.ones((10, 10, 3)), attribution, RenderOptions(overlay="masked", masked_keep=0.25))
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
    options = RenderOptions(overlay="outlines", outline_top=disk.sum() / disk.size)
    out = render_overlay(pixels, attribution, options)
    drawn = np.all(out == options.outline_color, axis=-1)
    assert drawn.sum() > 20
    # every drawn pixel is on the blob's rim: inside the disk and next to the outside
    rim = disk & ~render.erode(disk, outside=False)
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
    regions = render.top_regions(attribution[..., 0], fraction, regions=3)
    labels, sizes = label_components(regions)
    assert len(sizes) == 3
    for cy, cx, r in centres[:3]:
        assert regions[cy, cx]
    for cy, cx, r in centres[3:]:
        assert not regions[cy, cx]
    out = render_overlay(np.zeros((60, 90, 3)), attribution, RenderOptions(overlay="outlines", outline_top=fraction,
                                                                          outline_regions=3, outline_color=[255, 0, 255]))
    drawn = np.all(out == (255, 0, 255), axis=-1)
    near = [(y - cy) ** 2 + (x - cx) ** 2 <= (r + 1) ** 2 for cy, cx, r in centres]
    for ring in near[:3]:
        assert drawn[ring].sum() > 10
    for ring in near[3:]:
        assert not drawn[ring].any()
    assert not drawn[12, 12]                            # borders only, not the filled regions
    assert drawn.sum() == sum(drawn[ring].sum() for ring in near[:3])


def test_outline_width():
    _, attribution, disk = blob_scene()
    thin = render.outline_pixels(attribution.sum(-1), disk.mean(), width=1)
    thick = render.outline_pixels(attribution.sum(-1), disk.mean(), width=2)
    assert thick.sum() > thin.sum() and np.all(thick[thin])


# -- morphology and labelling (cross-checked against scipy when it is installed) ----------------------
def test_opening_removes_specks_and_closing_fills_pinholes():
    m = np.zeros((20, 20), bool)
    m[4:14, 4:14] = True
    m[8, 8] = False          # pinhole
    m[17, 17] = True         # speck
    cleaned = render.binary_close(render.binary_open(m))
    assert cleaned[8, 8] and not cleaned[17, 17]
    assert cleaned[4:14, 4:14].all() and cleaned.sum() == 100


def test_label_components_connectivity():
    m = np.array([[1, 0, 0, 1],
                  [0, 1, 0, 1],
                  [0, 0, 0, 0],
                  [1, 1, 0, 1]], bool)
    labels8, sizes8 = label_components(m, 8)
    labels4, sizes4 = label_components(m, 4)
    assert sizes8.tolist() == [2, 2, 2, 1]
    assert sizes4.tolist() == [1, 2, 1, 2, 1]
    assert labels8[0, 0] == labels8[1, 1] == 1 and labels4[0, 0] != labels4[1, 1]
    assert label_components(np.zeros((3, 3), bool))[1].size == 0


def test_label_components_and_morphology_match_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(5)
    for _ in range(40):
        m = rng.random((rng.integers(1, 25), rng.integers(1, 25))) < rng.random()
        for connectivity, structure in ((8, np.ones((3, 3))), (4, None)):
            labels, sizes = label_components(m, connectivity)
            expected, count = ndimage.label(m, structure=structure)
            np.testing.assert_array_equal(labels, expected)
            np.testing.assert_array_equal(sizes, np.bincount(expected.ravel(), minlength=count + 1)[1:])
    m = rng.random((40, 40)) < 0.6
    # away from the frame (where border handling differs by design) opening/closing agree with scipy's
    np.testing.assert_array_equal(render.binary_open(m)[2:-2, 2:-2],
                                  ndimage.binary_opening(m, np.ones((3, 3)))[2:-2, 2:-2])
    np.testing.assert_array_equal(render.binary_close(m)[2:-2, 2:-2],
                                  ndimage.binary_closing(m, np.ones((3, 3)))[2:-2, 2:-2])


# -- options ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,field", [
    (dict(polarity="signed"), "polarity"),
    (dict(cmap="jet"), "cmap"),
    (dict(polarity="both", cmap="inferno"), "diverging"),
    (dict(overlay="blend"), "overlay"),
    (dict(clip_lower=99.0, clip_upper=99.0), "clip_lower"),
    (dict(clip_upper=101.0), "clip_upper"),
    (dict(masked_keep=1.5), "masked_keep"),
    (dict(image_weight=-0.1), "image_weight"),
    (dict(outline_regions=0), "outline_regions"),
    (dict(outline_color=(0, 300, 0)), "outline_color"),
])
def test_bad_options_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        RenderOptions(**kw)


def test_options_are_frozen_and_hashable():
    options = RenderOptions(outline_color=[1, 2, 3])
    assert options.outline_color == (1, 2, 3)
    assert hash(options) == hash(RenderOptions(outline_color=(1, 2, 3)))
    assert RenderOptions(polarity="both").resolved_cmap == "pink_green"
    with pytest.raises(Exception):
        options.polarity = "both"
