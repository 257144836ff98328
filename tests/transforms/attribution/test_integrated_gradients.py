"""Integrated Gradients against known answers: analytic cases, completeness, the IG axioms (symmetry,
implementation invariance), an independent loop and PAIR's `saliency` package; `steps: auto` (adaptive_ig).

The old IGEngine defaults are passed explicitly where a test relied on them: output "logits", score
"probability", chunk_size 64, rule "trapezoid", steps 50; adaptive_ig's rule "adaptive", tolerance 0.01,
pixel_tolerance 0.08, max_steps 128.
"""
import numpy as np
import pytest
import tensorflow as tf

from igaudit.transforms.attribution.baselines import make_baselines
from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.integrated_gradients import adaptive_ig, integrated_gradients
from igaudit.transforms.attribution.paths import smoothing_noise
from igaudit.transforms.attribution.quadrature import RULES, quadrature
from tests.transforms.attribution.helpers import SHAPE, flat_model, pair_gradients, power_model, rel_gap, small_cnn

PIXEL_TOLERANCE = 0.08    # the old adaptive_ig default (AttributionConfig().pixel_tolerance)


def linear_model(w: np.ndarray):
    """f(x) = w . x as a 1-output 'logit' model; IG is exactly (x - x') * w."""
    wt = tf.constant(w.reshape(1, -1), tf.float32)

    def model(x):
        flat = tf.reshape(x, (tf.shape(x)[0], -1))
        return tf.reduce_sum(flat * wt, axis=1, keepdims=True)
    return model


def cnn16(seed=0, classes=3):
    import keras
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Conv2D(8, 3, activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0)),
    ])


def engine_for(model, shape=(16, 16, 3), *, output="logits", score="probability", chunk_size=64, **kwargs):
    """A GradientEngine with the old IGEngine defaults (logits, probability, chunk 64)."""
    return GradientEngine(model, shape, output=output, score=score, chunk_size=chunk_size, **kwargs)


def ig(engine, x, xb, targets=None, *, rule="trapezoid", steps=50, **kwargs):
    """integrated_gradients with the old IGEngine defaults (trapezoid, 50 steps)."""
    return integrated_gradients(engine, x, xb, targets, rule=rule, steps=steps, **kwargs)


# -- analytic cases ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared():
    """Engines shared by the parametrized cases of one test (one per model): the quadrature is a tensor
    input, so every rule and step count runs on the engine's one trace."""
    return {}


@pytest.mark.parametrize("rule", RULES)
def test_linear_model_ig_is_exact(shared, rule):
    rng = np.random.default_rng(0)
    shape = (4, 5, 3)
    w = rng.normal(size=np.prod(shape)).astype(np.float32)
    x = rng.uniform(size=(3,) + shape).astype(np.float32)
    xb = rng.uniform(size=(3,) + shape).astype(np.float32)
    if "linear" not in shared:
        shared["linear"] = engine_for(linear_model(w), shape, output="logits", score="logit", chunk_size=4)
    engine = shared["linear"]
    result = ig(engine, x, xb, np.zeros(3, np.int64), rule=rule, steps=5)
    expected = (x - xb) * w.reshape(shape)
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.completeness_gap, 0.0, atol=1e-4)


# sum_k w_k * p * alpha_k^(p-1): what each rule makes of integral_0^1 p a^(p-1) da = 1
QUADRATIC_FACTOR = {  # f = a x^2, integrand linear in alpha
    "riemann_left": lambda m: (m - 1) / m, "riemann_right": lambda m: (m + 1) / m,
    "riemann_middle": lambda m: 1.0, "trapezoid": lambda m: 1.0, "gauss_legendre": lambda m: 1.0,
    "graded_trapezoid": lambda m: 1.0}
CUBIC_FACTOR = {  # f = a x^3, integrand quadratic in alpha: Euler-Maclaurin is exact here
    "riemann_left": lambda m: (m - 1) * (2 * m - 1) / (2 * m * m),
    "riemann_right": lambda m: (m + 1) * (2 * m + 1) / (2 * m * m),
    "riemann_middle": lambda m: 1 - 1 / (4 * m * m),
    "trapezoid": lambda m: 1 + 1 / (2 * m * m),
    "gauss_legendre": lambda m: 1 - 1 / (4 * m * m) if m == 1 else 1.0,
    # interval j has width (2j + 1) / m^2 and trapezoid error width^3 / 12 * f'' (f'' = 6); the odd
    # cubes 1^3 + 3^3 + ... + (2m - 1)^3 sum to m^2 (2 m^2 - 1)
    "graded_trapezoid": lambda m: 1 + (2 * m * m - 1) / (2 * m ** 4)}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("power,factors", [(2, QUADRATIC_FACTOR), (3, CUBIC_FACTOR)])
def test_power_model_ig_is_a_x_to_the_p_times_each_rules_known_error(shared, rule, power, factors):
    rng = np.random.default_rng(power)
    a = rng.normal(size=int(np.prod(SHAPE))).astype(np.float32)
    a[::5] = 0.0                                       # dummy inputs
    x = rng.uniform(0.2, 1.0, size=(2,) + SHAPE).astype(np.float32)
    if ("power", power) not in shared:                 # one model (and engine) per power
        shared["power", power] = GradientEngine(power_model(a, power), SHAPE, output="logits", score="logit",
                                                chunk_size=6)
    eng = shared["power", power]
    for m in (1, 3, 8):
        r = integrated_gradients(eng, x, np.zeros_like(x), np.zeros(2, np.int64), rule=rule, steps=m)
        expected = a.reshape(SHAPE) * x.astype(np.float64) ** power * factors[rule](m)
        np.testing.assert_allclose(r.attributions, expected, rtol=2e-5, atol=1e-6)
        assert np.all(r.attributions[:, a.reshape(SHAPE) == 0] == 0.0)   # exactly zero, not just small
    assert eng.trace_counts["gradients"] == 1


def _rel_gaps(engine, x, xb, **kwargs):
    r = ig(engine, x, xb, **kwargs)
    return np.abs(r.completeness_gap) / np.maximum(np.abs(r.score_input - r.score_baseline), 1e-6)


@pytest.mark.slow
def test_completeness_gap_shrinks_with_steps_and_gauss_legendre_beats_trapezoid():
    model = cnn16()
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(6, 16, 16, 3)).astype(np.float32)
    xb = np.zeros_like(x)
    medians = {}
    for rule in ("trapezoid", "gauss_legendre"):
        for steps in (4, 16, 64):
            engine = engine_for(model, chunk_size=32)
            medians[rule, steps] = float(np.median(_rel_gaps(engine, x, xb, rule=rule, steps=steps)))
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


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3, 5])
def test_batched_engine_matches_one_image_at_a_time_with_one_trace(batch):
    model = cnn16(seed=2)
    rng = np.random.default_rng(batch)
    engine = engine_for(model, chunk_size=7)
    for size in (batch, batch + 2, 1):  # ragged sizes; 10 samples/image never divides 7
        x = rng.uniform(size=(size, 16, 16, 3)).astype(np.float32)
        xb = rng.uniform(size=(size, 16, 16, 3)).astype(np.float32)
        targets = rng.integers(0, 3, size=size)
        r = ig(engine, x, xb, targets, rule="trapezoid", steps=9)
        for i in range(size):
            single = ig(engine, x[i:i + 1], xb[i:i + 1], targets[i:i + 1], rule="trapezoid", steps=9)
            np.testing.assert_allclose(r.attributions[i], single.attributions[0], rtol=1e-4, atol=1e-6)
            ref = reference_ig(model, x[i], xb[i], int(targets[i]), "trapezoid", 9)
            np.testing.assert_allclose(r.attributions[i], ref, rtol=1e-3, atol=1e-6)
    assert engine.trace_counts["gradients"] == 1
    assert engine.trace_counts["forward"] == 1


def test_predicted_target_and_scores():
    model = cnn16(seed=3)
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(4, 16, 16, 3)).astype(np.float32)
    engine = engine_for(model)
    r = ig(engine, x, np.zeros_like(x), np.array([-1, 0, -1, 2]), steps=8)
    probs = tf.nn.softmax(model(x)).numpy()
    np.testing.assert_array_equal(r.predicted, probs.argmax(1))
    np.testing.assert_array_equal(r.targets, [probs[0].argmax(), 0, probs[2].argmax(), 2])
    np.testing.assert_allclose(r.score_input, probs[np.arange(4), r.targets], rtol=1e-5)
    np.testing.assert_allclose(r.confidence, probs.max(1), rtol=1e-5)
    assert np.all(r.gradient_samples == 9)          # one count per row now (was one int per batch)


@pytest.mark.slow
def test_probability_output_models_and_logit_score():
    model = cnn16(seed=4)
    probs_model = lambda x: tf.nn.softmax(model(x))  # noqa: E731
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
    a = ig(engine_for(model, output="logits"), x, 0 * x, steps=6)
    b = ig(engine_for(probs_model, output="probabilities"), x, 0 * x, steps=6)
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-4, atol=1e-7)
    logit = ig(engine_for(model, score="logit"), x, 0 * x, rule="gauss_legendre", steps=32)
    out = model(x).numpy()
    np.testing.assert_allclose(logit.score_input, out[np.arange(2), logit.targets], rtol=1e-5)
    assert np.all(np.abs(logit.completeness_gap) < 1e-3 * np.abs(logit.score_input - logit.score_baseline) + 1e-4)


# -- graded_trapezoid ------------------------------------------------------------------------------
@pytest.mark.slow
def test_graded_trapezoid_through_the_engine():
    rng = np.random.default_rng(5)
    shape = (4, 5, 3)
    w = rng.normal(size=np.prod(shape)).astype(np.float32)
    x = rng.uniform(size=(2,) + shape).astype(np.float32)
    engine = engine_for(linear_model(w), shape, output="logits", score="logit", chunk_size=4)
    r = ig(engine, x, np.zeros_like(x), np.zeros(2, np.int64), rule="graded_trapezoid", steps=6)
    np.testing.assert_allclose(r.attributions, x * w.reshape(shape), rtol=1e-5, atol=1e-6)
    assert np.all(r.gradient_samples == 7)
    model = cnn16(seed=6)
    x = rng.uniform(size=(4, 16, 16, 3)).astype(np.float32)
    gaps = [np.median(_rel_gaps(engine_for(model, chunk_size=32), x, np.zeros_like(x), rule="graded_trapezoid",
                                steps=s)) for s in (4, 64)]
    assert gaps[1] < gaps[0] and gaps[1] < 0.01


# -- the IG axioms ---------------------------------------------------------------------------------
def test_symmetric_inputs_get_equal_attribution():
    from igaudit.transforms.attribution.gradients import gradients
    d = int(np.prod(SHAPE))
    i, j = 5, 77                      # f is symmetric in x_i and x_j
    e = np.zeros((d, 2), np.float32)
    e[i, 0] = e[j, 1] = 1.0
    picks = tf.constant(e)
    rest = tf.constant(np.where(np.isin(np.arange(d), [i, j]), 0.0, 0.3).astype(np.float32)[None])

    def f(flat):
        xi, xj = tf.unstack(flat @ picks, axis=1)
        score = tf.sigmoid(3 * (xi + xj) + 2 * xi * xj - 1) + tf.reduce_sum(rest * flat ** 2, 1)
        return tf.stack([score, -score], 1)

    eng = GradientEngine(flat_model(f), SHAPE, output="logits", score="logit", chunk_size=16)
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(3,) + SHAPE).astype(np.float32)
    flat = x.reshape(3, -1)
    flat[:, j] = flat[:, i]
    baselines = np.zeros_like(x)
    baselines.reshape(3, -1)[:, [i, j]] = 0.1            # symmetric baseline too
    t = np.zeros(3, np.int64)
    for r in (integrated_gradients(eng, x, baselines, t, rule="trapezoid", steps=16), gradients(eng, x, t)):
        a = r.attributions.reshape(3, -1)
        np.testing.assert_allclose(a[:, i], a[:, j], rtol=1e-6)
        assert np.all(np.abs(a[:, i]) > 1e-3)


@pytest.mark.slow
def test_implementation_invariance_dense_split_dense_and_conv():
    """Three architectures computing the same function get the same IG."""
    import keras
    rng = np.random.default_rng(3)
    shape = (4, 4, 3)
    d = int(np.prod(shape))
    w = rng.normal(size=(d, 8)).astype(np.float32)
    bias = rng.normal(size=8).astype(np.float32) * 0.1
    v = rng.normal(size=(8, 3)).astype(np.float32) * 2

    dense = keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3, use_bias=False)])
    dense.layers[1].set_weights([w, bias])
    dense.layers[2].set_weights([v])
    # split: a wider linear layer [w | noise] then a selector, tanh after it
    split = keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                              keras.layers.Dense(16, use_bias=False), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3, use_bias=False)])
    split.layers[1].set_weights([np.concatenate([w, rng.normal(size=(d, 8)).astype(np.float32)], 1)])
    split.layers[2].set_weights([np.concatenate([np.eye(8), np.zeros((8, 8))]).astype(np.float32), bias])
    split.layers[3].set_weights([v])
    # conv: one full-size valid convolution is the dense layer
    conv = keras.Sequential([keras.Input(shape), keras.layers.Conv2D(8, shape[:2], activation="tanh"),
                             keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)])
    conv.layers[0].set_weights([w.reshape(shape + (8,)), bias])
    conv.layers[2].set_weights([v])

    x = rng.uniform(size=(4,) + shape).astype(np.float32)
    xb = rng.uniform(size=(4,) + shape).astype(np.float32) * 0.2
    outs = [m(x).numpy() for m in (dense, split, conv)]
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[2], outs[0], rtol=1e-5, atol=1e-5)
    igs = [integrated_gradients(GradientEngine(m, shape, output="logits", score="probability", chunk_size=9),
                                x, xb, rule="trapezoid", steps=20).attributions
           for m in (dense, split, conv)]
    assert np.abs(igs[0]).max() > 1e-3
    np.testing.assert_allclose(igs[1], igs[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(igs[2], igs[0], rtol=1e-4, atol=1e-6)


# -- several baselines, PAIR, smoothing ------------------------------------------------------------
def test_integrated_gradients_averages_over_baselines(engine, batch):
    """Several baselines in one call are the mean of one call per baseline (was: against IGEngine)."""
    x, ids = batch
    baselines = make_baselines("uniform", x, ids, samples=3)
    r = integrated_gradients(engine, x, baselines, rule="trapezoid", steps=9)
    singles = [integrated_gradients(engine, x, baselines[s], r.targets, rule="trapezoid", steps=9) for s in range(3)]
    np.testing.assert_allclose(r.attributions, np.mean([s.attributions for s in singles], 0), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(r.score_baseline, np.mean([s.score_baseline for s in singles], 0), rtol=1e-6)
    # completeness of the average: sum(IG) - (F(x) - mean F(x'))
    np.testing.assert_allclose(r.completeness_gap, np.mean([s.completeness_gap for s in singles], 0), atol=1e-6)
    assert np.all(r.gradient_samples == 3 * 10)


def test_ig_matches_pair_integrated_gradients_with_matched_points(engine, cnn, batch):
    import saliency.core as saliency
    x, _ = batch
    rng = np.random.default_rng(4)
    xb = rng.uniform(size=x.shape).astype(np.float32) * 0.3
    targets = np.array([0, 1, 2, 1, 0])
    steps = 12
    # PAIR: alphas linspace(0, 1, x_steps) with equal weights 1 / x_steps
    ours = integrated_gradients(engine, x, xb, targets, rule="trapezoid", steps=None,
                                alphas=np.linspace(0, 1, steps), weights=np.full(steps, 1.0 / steps))
    pair = saliency.IntegratedGradients()
    for i in range(len(x)):
        theirs = pair.GetMask(x[i], pair_gradients(cnn, targets[i]), x_steps=steps, x_baseline=xb[i], batch_size=5)
        np.testing.assert_allclose(ours.attributions[i], theirs, rtol=1e-4, atol=1e-7)


def test_smoothgrad_of_ig_checks_completeness_against_the_mean_noisy_score(engine, batch):
    x, ids = batch
    xb = np.full_like(x, 0.1)
    samples, stdev = 3, 0.1
    r = integrated_gradients(engine, x, xb, rule="gauss_legendre", steps=24, image_ids=ids,
                             smoothing="smoothgrad", samples=samples, stdev=stdev)
    noisy = np.stack([x[i] + smoothing_noise(ids[i], s, SHAPE, stdev) for s in range(samples)
                      for i in range(len(x))])
    noisy_scores = engine.score_of(engine.forward(noisy), np.tile(r.targets, samples)).reshape(samples, -1).mean(0)
    expected_gap = r.attributions.reshape(len(x), -1).sum(1, dtype=np.float64) - (noisy_scores - r.score_baseline)
    np.testing.assert_allclose(r.completeness_gap, expected_gap, atol=1e-6)
    assert np.all(np.abs(r.completeness_gap) < 0.01 * np.abs(noisy_scores - r.score_baseline))
    np.testing.assert_allclose(r.score_input, engine.score_of(engine.forward(x), r.targets))   # F(clean x)


# -- adaptive steps ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adaptive_case():
    """Images from nearly-the-baseline (easy) to far from it (hard) on a steep tanh CNN."""
    model = small_cnn(seed=1, stddev=6.0)
    rng = np.random.default_rng(6)
    n = 8
    x = (rng.uniform(size=(n,) + SHAPE) * np.linspace(0.1, 1.0, n)[:, None, None, None]).astype(np.float32)
    return GradientEngine(model, SHAPE, output="logits", score="probability", chunk_size=32), x, np.zeros_like(x)


@pytest.mark.slow
def test_adaptive_trapezoid_meets_the_tolerance_with_fewer_samples_than_fixed_steps(adaptive_case):
    eng, x, xb = adaptive_case
    tol = 0.01
    r = adaptive_ig(eng, x, xb, tolerance=tol, pixel_tolerance=PIXEL_TOLERANCE, start_steps=2, max_steps=1024,
                    atol=0.0, rule="trapezoid")
    assert r.converged.all()
    gaps = rel_gap(r)
    assert np.all(gaps <= tol)
    assert np.all(r.gradient_samples == r.steps + 1)     # doubling reused every earlier point
    assert len(set(r.steps)) > 1                          # images left the batch at different rounds
    # the reused sums are the trapezoid rule at each image's final step count
    for i in range(len(x)):
        fixed = integrated_gradients(eng, x[i:i + 1], xb[i:i + 1], r.targets[i:i + 1], rule="trapezoid",
                                     steps=int(r.steps[i]))
        np.testing.assert_allclose(r.attributions[i], fixed.attributions[0], rtol=1e-4, atol=1e-7)
    # the smallest fixed step count reaching the same worst-case gap (scanned, not guessed)
    worst = gaps.max()
    m = next(m for m in range(1, 1025)
             if rel_gap(integrated_gradients(eng, x, xb, r.targets, rule="trapezoid", steps=m)).max() <= worst)
    assert r.gradient_samples.sum() < len(x) * (m + 1), (r.gradient_samples.sum(), m)


@pytest.mark.slow
def test_adaptive_gauss_legendre_converges_on_fewer_samples_than_trapezoid(adaptive_case):
    eng, x, xb = adaptive_case
    trap = adaptive_ig(eng, x, xb, tolerance=0.001, pixel_tolerance=PIXEL_TOLERANCE, start_steps=4, max_steps=1024,
                       atol=0.0, rule="trapezoid")
    gl = adaptive_ig(eng, x, xb, tolerance=0.001, pixel_tolerance=PIXEL_TOLERANCE, start_steps=4, max_steps=1024,
                     rule="gauss_legendre", atol=0.0)
    assert trap.converged.all() and gl.converged.all()
    assert np.all(rel_gap(gl) <= 0.001)
    assert gl.gradient_samples.sum() < trap.gradient_samples.sum() / 2
    # no reuse for Gauss-Legendre: 4 + 8 + ... + steps samples
    np.testing.assert_array_equal(gl.gradient_samples, 2 * gl.steps - 4)


def test_adaptive_over_several_baselines_is_the_mean_of_each_baselines_run(adaptive_case):
    eng, x, _ = adaptive_case
    ids = [f"a{i}" for i in range(len(x))]
    baselines = make_baselines("uniform", x, ids, samples=2) * 0.2
    options = dict(rule="adaptive", tolerance=0.01, pixel_tolerance=PIXEL_TOLERANCE, max_steps=256, atol=0.0)
    both = adaptive_ig(eng, x, baselines, **options)
    each = [adaptive_ig(eng, x, baselines[s], both.targets, **options) for s in range(2)]
    np.testing.assert_allclose(both.attributions, (each[0].attributions + each[1].attributions) / 2,
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(both.gradient_samples, each[0].gradient_samples + each[1].gradient_samples)
    np.testing.assert_allclose(both.completeness_gap, (each[0].completeness_gap + each[1].completeness_gap) / 2,
                               atol=1e-7)
    np.testing.assert_array_equal(both.converged, each[0].converged & each[1].converged)
    np.testing.assert_array_equal(both.steps, np.maximum(each[0].steps, each[1].steps))


def test_adaptive_stops_at_max_steps_and_keeps_chunks_full():
    counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    cnn = small_cnn(seed=1, stddev=6.0)

    def model(x):
        counter.assign_add(1)          # one model call per chunk inside the traced loop
        return cnn(x)

    rng = np.random.default_rng(7)
    x = (rng.uniform(size=(6,) + SHAPE) * np.linspace(0.05, 1, 6)[:, None, None, None]).astype(np.float32)
    eng = GradientEngine(model, SHAPE, output="logits", score="probability", chunk_size=5)
    counter.assign(0)
    r = adaptive_ig(eng, x, np.zeros_like(x), tolerance=1e-9, pixel_tolerance=PIXEL_TOLERANCE, start_steps=2,
                    max_steps=16, atol=0.0, rule="trapezoid")
    assert not r.converged.any()
    assert np.all(r.steps == 16) and np.all(r.gradient_samples == 17)
    # per round, the active images' points are flattened together: ceil(items / chunk) model calls
    rounds = [6 * 3, 6 * 2, 6 * 4, 6 * 8]
    forward_calls = 2                                   # F(x) and F(x') (each 6 images, chunk 5)
    assert counter.numpy() == sum(-(-k // 5) for k in rounds) + forward_calls * 2


# -- an oracle with a steep start: BatchNormalization channels of (nearly) no variance -------------------------
def steep_start_bn_cnn():
    """benchmarks.common.steep_start_cnn (the bench's network of the same name): conv -> BatchNormalization -> ReLU
    -> pool -> dense, four channels with a moving variance of 1e-11: from a black baseline their output (and the
    softmax) moves within alpha of about 1e-5, as on trained BN nets whose first layer saw nearly constant
    channels. A uniform grid cannot see that start."""
    from benchmarks.common import steep_start_cnn
    return steep_start_cnn(SHAPE).net


def graded(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes (j / n)^2 and their weights: dense where the steep start is."""
    alphas = (np.arange(n + 1) / n) ** 2
    weights = np.zeros(n + 1)
    weights[:-1] += np.diff(alphas) / 2
    weights[1:] += np.diff(alphas) / 2
    return alphas, weights


def per_pixel_error(r, reference) -> np.ndarray:
    a, b = (v.attributions.reshape(len(v.attributions), -1) for v in (r, reference))
    return np.abs(a - b).sum(1) / np.abs(b).sum(1)


def test_on_a_steep_start_the_default_policy_is_judged_against_a_converged_reference():
    eng = GradientEngine(steep_start_bn_cnn(), SHAPE, output="logits", score="probability", chunk_size=256)
    x = np.random.default_rng(0).uniform(size=(6,) + SHAPE).astype(np.float32)
    xb = np.zeros_like(x)
    targets = integrated_gradients(eng, x, xb, rule="trapezoid", steps=2).targets
    alphas, weights = graded(1024)
    reference = integrated_gradients(eng, x, xb, targets, rule="trapezoid", steps=None, alphas=alphas, weights=weights)
    assert rel_gap(reference).max() <= 1e-3                   # converged: every gap within 0.1%
    uniform = integrated_gradients(eng, x, xb, targets, rule="trapezoid", steps=1024)
    assert np.median(rel_gap(uniform)) > 0.01                  # 1025 uniform samples are not a reference here
    default = adaptive_ig(eng, x, xb, targets, tolerance=0.01, pixel_tolerance=0.03, max_steps=128, atol=0.0,
                          rule="adaptive")
    tutorial = integrated_gradients(eng, x, xb, targets, rule="trapezoid", steps=50)     # the TF tutorial's
    ours, theirs = np.median(per_pixel_error(default, reference)), np.median(per_pixel_error(tutorial, reference))
    assert np.median(default.gradient_samples) <= 51
    assert ours <= 2 * 0.03 and ours <= 0.5 * theirs, (ours, theirs)
    # the policy's estimate is honest here: the forward check sees the step no sampled gradient does
    ratio = per_pixel_error(default, reference) / default.estimated_error
    assert np.all((ratio >= 0.5) & (ratio <= 2)), ratio
