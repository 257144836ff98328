"""attribution/gradient_x_input.py: on a linear Keras model, gradient x input is w * x exactly; targets, smoothing."""
import numpy as np
import pytest

from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.gradient_x_input import gradient_x_input
from igaudit.transforms.attribution.paths import smoothing_noise

SHAPE = (3, 3, 2)


@pytest.fixture(scope="module")
def linear():
    """A Flatten + Dense(2) model with set weights: logit t = w_t . x + b_t; returns (engine, W, b)."""
    import keras
    rng = np.random.default_rng(21)
    w = rng.normal(size=(int(np.prod(SHAPE)), 2)).astype(np.float32)
    b = np.array([0.3, -0.2], np.float32)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.set_weights([w, b])
    return GradientEngine(model, SHAPE, output="logits", score="logit", chunk_size=4), w, b


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(size=(n,) + SHAPE).astype(np.float32)


def test_gradient_x_input_of_a_linear_logit_is_weight_times_input(linear):
    engine, w, _ = linear
    x = _images(5)
    targets = np.array([0, 1, 1, 0, 1])
    r = gradient_x_input(engine, x, targets)
    expected = x * w[:, targets].T.reshape((5,) + SHAPE)
    np.testing.assert_array_equal(r.attributions, expected)
    assert r.attributions.dtype == np.float32


def test_targets_default_to_the_predicted_class(linear):
    """None and -1 both explain the predicted class."""
    engine, w, b = linear
    x = _images(4, seed=1)
    predicted = (x.reshape(4, -1) @ w + b).argmax(axis=1)
    by_default = gradient_x_input(engine, x)
    np.testing.assert_array_equal(by_default.targets, predicted)
    np.testing.assert_array_equal(gradient_x_input(engine, x, np.full(4, -1)).attributions, by_default.attributions)
    np.testing.assert_array_equal(by_default.attributions, x * w[:, predicted].T.reshape((4,) + SHAPE))


def test_no_completeness_identity_and_one_gradient_per_image(linear):
    engine, w, b = linear
    x = _images(3, seed=2)
    r = gradient_x_input(engine, x, np.zeros(3, np.int64))
    assert r.method == "gradient_x_input"
    assert np.isnan(r.completeness_gap).all()
    np.testing.assert_array_equal(r.gradient_samples, [1, 1, 1])
    np.testing.assert_allclose(r.score_input, x.reshape(3, -1) @ w[:, 0] + b[0], rtol=1e-5)


def test_smoothgrad_multiplies_each_noisy_input_by_its_gradient(linear):
    """The gradient of a linear logit is w wherever it is taken, so the mean of (x + noise_s) * w over the
    samples is (x + mean noise) * w, the noise drawn per image id."""
    engine, w, _ = linear
    x = _images(2, seed=3)
    ids = ["left", "right"]
    r = gradient_x_input(engine, x, np.array([1, 0]), image_ids=ids, smoothing="smoothgrad", samples=3, stdev=0.2)
    for i, t in enumerate([1, 0]):
        noise = np.mean([smoothing_noise(ids[i], s, SHAPE, 0.2) for s in range(3)], axis=0)
        np.testing.assert_allclose(r.attributions[i], (x[i] + noise) * w[:, t].reshape(SHAPE), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r.gradient_samples, [3, 3])
