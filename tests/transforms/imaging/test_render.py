"""transforms/imaging/render.py: masks, overlays and the report's grid heat map (the default look's functions)."""
import io

import numpy as np
import pytest
from PIL import Image

from igaudit.transforms.imaging.colormaps import INFERNO, heatmap
from igaudit.transforms.imaging.render import attribution_mask, grid_heatmap_png, mask_image, overlay_image


def decode(data: bytes):
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


# -- attribution_mask ---------------------------------------------------------------------------------
def test_mask_is_abs_sum_over_channels_scaled_to_unit_range():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 24, 3))
    m = attribution_mask(a, 99.0)
    assert m.shape == (16, 24)
    assert m.min() >= 0.0 and m.max() <= 1.0
    magnitude = np.abs(a).sum(-1)
    np.testing.assert_allclose(m, np.clip(magnitude / np.percentile(magnitude, 99), 0, 1))
    # sign does not matter, only magnitude
    np.testing.assert_allclose(attribution_mask(-a, 99.0), m)


def test_top_one_percent_saturates():
    magnitude = np.arange(1, 10001, dtype=np.float64).reshape(100, 100)
    a = np.stack([magnitude, np.zeros_like(magnitude)], axis=-1)
    m = attribution_mask(a, 99.0)
    top = magnitude > 9900            # the largest 1% of 10000 pixels
    assert top.sum() == 100
    assert np.all(m[top] == 1.0)
    assert np.all(m[~top] < 1.0)
    # below the clip point the scale is linear in |IG|
    p99 = np.percentile(magnitude, 99)
    np.testing.assert_allclose(m[~top], magnitude[~top] / p99)
    # one huge outlier does not wash out the rest of the picture
    a[0, 0, 0] = 1e9
    m2 = attribution_mask(a, 99.0)
    assert m2[0, 0] == 1.0
    assert m2[50, 50] == pytest.approx(magnitude[50, 50] / np.percentile(np.abs(a).sum(-1), 99))
    assert m2[50, 50] > 0.4


def test_sparse_mask_falls_back_to_the_max():
    # fewer than 1% nonzero pixels: the 99th percentile is 0, scale by the max instead
    a = np.zeros((20, 20, 3))
    a[3, 4, 0] = 2.0
    a[10, 10, 1] = -1.0
    m = attribution_mask(a, 99.0)
    assert m[3, 4] == 1.0
    assert m[10, 10] == pytest.approx(0.5)
    assert m.sum() == pytest.approx(1.5)


def test_zero_attribution_gives_black_mask():
    m = attribution_mask(np.zeros((8, 8, 3)), 99.0)
    assert m.shape == (8, 8) and np.all(m == 0.0)
    assert np.all(mask_image(m) == 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_attribution_gives_a_valid_mask(bad):
    a = np.random.default_rng(1).normal(size=(10, 10, 3))
    a[2, 2, 1] = bad
    m = attribution_mask(a, 99.0)
    assert np.all(np.isfinite(m)) and m.min() >= 0.0 and m.max() <= 1.0
    heat = heatmap(m)                         # must not index the colour table out of range
    assert heat.shape == (10, 10, 3) and heat.dtype == np.uint8
    assert overlay_image(np.zeros((10, 10, 3)), m, 0.4, INFERNO).dtype == np.uint8


# -- mask_image ---------------------------------------------------------------------------------------
def test_mask_image_uint8():
    m = np.array([[0.0, 0.5, 1.0], [0.25, 0.999, 0.001]])
    img = mask_image(m)
    assert img.dtype == np.uint8 and img.shape == m.shape
    np.testing.assert_array_equal(img, [[0, 128, 255], [64, 255, 0]])


# -- overlay ------------------------------------------------------------------------------------------
def test_overlay_shape_dtype_and_blend():
    rng = np.random.default_rng(2)
    pixels = rng.random((12, 20, 3)).astype(np.float32)
    m = rng.random((12, 20))
    out = overlay_image(pixels, m, 0.4, INFERNO)
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8
    expected = 0.6 * heatmap(m) / 255.0 + 0.4 * pixels
    np.testing.assert_allclose(out, np.round(expected * 255), atol=1)


def test_overlay_extremes():
    white = np.ones((4, 4, 3))
    black = np.zeros((4, 4, 3))
    hot, cold = np.ones((4, 4)), np.zeros((4, 4))
    np.testing.assert_array_equal(overlay_image(white, hot, image_weight=0.0, cmap=INFERNO),
                                  np.broadcast_to(INFERNO[255], (4, 4, 3)))
    np.testing.assert_array_equal(overlay_image(white, cold, image_weight=1.0, cmap=INFERNO),
                                  np.full((4, 4, 3), 255))
    # out-of-range pixels are clipped, so the result never wraps around
    assert overlay_image(white * 3, hot, 0.4, INFERNO).max() <= 255
    assert overlay_image(black - 1, cold, 0.4, INFERNO).min() >= 0
    np.testing.assert_array_equal(overlay_image(black - 1, cold, 0.4, INFERNO),
                                  overlay_image(black, cold, 0.4, INFERNO))


def test_grid_heatmap_png():
    grid = np.zeros((4, 4))
    grid[1, 2] = 0.75
    grid[3, 0] = 0.25
    decoded = np.asarray(decode(grid_heatmap_png(grid, scale=5)))
    assert decoded.shape == (20, 20, 3)
    np.testing.assert_array_equal(decoded[5:10, 10:15], np.broadcast_to(INFERNO[255], (5, 5, 3)))
    np.testing.assert_array_equal(decoded[0:5, 0:5], np.broadcast_to(INFERNO[0], (5, 5, 3)))
    np.testing.assert_array_equal(decoded[15:20, 0:5], np.broadcast_to(INFERNO[85], (5, 5, 3)))
    # an all-zero grid renders (dark) instead of dividing by zero
    assert np.all(np.asarray(decode(grid_heatmap_png(np.zeros((3, 3)), scale=2))) == INFERNO[0])
