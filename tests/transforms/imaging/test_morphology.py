"""transforms/imaging/morphology.py: opening, closing, connected components and region outlines."""
import numpy as np
import pytest

from igaudit.transforms.imaging import morphology
from igaudit.transforms.imaging.morphology import label_components
from tests.transforms.imaging.test_render_modes import blob_scene


def test_outline_width():
    _, attribution, disk = blob_scene()
    thin = morphology.outline_pixels(attribution.sum(-1), disk.mean(), width=1)
    thick = morphology.outline_pixels(attribution.sum(-1), disk.mean(), width=2)
    assert thick.sum() > thin.sum() and np.all(thick[thin])



# -- morphology and labelling (cross-checked against scipy when it is installed) ----------------------
def test_opening_removes_specks_and_closing_fills_pinholes():
    m = np.zeros((20, 20), bool)
    m[4:14, 4:14] = True
    m[8, 8] = False          # pinhole
    m[17, 17] = True         # speck
    cleaned = morphology.binary_close(morphology.binary_open(m))
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
    np.testing.assert_array_equal(morphology.binary_open(m)[2:-2, 2:-2],
                                  ndimage.binary_opening(m, np.ones((3, 3)))[2:-2, 2:-2])
    np.testing.assert_array_equal(morphology.binary_close(m)[2:-2, 2:-2],
                                  ndimage.binary_closing(m, np.ones((3, 3)))[2:-2, 2:-2])
