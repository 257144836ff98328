"""transforms/analysis/regions.py: naming the region where a class's attribution exceeds the dataset's."""
import numpy as np
import pytest

from igaudit.transforms.analysis.regions import describe_region

G = 8


def corner_grid(share=0.7):
    g = np.full((G, G), (1 - share) / (G * G - 4))
    g[:2, :2] = share / 4
    return g.ravel()


def test_describe_region_corner_and_shares():
    c = corner_grid().reshape(G, G)
    d = np.full((G, G), 1 / 64)
    text = describe_region(c, d)
    assert "top-left 2x2 cells" in text and "70%" in text and "6%" in text
    assert describe_region(c.ravel(), d.ravel()) == text          # flattened grids too


@pytest.mark.parametrize("block, words", [
    ((slice(6, 8), slice(6, 8)), "bottom-right 2x2 cells"),
    ((slice(0, 8), slice(0, 4)), "left 4 columns"),
    ((slice(0, 1), slice(0, 8)), "top row"),
    ((slice(3, 5), slice(3, 5)), "centre 2x2 cells"),
    ((slice(0, 1), slice(3, 5)), "top edge"),
    ((slice(3, 5), slice(7, 8)), "right edge"),
])
def test_describe_region_names(block, words):
    c = np.full((G, G), 1e-4)
    c[block] = 1.0
    text = describe_region(c, np.ones((G, G)))
    assert words in text, text


def test_describe_region_ignores_weak_excess_around_a_peak():
    d = np.full((G, G), 1 / 64)
    c = np.full((G, G), 0.8 / 64)
    c[:2, 2:] = 1.2 / 64                    # slight excess along the rest of the top rows
    c[:2, :2] = 0.0
    c[:2, :2] = (1 - c.sum()) / 4            # the real hotspot
    text = describe_region(c, d)
    assert "top-left 2x2 cells" in text, text


def test_describe_region_no_excess():
    u = np.ones((G, G))
    assert "no region" in describe_region(u, u)
    wobble = u.copy()
    wobble[0, 0] += 0.1                     # 0.1 / 64.1: far below one point of excess
    assert "no region" in describe_region(wobble, u)


def test_a_frame_is_a_block_with_a_depth():
    from igaudit.transforms.analysis.regions import cells_mask, is_frame
    assert is_frame((0, 8, 0, 8, 1)) and not is_frame((0, 8, 0, 8)) and not is_frame(())
    assert cells_mask((0, 4, 0, 4, 1), 4, 4).sum() == 12 and cells_mask((0, 4, 0, 4), 4, 4).sum() == 16
