"""transforms/analysis/summarize.py: per-image statistics checked against cases with known answers."""
import numpy as np
import pytest

from igaudit.transforms.analysis.summarize import border_mask, box_stats, pool_grid, summarize_attribution


def single_pixel(h, w, c, y, x, ch=0, value=1.0):
    a = np.zeros((h, w, c), np.float32)
    a[y, x, ch] = value
    return a


def assert_stats_finite(s):
    for v in (s.border_mass, s.concentration, s.entropy, s.positive_share, s.abs_sum):
        assert np.isfinite(v)
    assert np.all(np.isfinite(s.grid)) and np.all(np.isfinite(s.channel_shares))


# -- all the mass in one pixel ------------------------------------------------------------------------
@pytest.mark.parametrize("y, x, cell", [
    (0, 0, (0, 0)),
    (19, 19, (3, 3)),
    (7, 12, (1, 2)),     # 20 / 4 = 5 pixels per cell: row 7 -> 1, col 12 -> 2
    (10, 4, (2, 0)),
])
def test_single_pixel_mass(y, x, cell):
    s = summarize_attribution(single_pixel(20, 20, 3, y, x, ch=1, value=-2.5), grid=4, border=0.1)
    expected = np.zeros((4, 4))
    expected[cell] = 1.0
    np.testing.assert_array_equal(s.grid, expected)
    assert s.concentration == pytest.approx(1.0)
    assert s.entropy == pytest.approx(0.0, abs=1e-12)
    assert s.abs_sum == pytest.approx(2.5)
    assert s.positive_share == pytest.approx(0.0)   # all the mass is negative
    np.testing.assert_allclose(s.channel_shares, [0.0, 1.0, 0.0])
    in_border = min(y, x, 19 - y, 19 - x) < 2      # border=0.1 of 20 px = 2 px band
    assert s.border_mass == pytest.approx(1.0 if in_border else 0.0)


def test_grid_shape_and_sum():
    rng = np.random.default_rng(0)
    s = summarize_attribution(rng.normal(size=(33, 47, 3)), grid=16, border=0.1)
    assert s.grid.shape == (16, 16)
    assert s.grid.sum() == pytest.approx(1.0)
    assert np.all(s.grid >= 0)
    assert 0.0 <= s.entropy <= 1.0 and 0.0 <= s.border_mass <= 1.0
    assert 0.05 <= s.concentration <= 1.0


# -- uniform attribution ------------------------------------------------------------------------------
def test_uniform_attribution():
    s = summarize_attribution(np.full((20, 20, 3), 0.3, np.float32), grid=4, border=0.1)
    np.testing.assert_allclose(s.grid, np.full((4, 4), 1 / 16))
    assert s.entropy == pytest.approx(1.0)
    assert s.border_mass == pytest.approx(1 - (16 * 16) / 400)
    assert s.concentration == pytest.approx(20 / 400)   # top 5% of 400 pixels is 20 pixels
    assert s.positive_share == pytest.approx(1.0)
    np.testing.assert_allclose(s.channel_shares, [1 / 3] * 3)
    assert s.abs_sum == pytest.approx(0.3 * 1200, rel=1e-6)


@pytest.mark.parametrize("h, w, border", [(20, 20, 0.1), (30, 50, 0.2), (64, 64, 0.25), (10, 10, 0.0)])
def test_uniform_border_mass_is_the_band_area(h, w, border):
    bh, bw = round(border * h), round(border * w)
    s = summarize_attribution(np.ones((h, w, 1)), grid=2, border=border)
    assert s.border_mass == pytest.approx(1 - (h - 2 * bh) * (w - 2 * bw) / (h * w))


def test_border_mask_band():
    m = border_mask(20, 20, 0.1)
    assert m.shape == (20, 20) and m.dtype == bool
    assert m.sum() == 400 - 256
    assert m[:2].all() and m[-2:].all() and m[:, :2].all() and m[:, -2:].all()
    assert not m[2:18, 2:18].any()
    assert not border_mask(8, 8, 0.0).any()
    assert border_mask(8, 8, 0.5).all()


def test_mass_only_in_border_or_only_inside():
    a = np.zeros((20, 20, 3))
    a[0, :, 0] = 1.0
    assert summarize_attribution(a, grid=4, border=0.1).border_mass == pytest.approx(1.0)
    b = np.zeros((20, 20, 3))
    b[5:15, 5:15, :] = 1.0
    assert summarize_attribution(b, grid=4, border=0.1).border_mass == pytest.approx(0.0)


# -- pooling ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h, w, g", [(20, 20, 4), (17, 23, 4), (31, 7, 5), (5, 9, 16), (64, 48, 16)])
def test_pooling_preserves_total(h, w, g):
    rng = np.random.default_rng(h * w + g)
    m = rng.random((h, w))
    pooled = pool_grid(m, g)
    assert pooled.shape == (g, g)
    assert pooled.sum() == pytest.approx(m.sum())


def test_pooling_exact_multiple_is_block_sum():
    m = np.arange(64, dtype=np.float64).reshape(8, 8)
    expected = m.reshape(4, 2, 4, 2).sum(axis=(1, 3))
    np.testing.assert_allclose(pool_grid(m, 4), expected)


def test_pooling_uneven_cells_are_contiguous_and_near_equal():
    h, w, g = 17, 23, 4
    rows = pool_grid(np.ones((h, 1)), g)[:, 0]          # pixels per cell row
    cols = pool_grid(np.ones((1, w)), g)[0, :]          # pixels per cell column
    assert rows.sum() == h and cols.sum() == w
    assert rows.max() - rows.min() <= 1 and cols.max() - cols.min() <= 1
    # each pixel lands in the cell its relative position says: the last row/col in the last cell
    last = np.zeros((h, w))
    last[-1, -1] = 1.0
    assert pool_grid(last, g)[-1, -1] == 1.0
    first = np.zeros((h, w))
    first[0, 0] = 1.0
    assert pool_grid(first, g)[0, 0] == 1.0


@pytest.mark.parametrize("h, w, g", [(64, 64, 16), (17, 23, 4), (31, 7, 5), (5, 9, 16), (16, 3, 4), (224, 224, 16)])
def test_pooling_puts_each_pixel_in_the_cell_of_its_relative_position(h, w, g):
    # the definition, one pixel at a time: pixel (r, c) belongs to cell ((r * g) // h, (c * g) // w)
    m = np.random.default_rng(h + w + g).random((h, w))
    expected = np.zeros((g, g))
    for r in range(h):
        for c in range(w):
            expected[(r * g) // h, (c * g) // w] += m[r, c]
    np.testing.assert_allclose(pool_grid(m, g), expected, rtol=1e-12)


def test_summary_grid_uneven_is_normalized():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(17, 23, 3))
    s = summarize_attribution(a, grid=4, border=0.1)
    mag = np.abs(a).sum(-1)
    np.testing.assert_allclose(s.grid, pool_grid(mag, 4) / mag.sum())
    assert s.grid.sum() == pytest.approx(1.0)


def test_half_and_half_entropy():
    a = np.zeros((8, 8, 1))
    a[:4, :4] = 1.0          # cell (0, 0) of a 2 x 2 grid
    a[4:, 4:] = -1.0         # cell (1, 1)
    s = summarize_attribution(a, grid=2, border=0.0)
    np.testing.assert_allclose(s.grid, [[0.5, 0], [0, 0.5]])
    assert s.entropy == pytest.approx(np.log(2) / np.log(4))   # = 0.5
    assert s.positive_share == pytest.approx(0.5)
    assert s.border_mass == 0.0


# -- signs and channels -------------------------------------------------------------------------------
def test_positive_share():
    a = np.zeros((10, 10, 3))
    a[0, 0, 0] = 3.0
    a[5, 5, 1] = -1.0
    s = summarize_attribution(a, grid=2, border=0.1)
    assert s.positive_share == pytest.approx(0.75)
    assert s.abs_sum == pytest.approx(4.0)
    # magnitudes, not signed sums, go into the grid: cancelling signs do not vanish
    b = np.zeros((10, 10, 3))
    b[2, 2, 0] = 1.0
    b[2, 2, 1] = -1.0
    sb = summarize_attribution(b, grid=2, border=0.1)
    assert sb.grid[0, 0] == pytest.approx(1.0)
    assert sb.abs_sum == pytest.approx(2.0)
    assert sb.positive_share == pytest.approx(0.5)


def test_channel_shares():
    a = np.zeros((6, 6, 3))
    a[..., 0] = 1.0
    a[..., 1] = -2.0
    a[..., 2] = 0.0
    s = summarize_attribution(a, grid=2, border=0.1)
    np.testing.assert_allclose(s.channel_shares, [1 / 3, 2 / 3, 0.0])
    assert s.channel_shares.sum() == pytest.approx(1.0)
    assert s.positive_share == pytest.approx(1 / 3)


def test_concentration_top_five_percent():
    a = np.zeros((20, 20, 1))          # 400 pixels -> top 20
    a.reshape(-1)[:20] = 4.0          # 80 of the mass
    a.reshape(-1)[20:] = 20 / 380     # 20 of the mass spread on the rest
    s = summarize_attribution(a, grid=4, border=0.1)
    assert s.concentration == pytest.approx(0.8)


# -- degenerate inputs --------------------------------------------------------------------------------
def test_zero_attribution_has_no_nans():
    s = summarize_attribution(np.zeros((20, 20, 3), np.float32), grid=4, border=0.1)
    assert_stats_finite(s)
    np.testing.assert_allclose(s.grid, np.full((4, 4), 1 / 16))
    assert s.grid.sum() == pytest.approx(1.0)
    assert s.entropy == pytest.approx(1.0)
    assert s.abs_sum == 0.0
    assert s.positive_share == pytest.approx(0.5)
    np.testing.assert_allclose(s.channel_shares, [1 / 3] * 3)
    assert s.border_mass == pytest.approx(1 - 256 / 400)
    assert 0.0 <= s.concentration <= 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_attribution_has_no_nans(bad):
    a = np.ones((10, 10, 3))
    a[3, 3, 0] = bad
    s = summarize_attribution(a, grid=2, border=0.1)
    assert_stats_finite(s)
    assert s.grid.sum() == pytest.approx(1.0)


def test_does_not_modify_input_and_accepts_float32():
    a = np.random.default_rng(2).normal(size=(12, 12, 3)).astype(np.float32)
    copy = a.copy()
    s32 = summarize_attribution(a, grid=3, border=0.1)
    s64 = summarize_attribution(a.astype(np.float64), grid=3, border=0.1)
    np.testing.assert_array_equal(a, copy)
    np.testing.assert_allclose(s32.grid, s64.grid)
    assert s32.entropy == pytest.approx(s64.entropy)


# -- object boxes -------------------------------------------------------------------------------------
def test_box_stats_share_and_pointing_game():
    a = np.zeros((10, 10, 3))
    a[2, 3, 0] = 3.0      # the peak, inside the box
    a[8, 8, 1] = -1.0     # outside
    share, hit = box_stats(a, (2, 1, 5, 4))
    assert share == pytest.approx(0.75) and hit == 1.0
    share, hit = box_stats(a, (6, 6, 10, 10))
    assert share == pytest.approx(0.25) and hit == 0.0
