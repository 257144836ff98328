"""transforms/imaging/colormaps.py: the colour tables (inferno, viridis, the diverging maps) and looking them up."""
import numpy as np
import pytest

from igaudit.transforms.imaging.colormaps import INFERNO, PINK_GREEN, RED_GREEN, VIRIDIS, heatmap


def luminance(rgb):
    rgb = np.asarray(rgb, np.float64)
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


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
