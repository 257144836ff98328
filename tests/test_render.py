"""transforms/render.py: masks, the inferno table, overlays and PNG encoding."""
import io

import numpy as np
import pytest
from PIL import Image

from transforms.render import (INFERNO, attribution_mask, grid_heatmap_png, heatmap, mask_image, overlay_image,
                               png_bytes)


def luminance(rgb):
    rgb = np.asarray(rgb, np.float64)
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def decode(data: bytes):
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


# -- attribution_mask ---------------------------------------------------------------------------------
def test_mask_is_abs_sum_over_channels_scaled_to_unit_range():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 24, 3))
    m = attribution_mask(a)
    assert m.shape == (16, 24)
    assert m.min() >= 0.0 and m.max() <= 1.0
    magnitude = np.abs(a).sum(-1)
    np.testing.assert_allclose(m, np.clip(magnitude / np.percentile(magnitude, 99), 0, 1))
    # sign does not matter, only magnitude
    np.testing.assert_allclose(attribution_mask(-a), m)


def test_top_one_percent_saturates():
    magnitude = np.arange(1, 10001, dtype=np.float64).reshape(100, 100)
    a = np.stack([magnitude, np.zeros_like(magnitude)], axis=-1)
    m = attribution_mask(a)
    top = magnitude > 9900            # the largest 1% of 10000 pixels
    assert top.sum() == 100
    assert np.all(m[top] == 1.0)
    assert np.all(m[~top] < 1.0)
    # below the clip point the scale is linear in |IG|
    p99 = np.percentile(magnitude, 99)
    np.testing.assert_allclose(m[~top], magnitude[~top] / p99)
    # one huge outlier does not wash out the rest of the picture
    a[0, 0, 0] = 1e9
    m2 = attribution_mask(a)
    assert m2[0, 0] == 1.0
    assert m2[50, 50] == pytest.approx(magnitude[50, 50] / np.percentile(np.abs(a).sum(-1), 99))
    assert m2[50, 50] > 0.4


def test_sparse_mask_falls_back_to_the_max():
    # fewer than 1% nonzero pixels: the 99th percentile is 0, scale by the max instead
    a = np.zeros((20, 20, 3))
    a[3, 4, 0] = 2.0
    a[10, 10, 1] = -1.0
    m = attribution_mask(a)
    assert m[3, 4] == 1.0
    assert m[10, 10] == pytest.approx(0.5)
    assert m.sum() == pytest.approx(1.5)


def test_zero_attribution_gives_black_mask():
    m = attribution_mask(np.zeros((8, 8, 3)))
    assert m.shape == (8, 8) and np.all(m == 0.0)
    assert np.all(mask_image(m) == 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_attribution_gives_a_valid_mask(bad):
    a = np.random.default_rng(1).normal(size=(10, 10, 3))
    a[2, 2, 1] = bad
    m = attribution_mask(a)
    assert np.all(np.isfinite(m)) and m.min() >= 0.0 and m.max() <= 1.0
    heat = heatmap(m)                         # must not index the colour table out of range
    assert heat.shape == (10, 10, 3) and heat.dtype == np.uint8
    assert overlay_image(np.zeros((10, 10, 3)), m).dtype == np.uint8


# -- mask_image ---------------------------------------------------------------------------------------
def test_mask_image_uint8():
    m = np.array([[0.0, 0.5, 1.0], [0.25, 0.999, 0.001]])
    img = mask_image(m)
    assert img.dtype == np.uint8 and img.shape == m.shape
    np.testing.assert_array_equal(img, [[0, 128, 255], [64, 255, 0]])


# -- the inferno table --------------------------------------------------------------------------------
def test_inferno_table_shape_and_endpoints():
    assert INFERNO.shape == (256, 3) and INFERNO.dtype == np.uint8
    np.testing.assert_array_equal(INFERNO[0], [0, 0, 4])          # near black
    np.testing.assert_array_equal(INFERNO[255], [252, 255, 164])  # pale yellow
    assert luminance(INFERNO[0]) < 5
    assert luminance(INFERNO[255]) > 240
    r, g, b = INFERNO[255].astype(int)
    assert r > 240 and g > 240 and b < r - 50   # yellow: red and green high, blue lower


def test_inferno_luminance_is_monotone():
    lum = luminance(INFERNO)
    assert np.all(np.diff(lum) >= 0)
    assert lum[-1] - lum[0] > 200


def test_heatmap_looks_up_the_table():
    m = np.array([[0.0, 1.0], [0.5, 128 / 255]])
    heat = heatmap(m)
    assert heat.shape == (2, 2, 3) and heat.dtype == np.uint8
    np.testing.assert_array_equal(heat[0, 0], INFERNO[0])
    np.testing.assert_array_equal(heat[0, 1], INFERNO[255])
    np.testing.assert_array_equal(heat[1, 0], INFERNO[128])
    np.testing.assert_array_equal(heat[1, 1], INFERNO[128])


# -- overlay ------------------------------------------------------------------------------------------
def test_overlay_shape_dtype_and_blend():
    rng = np.random.default_rng(2)
    pixels = rng.random((12, 20, 3)).astype(np.float32)
    m = rng.random((12, 20))
    out = overlay_image(pixels, m)
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8
    expected = 0.6 * heatmap(m) / 255.0 + 0.4 * pixels
    np.testing.assert_allclose(out, np.round(expected * 255), atol=1)


def test_overlay_extremes():
    white = np.ones((4, 4, 3))
    black = np.zeros((4, 4, 3))
    hot, cold = np.ones((4, 4)), np.zeros((4, 4))
    np.testing.assert_array_equal(overlay_image(white, hot, image_weight=0.0), np.broadcast_to(INFERNO[255], (4, 4, 3)))
    np.testing.assert_array_equal(overlay_image(white, cold, image_weight=1.0), np.full((4, 4, 3), 255))
    # out-of-range pixels are clipped, so the result never wraps around
    assert overlay_image(white * 3, hot).max() <= 255
    assert overlay_image(black - 1, cold).min() >= 0
    np.testing.assert_array_equal(overlay_image(black - 1, cold), overlay_image(black, cold))


# -- PNG ----------------------------------------------------------------------------------------------
def test_png_round_trip_grayscale():
    m = np.random.default_rng(3).random((17, 29))
    img = mask_image(m)
    decoded = decode(png_bytes(img))
    assert decoded.mode == "L" and decoded.size == (29, 17)
    np.testing.assert_array_equal(np.asarray(decoded), img)


def test_png_round_trip_rgb():
    rng = np.random.default_rng(4)
    img = overlay_image(rng.random((9, 13, 3)), rng.random((9, 13)))
    decoded = decode(png_bytes(img))
    assert decoded.mode == "RGB" and decoded.size == (13, 9)
    np.testing.assert_array_equal(np.asarray(decoded), img)


def test_png_round_trip_rgba_and_pillow_reads_every_chunk():
    img = np.random.default_rng(5).integers(0, 256, (7, 11, 4), dtype=np.uint8)
    decoded = decode(png_bytes(img))
    decoded.load()                      # decodes IDAT and checks the zlib stream
    assert decoded.mode == "RGBA" and decoded.size == (11, 7)
    np.testing.assert_array_equal(np.asarray(decoded), img)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros(4, np.uint8)])
def test_png_bytes_rejects_what_it_cannot_write(bad):
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(bad)


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
