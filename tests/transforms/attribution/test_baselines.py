"""Baselines and the per-image random streams (`baselines`): seeded per image and sample, deterministic
kinds, and the blur against scipy.

Old defaults passed explicitly: noise_stdev 0.15 for the gaussian kind."""
import numpy as np
import pytest

from igaudit.transforms.attribution.baselines import BASELINES, gaussian_blur, image_rng, make_baselines, seed_from_id
from igaudit.transforms.attribution.choices import RANDOM_BASELINES
from igaudit.transforms.attribution.expected_gradients import draws
from tests.transforms.attribution.helpers import SHAPE

NOISE_STDEV = 0.15     # the old default of the gaussian baseline


def test_random_baselines_are_per_image_and_per_sample():
    rng = np.random.default_rng(9)
    x = rng.uniform(size=(3,) + SHAPE).astype(np.float32)
    ids = ["a", "b", "c"]
    for kind in RANDOM_BASELINES:
        b = make_baselines(kind, x, ids, samples=3, noise_stdev=NOISE_STDEV)
        assert b.shape == (3, 3) + SHAPE and b.dtype == np.float32
        assert b.min() >= 0 and b.max() <= 1
        np.testing.assert_array_equal(make_baselines(kind, x[::-1], ids[::-1], samples=3,
                                                     noise_stdev=NOISE_STDEV)[:, ::-1], b)
        np.testing.assert_array_equal(make_baselines(kind, x[1:2], ids[1:2], samples=2,
                                                     noise_stdev=NOISE_STDEV)[:, 0], b[:2, 1])
        assert not np.array_equal(b[0], b[1]) and not np.array_equal(b[0, 0], b[0, 1])
    # uniform sample 0 is the stream igaudit's first uniform baseline used: old runs stay comparable
    np.testing.assert_array_equal(make_baselines("uniform", x, ids)[0, 1],
                                  np.random.default_rng(seed_from_id("b")).uniform(size=SHAPE).astype(np.float32))
    # streams differ per purpose
    assert image_rng("a", "gaussian", 0).normal() != image_rng("a", "smoothing", 0).normal()
    index, alpha = draws("a", 50, 7)            # expected gradients' draws come from the same streams
    assert set(index) == set(range(7)) and 0 <= alpha.min() and alpha.max() < 1


def test_deterministic_baselines():
    rng = np.random.default_rng(10)
    x = rng.uniform(size=(2,) + SHAPE).astype(np.float32)
    ids = ["a", "b"]
    assert np.all(make_baselines("black", x, ids, samples=4) == 0)
    assert make_baselines("black", x, ids, samples=4).shape == (1, 2) + SHAPE   # identical samples: one
    assert np.all(make_baselines("white", x, ids) == 1)
    mean = x.mean(0)
    np.testing.assert_array_equal(make_baselines("mean", x, ids, mean_image=mean)[0], np.stack([mean, mean]))
    np.testing.assert_array_equal(make_baselines("image", x, ids, baseline_image=x[1])[0, 0], x[1])
    with pytest.raises(ValueError, match="needs mean_image"):
        make_baselines("mean", x, ids)
    with pytest.raises(ValueError, match="has shape \\(4, 4, 3\\)"):
        make_baselines("image", x, ids, baseline_image=np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="unknown baseline 'grey'"):
        make_baselines("grey", x, ids)
    assert set(BASELINES) >= {"black", "white", "uniform", "gaussian", "blur", "mean", "image"}


def test_blur_baseline_is_a_gaussian_blur():
    ndimage = pytest.importorskip("scipy.ndimage")     # installed with the saliency test extra
    rng = np.random.default_rng(11)
    x = rng.uniform(size=(2, 20, 24, 3)).astype(np.float32)
    for sigma in (0.7, 2.0, 4.0):
        ours = make_baselines("blur", x, ["a", "b"], blur_sigma=sigma)[0]
        theirs = ndimage.gaussian_filter(x.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect")
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    flat = np.full((1, 9, 9, 3), 0.4, np.float32)
    np.testing.assert_allclose(gaussian_blur(flat, 10.0), flat, atol=1e-6)   # edges mirror, no dark rim
    np.testing.assert_array_equal(gaussian_blur(x, 0.0), x)


@pytest.mark.parametrize("kind, needs", [("blur", "blur_sigma"), ("gaussian", "noise_stdev")])
def test_blur_and_gaussian_need_their_spread(kind, needs):
    """New with issue 13: no default blur sigma or noise spread (the config passes its own)."""
    x = np.zeros((1,) + SHAPE, np.float32)
    with pytest.raises(ValueError, match=f"baseline '{kind}' needs {needs}"):
        make_baselines(kind, x, ["a"])
