"""analysis/skew/edits.py: grid cells as pixel boxes, filling a box from its surroundings, remove / keep_only /
transplant, control regions that never overlap the region, tint, outside_mask and fill_mask, on analytic images."""
import numpy as np
import pytest

from igaudit.transforms.analysis.regions import cells_mask
from igaudit.transforms.analysis.skew import edits
from igaudit.transforms.analysis.summarize import pool_grid


def plane(n=2, h=12, w=10, c=3, a=0.03, b=0.05, base=0.1):
    """n images of the plane a*y + b*x + base (each channel offset by 0.1 per channel index)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = (a * yy + b * xx + base)[..., None] + 0.1 * np.arange(c)
    return np.repeat(img[None], n, 0).astype(np.float32)


def box_mask(boxes, h, w):
    """(the union of the boxes as a pixel mask, the sum of their areas)."""
    m = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = True
    return m, sum(edits.box_area(b) for b in boxes)


# --- cells and boxes ------------------------------------------------------------

def test_cell_edges_are_the_ceil_starts_and_cover_the_side():
    assert edits.cell_edges(4, 10).tolist() == [0, 3, 5, 8, 10]
    assert edits.cell_edges(3, 9).tolist() == [0, 3, 6, 9]
    e = edits.cell_edges(16, 37)
    assert e[0] == 0 and e[-1] == 37 and np.all(np.diff(e) >= 2)


@pytest.mark.parametrize("h, w, grid", [(10, 8, 4), (37, 29, 16), (16, 16, 16)])
def test_a_cells_box_is_what_pool_grid_pools_into_that_cell(h, w, grid):
    """Pooling an image that is 1 on a cell's pixel box gives exactly that cell, as summarize.pool_grid cuts it."""
    for cell in [(0, 0), (grid - 1, grid - 1), (grid // 2, 1)]:
        y0, y1, x0, x1 = edits.cells_to_box((cell[0], cell[0] + 1, cell[1], cell[1] + 1), grid, h, w)
        m = np.zeros((h, w))
        m[y0:y1, x0:x1] = 1.0
        pooled = pool_grid(m, grid)
        expected = np.zeros((grid, grid))
        expected[cell] = m.sum()
        np.testing.assert_array_equal(pooled, expected)


def test_cells_to_box_of_a_block():
    # rows of 10 pixels cut [0, 3, 5, 8, 10], columns of 8 cut [0, 2, 4, 6, 8]
    assert edits.cells_to_box((1, 3, 0, 2), 4, 10, 8) == (3, 8, 0, 4)
    assert edits.cells_to_boxes((1, 3, 0, 2), 4, 10, 8) == [(3, 8, 0, 4)]
    assert edits.cells_to_box((0, 4, 0, 4), 4, 10, 8) == (0, 10, 0, 8)


def test_a_frame_is_four_disjoint_sides_covering_exactly_its_cells():
    h = w = 32
    boxes = edits.cells_to_boxes((0, 16, 0, 16, 2), 16, h, w)
    assert boxes == [(0, 4, 0, 32), (28, 32, 0, 32), (4, 28, 0, 4), (4, 28, 28, 32)]
    m, area = box_mask(boxes, h, w)
    assert area == m.sum()                                              # no pixel in two sides
    expected = np.kron(cells_mask((0, 16, 0, 16, 2), 16, 16), np.ones((2, 2), bool))
    np.testing.assert_array_equal(m, expected)


def test_box_area_is_zero_for_empty_or_inverted_boxes():
    assert edits.box_area((2, 5, 1, 4)) == 9
    assert edits.box_area((3, 3, 0, 10)) == 0
    assert edits.box_area((5, 2, 0, 4)) == 0


# --- filling from the surroundings ----------------------------------------------

def test_a_constant_image_stays_constant():
    img = np.full((2, 9, 9, 3), 0.4, np.float32)
    img[:, 3:6, 2:7] = 0.95                                             # what the box held: gone
    out = edits.fill_from_surroundings(img, (3, 6, 2, 7))
    np.testing.assert_allclose(out, 0.4, atol=1e-6)


def test_an_interior_box_on_a_plane_is_the_plane_whatever_it_held():
    """Both blends are linear between the pixels either side, so a plane is rebuilt exactly."""
    expected = plane()
    noisy = expected.copy()
    noisy[:, 4:9, 3:7] = np.random.default_rng(0).uniform(size=(2, 5, 4, 3))
    out = edits.fill_from_surroundings(noisy, (4, 9, 3, 7))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out.dtype == np.float32


def test_a_side_on_the_image_edge_is_left_out_and_one_side_is_carried_across():
    rng = np.random.default_rng(1)
    img = rng.uniform(size=(1, 8, 6, 3)).astype(np.float32)
    out = edits.fill_from_surroundings(img, (0, 3, 0, 6))               # the top 3 rows, full width
    np.testing.assert_allclose(out[:, :3], np.repeat(img[:, 3:4], 3, 1), atol=1e-6)   # row 3, carried up
    np.testing.assert_array_equal(out[:, 3:], img[:, 3:])
    # a corner box on an image of x / 10: the top and left sides are left out; the row below is carried up (x / 10)
    # and the column to the right carried left (0.2); the two averaged
    xs = np.broadcast_to(np.arange(6, dtype=np.float32)[None, None, :, None] / 10, (1, 8, 6, 3))
    marked = xs.copy()
    marked[:, :3, :2] = 0.9
    corner = edits.fill_from_surroundings(marked, (0, 3, 0, 2))
    np.testing.assert_allclose(corner[0, :3, :2, 0], [[0.1, 0.15]] * 3, atol=1e-6)
    np.testing.assert_array_equal(corner[:, :, 2:], xs[:, :, 2:])


def test_the_whole_image_becomes_its_mean_colour_and_an_empty_box_changes_nothing():
    img = np.random.default_rng(2).uniform(size=(2, 5, 4, 3)).astype(np.float32)
    whole = edits.fill_from_surroundings(img, (0, 5, 0, 4))
    np.testing.assert_allclose(whole, np.broadcast_to(img.mean((1, 2), keepdims=True), img.shape), atol=1e-6)
    same = edits.fill_from_surroundings(img, (2, 2, 0, 4))
    np.testing.assert_array_equal(same, img)
    assert same is not img


def test_remove_fills_each_box_in_turn_and_leaves_the_input_alone():
    """Two blocks on a constant photo, a mark in the first: the second is filled from surroundings that hold the
    first's fill, not the mark (its top side is the first's last row)."""
    img = np.full((2, 12, 12, 3), 0.25, np.float32)
    boxes = [(2, 5, 2, 5), (5, 8, 2, 5)]
    img[:, 2:5, 2:5] = np.random.default_rng(3).uniform(size=(2, 3, 3, 3))
    before = img.copy()
    out = edits.remove(img, boxes)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)
    np.testing.assert_array_equal(img, before)
    np.testing.assert_array_equal(edits.remove(img, []), img)


def test_removing_a_drawn_frame_leaves_none_of_its_colour():
    """A constant photo under a drawn frame: the sides are filled "from the image inside them"."""
    img = np.full((1, 16, 16, 3), 0.25, np.float32)
    boxes = edits.cells_to_boxes((0, 8, 0, 8, 1), 8, 16, 16)
    m, _ = box_mask(boxes, 16, 16)
    img[:, m] = 0.9
    np.testing.assert_allclose(edits.remove(img, boxes), 0.25, atol=1e-6)


# --- keep_only, transplant, tint -------------------------------------------------

def test_keep_only_fills_everything_but_the_boxes_with_the_colour():
    img = plane(n=2, h=6, w=6)
    boxes = [(0, 2, 0, 2), (4, 6, 3, 6)]
    out = edits.keep_only(img, boxes, np.array([0.1, 0.5, 0.9]))
    m, _ = box_mask(boxes, 6, 6)
    np.testing.assert_array_equal(out[:, m], img[:, m])
    np.testing.assert_allclose(out[:, ~m], np.broadcast_to([0.1, 0.5, 0.9], out[:, ~m].shape))
    assert out.dtype == np.float32


def test_transplant_takes_recipient_i_from_donor_i_mod_donors():
    recipients = np.zeros((3, 6, 6, 3), np.float32)
    donors = np.stack([np.full((6, 6, 3), 0.3, np.float32), np.full((6, 6, 3), 0.7, np.float32)])
    out = edits.transplant(recipients, donors, [(1, 3, 2, 5)])
    assert [float(out[i, 1, 2, 0]) for i in range(3)] == pytest.approx([0.3, 0.7, 0.3])
    inside = np.zeros((6, 6), bool)
    inside[1:3, 2:5] = True
    assert np.all(out[:, ~inside] == 0) and np.all(out[:, inside] > 0)
    assert np.all(recipients == 0)                                      # a copy


def test_scale_channels_multiplies_per_channel_and_clips():
    img = np.array([[[[0.9, 0.1, 0.5]]]], np.float32)
    np.testing.assert_allclose(edits.scale_channels(img, [1.25, 0.5, 4.0]), [[[[1.0, 0.05, 1.0]]]], atol=1e-6)


# --- controls ----------------------------------------------------------------

def test_control_boxes_of_a_small_image_are_every_free_place():
    """A 2x2 box in the corner of a 4x4 image has five equal boxes beside it, none overlapping it."""
    assert edits.control_boxes((0, 2, 0, 2), 4, 4, 10) == [(0, 2, 2, 4), (1, 3, 2, 4), (2, 4, 0, 2),
                                                           (2, 4, 1, 3), (2, 4, 2, 4)]
    assert edits.control_boxes((0, 4, 0, 3), 4, 4, 5) == []               # too big to have any


@pytest.mark.parametrize("box", [(0, 4, 0, 4), (10, 16, 12, 20), (28, 32, 0, 32)])
def test_control_boxes_never_overlap_the_box_and_are_seeded(box):
    h, w = 32, 32
    region, _ = box_mask([box], h, w)
    picks = edits.control_boxes(box, h, w, 6, seed=7)
    assert 0 < len(picks) <= 6 and len(set(picks)) == len(picks)
    for b in picks:
        m, _ = box_mask([b], h, w)
        assert (b[1] - b[0], b[3] - b[2]) == (box[1] - box[0], box[3] - box[2])
        assert 0 <= b[0] and b[1] <= h and 0 <= b[2] and b[3] <= w
        assert not (m & region).any(), (box, b)
    assert edits.control_boxes(box, h, w, 6, seed=7) == picks
    assert edits.control_regions([box], h, w, 6, seed=7) == [[b] for b in picks]


def test_frame_controls_are_rings_of_the_same_depth_further_in():
    h = w = 32
    frame = edits.cells_to_boxes((0, 16, 0, 16, 1), 16, h, w)          # 2 pixels deep
    outer, _ = box_mask(frame, h, w)
    rings = edits.control_regions(frame, h, w, 4, seed=0)
    assert len(rings) == 4
    insets = [ring[0][0] for ring in rings]
    assert insets == sorted(set(insets)) and all(2 <= i <= 12 for i in insets)
    for ring in rings:
        m, area = box_mask(ring, h, w)
        assert area == m.sum() and not (m & outer).any()
        assert all(y1 - y0 == 2 for y0, y1, _, _ in ring[:2]) and all(x1 - x0 == 2 for _, _, x0, x1 in ring[2:])
        np.testing.assert_array_equal(m, m[::-1, ::-1])                 # a centred ring
    assert edits.control_regions(frame, h, w, 4, seed=0) == rings
    assert len(edits.control_regions(frame, h, w, 50, seed=0)) == 11   # insets 2..12: all of them
    small = edits.cells_to_boxes((0, 4, 0, 4, 1), 4, 8, 8)             # 2 deep in 8 pixels: no room inside
    assert edits.control_regions(small, 8, 8, 4) == []


# --- object boxes ------------------------------------------------------------------

def test_outside_mask_counts_a_pixel_inside_when_its_centre_is():
    m = edits.outside_mask(6, 5, (1, 2, 3, 4))                          # (x0, y0, x1, y1)
    inside = np.zeros((6, 5), bool)
    inside[2:4, 1:3] = True                                             # rows 2-3 (centres 2.5, 3.5), cols 1-2
    np.testing.assert_array_equal(m, ~inside)
    edge = edits.outside_mask(4, 4, (0.5, 0.5, 1.5, 1.5))              # centres on the box's edge: inside
    assert (~edge).sum() == 4 and not edge[:2, :2].any()


def test_fill_mask_sets_only_each_images_masked_pixels():
    img = np.zeros((2, 3, 3, 3), np.float32)
    masks = np.zeros((2, 3, 3), bool)
    masks[0, 0, 0] = masks[1, 2, 1] = True
    out = edits.fill_mask(img, masks, [0.2, 0.4, 0.6])
    np.testing.assert_allclose(out[0, 0, 0], [0.2, 0.4, 0.6])
    np.testing.assert_allclose(out[1, 2, 1], [0.2, 0.4, 0.6])
    assert np.count_nonzero(out.any(-1)) == 2 and not img.any()
