"""The IG engine against known answers: analytic cases, completeness, an independent loop."""
import numpy as np
import pytest
import tensorflow as tf

from transforms.ig import RULES, IGEngine, quadrature


def linear_model(w: np.ndarray):
    """f(x) = w . x as a 1-output 'logit' model; IG is exactly (x - x') * w."""
    wt = tf.constant(w.reshape(1, -1), tf.float32)

    def model(x):
        flat = tf.reshape(x, (tf.shape(x)[0], -1))
        return tf.reduce_sum(flat * wt, axis=1, keepdims=True)
    return model


def small_cnn(seed=0, classes=3):
    import keras
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Conv2D(8, 3, activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0)),
    ])


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_quadrature_weights_sum_to_one_and_alphas_in_unit_interval(rule, steps):
    alphas, weights = quadrature(rule, steps)
    assert np.isclose(weights.sum(), 1.0)
    assert alphas.min() >= 0 and alphas.max() <= 1
    # the integral of a: exact for the symmetric rules, off by 1/(2m) for left/right Riemann
    expected = {"riemann_left": 0.5 - 0.5 / steps, "riemann_right": 0.5 + 0.5 / steps}.get(rule, 0.5)
    assert np.isclose((alphas * weights).sum(), expected)


def test_quadrature_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown rule"):
        quadrature("simpson", 10)


@pytest.mark.parametrize("rule", RULES)
def test_linear_model_ig_is_exact(rule):
    rng = np.random.default_rng(0)
    shape = (4, 5, 3)
    w = rng.normal(size=np.prod(shape)).astype(np.float32)
    x = rng.uniform(size=(3,) + shape).astype(np.float32)
    xb = rng.uniform(size=(3,) + shape).astype(np.float32)
    engine = IGEngine(linear_model(w), shape, output="logits", score="logit", rule=rule, steps=5, chunk_size=4)
    result = engine.attribute(x, xb, targets=np.zeros(3, np.int64))
    expected = (x - xb) * w.reshape(shape)
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.completeness_gap, 0.0, atol=1e-4)


def _rel_gaps(engine, x, xb):
    r = engine.attribute(x, xb)
    return np.abs(r.completeness_gap) / np.maximum(np.abs(r.score_input - r.score_baseline), 1e-6)


def test_completeness_gap_shrinks_with_steps_and_gauss_legendre_beats_trapezoid():
    model = small_cnn()
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(6, 16, 16, 3)).astype(np.float32)
    xb = np.zeros_like(x)
    medians = {}
    for rule in ("trapezoid", "gauss_legendre"):
        for steps in (4, 16, 64):
            engine = IGEngine(model, (16, 16, 3), rule=rule, steps=steps, chunk_size=32)
            medians[rule, steps] = float(np.median(_rel_gaps(engine, x, xb)))
    for rule in ("trapezoid", "gauss_legendre"):
        assert medians[rule, 4] > medians[rule, 16] > medians[rule, 64] or medians[rule, 64] < 1e-4
    for steps in (4, 16):
        assert medians["gauss_legendre", steps] < medians["trapezoid", steps]
    assert medians["trapezoid", 64] < 0.01


def reference_ig(model, x, xb, target, rule, steps):
    """An independent, plain implementation: one image, one alpha at a time, eager."""
    alphas, weights = quadrature(rule, steps)
    total = np.zeros_like(x, dtype=np.float64)
    for a, w in zip(alphas, weights):
        point = tf.constant((xb + a * (x - xb))[None], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(point)
            p = tf.nn.softmax(model(point), axis=-1)[0, target]
        total += w * tape.gradient(p, point).numpy()[0]
    return (x - xb) * total


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_batched_engine_matches_one_image_at_a_time_with_one_trace(batch):
    model = small_cnn(seed=2)
    rng = np.random.default_rng(batch)
    engine = IGEngine(model, (16, 16, 3), rule="trapezoid", steps=9, chunk_size=7)
    for size in (batch, batch + 2, 1):  # ragged sizes; 10 samples/image never divides 7
        x = rng.uniform(size=(size, 16, 16, 3)).astype(np.float32)
        xb = rng.uniform(size=(size, 16, 16, 3)).astype(np.float32)
        targets = rng.integers(0, 3, size=size)
        r = engine.attribute(x, xb, targets=targets)
        for i in range(size):
            single = engine.attribute(x[i:i + 1], xb[i:i + 1], targets=targets[i:i + 1])
            np.testing.assert_allclose(r.attributions[i], single.attributions[0], rtol=1e-4, atol=1e-6)
            ref = reference_ig(model, x[i], xb[i], int(targets[i]), "trapezoid", 9)
            np.testing.assert_allclose(r.attributions[i], ref, rtol=1e-3, atol=1e-6)
    assert engine.trace_count == 1
    assert engine.forward_trace_count == 1


def test_predicted_target_and_scores():
    model = small_cnn(seed=3)
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(4, 16, 16, 3)).astype(np.float32)
    engine = IGEngine(model, (16, 16, 3), steps=8)
    r = engine.attribute(x, np.zeros_like(x), targets=np.array([-1, 0, -1, 2]))
    probs = tf.nn.softmax(model(x)).numpy()
    np.testing.assert_array_equal(r.predicted, probs.argmax(1))
    np.testing.assert_array_equal(r.targets, [probs[0].argmax(), 0, probs[2].argmax(), 2])
    np.testing.assert_allclose(r.score_input, probs[np.arange(4), r.targets], rtol=1e-5)
    np.testing.assert_allclose(r.confidence, probs.max(1), rtol=1e-5)
    assert r.gradient_samples == 9


def test_probability_output_models_and_logit_score():
    model = small_cnn(seed=4)
    probs_model = lambda x: tf.nn.softmax(model(x))  # noqa: E731
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
    a = IGEngine(model, (16, 16, 3), output="logits", steps=6).attribute(x, 0 * x)
    b = IGEngine(probs_model, (16, 16, 3), output="probabilities", steps=6).attribute(x, 0 * x)
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-4, atol=1e-7)
    logit = IGEngine(model, (16, 16, 3), score="logit", rule="gauss_legendre", steps=32).attribute(x, 0 * x)
    out = model(x).numpy()
    np.testing.assert_allclose(logit.score_input, out[np.arange(2), logit.targets], rtol=1e-5)
    assert np.all(np.abs(logit.completeness_gap) < 1e-3 * np.abs(logit.score_input - logit.score_baseline) + 1e-4)


# -- graded_trapezoid ------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_graded_trapezoid_is_exact_for_linear_integrands_and_dense_near_the_baseline(steps):
    assert "graded_trapezoid" in RULES
    alphas, weights = quadrature("graded_trapezoid", steps)
    assert len(alphas) == steps + 1
    np.testing.assert_allclose(alphas, (np.arange(steps + 1) / steps) ** 2)
    assert np.isclose(weights.sum(), 1.0) and np.isclose((alphas * weights).sum(), 0.5)
    assert np.all(weights >= 0)
    if steps > 1:
        assert np.all(np.diff(np.diff(alphas)) > 0)  # spacing grows away from the baseline


def test_graded_trapezoid_through_the_engine():
    rng = np.random.default_rng(5)
    shape = (4, 5, 3)
    w = rng.normal(size=np.prod(shape)).astype(np.float32)
    x = rng.uniform(size=(2,) + shape).astype(np.float32)
    engine = IGEngine(linear_model(w), shape, output="logits", score="logit", rule="graded_trapezoid",
                      steps=6, chunk_size=4)
    r = engine.attribute(x, np.zeros_like(x), targets=np.zeros(2, np.int64))
    np.testing.assert_allclose(r.attributions, x * w.reshape(shape), rtol=1e-5, atol=1e-6)
    assert r.gradient_samples == 7
    model = small_cnn(seed=6)
    x = rng.uniform(size=(4, 16, 16, 3)).astype(np.float32)
    gaps = [np.median(_rel_gaps(IGEngine(model, (16, 16, 3), rule="graded_trapezoid", steps=s, chunk_size=32),
                                x, np.zeros_like(x))) for s in (4, 64)]
    assert gaps[1] < gaps[0] and gaps[1] < 0.01
