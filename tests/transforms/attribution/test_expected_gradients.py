"""attribution/expected_gradients.py: draws seeded by image id, not_itself, known answers on linear and square models."""
import numpy as np
import pytest

from igaudit.transforms.attribution.baselines import image_rng
from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.expected_gradients import draws, expected_gradients, not_itself
from tests.transforms.attribution.helpers import power_model

SHAPE = (2, 2, 3)
D = int(np.prod(SHAPE))


@pytest.fixture(scope="module")
def linear():
    """Flatten + Dense(2) with constant weights, explained by its logit: F_t(x) = w_t . x + b_t."""
    import keras
    w = np.random.default_rng(5).normal(size=(D, 2)).astype(np.float32)
    b = np.array([0.5, -1.0], np.float32)
    dense = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant(w),
                               bias_initializer=keras.initializers.Constant(b))
    engine = GradientEngine(keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), dense]), SHAPE,
                            output="logits", score="logit", chunk_size=8)
    return engine, w, b


def _pixels(n, seed):
    return np.random.default_rng(seed).uniform(size=(n,) + SHAPE).astype(np.float32)


def test_draws_are_a_function_of_the_image_id_and_sample_number():
    """Same id: same draws; sample s is its own stream, so more samples extend the draws, never change them."""
    index, alpha = draws("cat/1.png", 6, 5)
    again = draws("cat/1.png", 6, 5)
    np.testing.assert_array_equal(index, again[0])
    np.testing.assert_array_equal(alpha, again[1])
    fewer = draws("cat/1.png", 2, 5)
    np.testing.assert_array_equal(fewer[0], index[:2])
    np.testing.assert_array_equal(fewer[1], alpha[:2])
    other = draws("cat/2.png", 6, 5)
    assert not np.array_equal(other[1], alpha)
    rng = image_rng("cat/1.png", "expected_gradients", 3)          # draw 3 by hand
    assert index[3] == rng.integers(5) and alpha[3] == rng.uniform()


def test_draws_pick_among_the_allowed_indices_only():
    allowed = np.array([4, 9])
    for i in range(30):
        index, alpha = draws(f"img{i}", 4, 10, allowed)
        assert set(index) <= {4, 9}
        assert index.dtype == np.int64 and alpha.dtype == np.float64
        assert ((0 <= alpha) & (alpha < 1)).all()


def test_not_itself_drops_every_copy_of_the_image():
    refs = _pixels(4, seed=1)
    refs[3] = refs[0]                                               # the image twice among the references
    np.testing.assert_array_equal(not_itself(refs[0], refs), [1, 2])
    np.testing.assert_array_equal(not_itself(_pixels(1, seed=2)[0], refs), [0, 1, 2, 3])    # not there: all
    np.testing.assert_array_equal(not_itself(refs[0], refs[[0, 3]]), [0, 1])                # only copies: kept


def test_linear_model_gets_weight_times_input_minus_mean_drawn_reference(linear):
    """The gradient of a linear logit is w_t everywhere, so EG = w_t * (x - mean of the drawn references)
    and completeness holds per image: sum(EG) = F(x) - mean F(drawn references)."""
    engine, w, b = linear
    x, refs = _pixels(3, seed=3), _pixels(4, seed=4)
    x[2] = refs[1]                                                  # one image is a reference: never drawn
    ids, targets = ["a", "b", "c"], np.array([0, 1, 1])
    r = expected_gradients(engine, x, refs, ids, targets, samples=5)
    for i in range(3):
        index, _ = draws(ids[i], 5, 4, not_itself(x[i], refs))
        mean_ref = refs[index].astype(np.float64).mean(axis=0)
        wt = w[:, targets[i]].reshape(SHAPE)
        np.testing.assert_allclose(r.attributions[i], wt * (x[i] - mean_ref), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r.score_baseline[i], mean_ref.reshape(-1) @ w[:, targets[i]] + b[targets[i]],
                                   rtol=1e-5)
    assert 1 not in draws("c", 5, 4, not_itself(x[2], refs))[0]
    np.testing.assert_allclose(r.completeness_gap, 0.0, atol=1e-5)
    np.testing.assert_array_equal(r.gradient_samples, [5, 5, 5])


def test_completeness_in_expectation_over_many_draws(linear):
    """With many draws the mean drawn reference nears the mean reference: EG -> w_t * (x - E[r])."""
    engine, w, _ = linear
    x, refs = _pixels(1, seed=6), _pixels(3, seed=7)
    r = expected_gradients(engine, x, refs, ["many"], np.array([0]), samples=600)
    expected = w[:, 0].reshape(SHAPE) * (x[0] - refs.mean(axis=0))
    spread = np.abs(w[:, 0].reshape(SHAPE) * refs.std(axis=0)).max()
    np.testing.assert_allclose(r.attributions[0], expected, atol=4 * spread / np.sqrt(600))


def test_each_draw_takes_its_gradient_at_its_own_alpha():
    """F = sum a x^2: the gradient at r + alpha (x - r) is 2 a (r + alpha (x - r)), so the draws' alphas
    show in the answer (a linear model cannot tell)."""
    a = np.random.default_rng(8).normal(size=D)
    engine = GradientEngine(power_model(a, 2), SHAPE, output="logits", score="logit", chunk_size=8)
    x, refs = _pixels(2, seed=9), _pixels(3, seed=10)
    ids = ["p", "q"]
    r = expected_gradients(engine, x, refs, ids, np.zeros(2, np.int64), samples=4)
    for i in range(2):
        index, alpha = draws(ids[i], 4, 3, not_itself(x[i], refs))
        terms = [(x[i] - refs[k]) * 2 * a.reshape(SHAPE) * (refs[k] + al * (x[i] - refs[k]))
                 for k, al in zip(index, alpha)]
        np.testing.assert_allclose(r.attributions[i], np.mean(terms, axis=0), rtol=1e-4, atol=1e-6)


def test_an_images_attribution_follows_its_id_not_its_position(linear):
    engine, _, _ = linear
    x, refs = _pixels(2, seed=11), _pixels(5, seed=12)
    forward = expected_gradients(engine, x, refs, ["u", "v"], np.array([0, 1]), samples=3)
    backward = expected_gradients(engine, x[::-1], refs, ["v", "u"], np.array([1, 0]), samples=3)
    np.testing.assert_allclose(backward.attributions[::-1], forward.attributions, rtol=1e-6)


@pytest.mark.parametrize("refs, ids, samples, message", [
    (np.zeros((0,) + SHAPE, np.float32), ["a"], 2, "at least one reference"),
    (np.zeros((2,) + SHAPE, np.float32), ["a", "b"], 2, "one image id per image"),
    (np.zeros((2,) + SHAPE, np.float32), None, 2, "one image id per image"),
    (np.zeros((2,) + SHAPE, np.float32), ["a"], 0, "samples must be >= 1"),
])
def test_bad_calls_are_refused(linear, refs, ids, samples, message):
    engine, _, _ = linear
    with pytest.raises(ValueError, match=message):
        expected_gradients(engine, _pixels(1, seed=13), refs, ids, samples=samples)
