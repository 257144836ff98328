"""attribution/scoring.py: class values, target scores, score_of and probabilities for logits vs probabilities outputs."""
import numpy as np
import pytest
import tensorflow as tf

from igaudit.transforms.attribution.scoring import class_values, probabilities, score_of, target_scores

LOGITS = np.array([[0.0, np.log(3.0)], [2.0, 2.0], [np.log(2.0), 0.0]])
SOFTMAX = np.array([[0.25, 0.75], [0.5, 0.5], [2 / 3, 1 / 3]])     # softmax of LOGITS, by hand
PROBS = np.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])


@pytest.mark.parametrize("score, output, inputs, expected", [
    ("probability", "logits", LOGITS, SOFTMAX),
    ("probability", "probabilities", PROBS, PROBS),
    ("logit", "logits", LOGITS, LOGITS),
    ("logit", "probabilities", PROBS[:2], np.log(PROBS[:2])),
])
def test_class_values_known_answers(score, output, inputs, expected):
    """Each (score, output) pair turns outputs into the values the score reads."""
    values = class_values(tf.constant(inputs), score, output).numpy()
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_log_of_a_zero_probability_is_clamped_not_minus_infinity():
    """score: logit on a probabilities model takes log(max(p, 1e-30)): a zero probability stays finite."""
    for dtype in (tf.float64, tf.float32):
        values = class_values(tf.constant(PROBS[2:], dtype), "logit", "probabilities").numpy()
        assert values[0, 0] == 0.0
        np.testing.assert_allclose(values[0, 1], np.log(1e-30), rtol=1e-6)


def test_target_scores_pick_each_rows_own_target():
    """Row i reads column targets[i], for every (score, output) pair."""
    targets = tf.constant([1, 0, 0])
    np.testing.assert_allclose(target_scores(tf.constant(LOGITS), targets, "probability", "logits").numpy(),
                               [0.75, 0.5, 2 / 3], rtol=1e-12)
    np.testing.assert_allclose(target_scores(tf.constant(LOGITS), targets, "logit", "logits").numpy(),
                               [np.log(3.0), 2.0, np.log(2.0)], rtol=1e-12)
    np.testing.assert_allclose(target_scores(tf.constant(PROBS), targets, "probability", "probabilities").numpy(),
                               [0.9, 0.5, 1.0], rtol=1e-12)


def test_target_scores_keep_the_dtype_and_are_differentiable():
    """The traced loops take gradients of float32 scores: d softmax_t / d logits = p_t (e_t - p)."""
    x = tf.constant(LOGITS[:1], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        s = target_scores(x, tf.constant([1]), "probability", "logits")
    assert s.dtype == tf.float32
    np.testing.assert_allclose(tape.gradient(s, x).numpy(), [[-0.75 * 0.25, 0.75 * 0.25]], rtol=1e-6)


def test_score_of_runs_in_float64_on_float32_outputs():
    """Host-side scores are float64 even when the model gave float32; targets may be any int array."""
    f = score_of(LOGITS.astype(np.float32), np.array([1, 0, 0], np.int32), "probability", "logits")
    assert f.dtype == np.float64 and f.shape == (3,)
    np.testing.assert_allclose(f, [0.75, 0.5, 2 / 3], rtol=1e-6)
    # logits far apart: float64 keeps the tiny probability that float32 rounds to zero
    tiny = score_of(np.array([[0.0, 200.0]]), np.array([0]), "probability", "logits")
    np.testing.assert_allclose(tiny, [np.exp(-200.0)], rtol=1e-9)


def test_score_of_logit_on_probabilities_is_log_probability():
    f = score_of(PROBS, [1, 1, 0], "logit", "probabilities")
    np.testing.assert_allclose(f, np.log([0.9, 0.5, 1.0]), rtol=1e-12)


def test_probabilities_softmax_logits_and_pass_probabilities_through():
    p = probabilities(LOGITS.astype(np.float32), "logits")
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, SOFTMAX, rtol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(probabilities(PROBS, "probabilities"), PROBS)
    # softmax is shift-invariant and stable for large logits
    np.testing.assert_allclose(probabilities(LOGITS + 1000.0, "logits"), SOFTMAX, rtol=1e-12)
