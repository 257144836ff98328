"""Attribution options of issue 3: baselines, targets, adaptive steps, smoothing, other methods.

Known answers (analytic integrands with exact quadrature errors, linear models),
the IG axioms (dummy, symmetry, implementation invariance), an independent
implementation (PAIR's `saliency` package), seeding invariance and trace counts.
"""
import numpy as np
import pytest
import saliency.core as saliency          # PAIR's reference implementation (the `test` extra)
import tensorflow as tf
from saliency.core import base as saliency_base

from transforms.baselines import (BASELINES, RANDOM_BASELINES, gaussian_blur, image_rng, make_baselines)
from transforms.ig import RULES, IGEngine
from transforms.methods import (AttributionEngine, GradCamEngine, adaptive_ig, expected_gradients_draws,
                                occlusion_windows, smoothing_noise)
from transforms.records import seed_from_id
from transforms.targets import TargetSpec, parse_target, resolve_targets, target_rows

SHAPE = (8, 8, 3)


# -- models ----------------------------------------------------------------------------------------
def flat_model(fn):
    """A model from a function of the flattened pixels (N, D) -> (N, K)."""
    def model(x):
        return fn(tf.reshape(x, (tf.shape(x)[0], -1)))
    return model


def power_model(a: np.ndarray, power: int):
    """f(x) = sum_i a_i x_i^power as a one-logit model."""
    at = tf.constant(a.reshape(1, -1), tf.float32)
    return flat_model(lambda f: tf.reduce_sum(at * f ** power, axis=1, keepdims=True))


def linear_model(w: np.ndarray):
    wt = tf.constant(w.reshape(1, -1), tf.float32)
    return flat_model(lambda f: tf.stack([tf.reduce_sum(f * wt, axis=1), tf.zeros(tf.shape(f)[0])], axis=1))


def small_cnn(seed=0, classes=3, shape=SHAPE, activation="tanh", stddev=3.0):
    import keras
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(shape),
        keras.layers.Conv2D(8, 3, activation=activation, name="conv1",
                            kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
                            bias_initializer=keras.initializers.RandomNormal(stddev=0.1)),
        keras.layers.Conv2D(8, 3, activation=activation, name="conv2"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(stddev=stddev)),
    ])


@pytest.fixture(scope="module")
def cnn():
    return small_cnn()


@pytest.fixture(scope="module")
def engine(cnn):
    """One engine shared by many tests: its trace counts are checked at the end of the module."""
    return AttributionEngine(cnn, SHAPE, chunk_size=7)


@pytest.fixture(scope="module")
def other_engine(cnn):
    return AttributionEngine(cnn, SHAPE, chunk_size=16)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5,) + SHAPE).astype(np.float32)
    ids = [f"img-{i}" for i in range(5)]
    return x, ids


def rel_gap(r):
    return np.abs(r.completeness_gap) / np.abs(r.score_input - r.score_baseline)


# -- analytic cases ------------------------------------------------------------------------------
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
def test_power_model_ig_is_a_x_to_the_p_times_each_rules_known_error(rule, power, factors):
    rng = np.random.default_rng(power)
    a = rng.normal(size=int(np.prod(SHAPE))).astype(np.float32)
    a[::5] = 0.0                                       # dummy inputs
    x = rng.uniform(0.2, 1.0, size=(2,) + SHAPE).astype(np.float32)
    eng = AttributionEngine(power_model(a, power), SHAPE, output="logits", score="logit", chunk_size=6)
    for m in (1, 3, 8):
        r = eng.integrated_gradients(x, np.zeros_like(x), np.zeros(2, np.int64), rule=rule, steps=m)
        expected = a.reshape(SHAPE) * x.astype(np.float64) ** power * factors[rule](m)
        np.testing.assert_allclose(r.attributions, expected, rtol=2e-5, atol=1e-6)
        assert np.all(r.attributions[:, a.reshape(SHAPE) == 0] == 0.0)   # exactly zero, not just small
    assert eng.trace_counts["gradients"] == 1


def test_dummy_inputs_get_exactly_zero_from_every_gradient_method():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 1.5, size=int(np.prod(SHAPE))).astype(np.float32)
    dummy = rng.uniform(size=a.shape) < 0.3
    a[dummy] = 0.0
    at = tf.constant(a.reshape(1, -1))
    model = flat_model(lambda f: tf.stack([tf.tanh(0.02 * tf.reduce_sum(at * f * f, 1)), tf.zeros(tf.shape(f)[0])], 1))
    eng = AttributionEngine(model, SHAPE, score="logit", chunk_size=8)
    x = rng.uniform(size=(3,) + SHAPE).astype(np.float32)
    ids = ["a", "b", "c"]
    t = np.zeros(3, np.int64)
    results = [
        eng.integrated_gradients(x, make_baselines("uniform", x, ids, samples=2), t, steps=6),
        eng.expected_gradients(x, rng.uniform(size=(4,) + SHAPE).astype(np.float32), ids, t, samples=5),
        eng.gradients(x, t), eng.gradient_x_input(x, t),
        eng.gradients(x, t, image_ids=ids, smoothing="vargrad", samples=3),
        eng.integrated_gradients(x, np.zeros_like(x), t, steps=4, image_ids=ids, smoothing="smoothgrad_sq",
                                 samples=3)]
    mask = dummy.reshape(SHAPE)
    for r in results:
        assert np.all(r.attributions[:, mask] == 0.0), r.method
        assert np.all(np.abs(r.attributions[:, ~mask]).sum(axis=-1) > 0), r.method


def test_symmetric_inputs_get_equal_attribution():
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

    eng = AttributionEngine(flat_model(f), SHAPE, score="logit", chunk_size=16)
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(3,) + SHAPE).astype(np.float32)
    flat = x.reshape(3, -1)
    flat[:, j] = flat[:, i]
    baselines = np.zeros_like(x)
    baselines.reshape(3, -1)[:, [i, j]] = 0.1            # symmetric baseline too
    t = np.zeros(3, np.int64)
    for r in (eng.integrated_gradients(x, baselines, t, steps=16), eng.gradients(x, t)):
        a = r.attributions.reshape(3, -1)
        np.testing.assert_allclose(a[:, i], a[:, j], rtol=1e-6)
        assert np.all(np.abs(a[:, i]) > 1e-3)


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
    igs = [AttributionEngine(m, shape, chunk_size=9).integrated_gradients(x, xb, steps=20).attributions
           for m in (dense, split, conv)]
    assert np.abs(igs[0]).max() > 1e-3
    np.testing.assert_allclose(igs[1], igs[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(igs[2], igs[0], rtol=1e-4, atol=1e-6)


def test_integrated_gradients_equals_the_ig_engine_and_averages_over_baselines(engine, cnn, batch):
    x, ids = batch
    baselines = make_baselines("uniform", x, ids, samples=3)
    r = engine.integrated_gradients(x, baselines, steps=9)
    ig = IGEngine(cnn, SHAPE, steps=9, chunk_size=7)
    singles = [ig.attribute(x, baselines[s], targets=r.targets) for s in range(3)]
    np.testing.assert_allclose(r.attributions, np.mean([s.attributions for s in singles], 0), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(r.score_baseline, np.mean([s.score_baseline for s in singles], 0), rtol=1e-6)
    # completeness of the average: sum(IG) - (F(x) - mean F(x'))
    np.testing.assert_allclose(r.completeness_gap, np.mean([s.completeness_gap for s in singles], 0), atol=1e-6)
    assert np.all(r.gradient_samples == 3 * 10)


# -- an independent implementation: PAIR saliency -------------------------------------------------------


def pair_gradients(model, target):
    """PAIR's call_model_function: gradients of the softmax probability of `target`."""
    def call(x_batch, call_model_args=None, expected_keys=None):
        x = tf.constant(np.asarray(x_batch, np.float32))
        with tf.GradientTape() as tape:
            tape.watch(x)
            p = tf.nn.softmax(model(x), axis=-1)[:, target]
        return {saliency_base.INPUT_OUTPUT_GRADIENTS: tape.gradient(p, x).numpy()}
    return call


def test_ig_matches_pair_integrated_gradients_with_matched_points(engine, cnn, batch):
    x, _ = batch
    rng = np.random.default_rng(4)
    xb = rng.uniform(size=x.shape).astype(np.float32) * 0.3
    targets = np.array([0, 1, 2, 1, 0])
    steps = 12
    # PAIR: alphas linspace(0, 1, x_steps) with equal weights 1 / x_steps
    ours = engine.integrated_gradients(x, xb, targets, alphas=np.linspace(0, 1, steps),
                                       weights=np.full(steps, 1.0 / steps))
    ig = saliency.IntegratedGradients()
    for i in range(len(x)):
        theirs = ig.GetMask(x[i], pair_gradients(cnn, targets[i]), x_steps=steps, x_baseline=xb[i], batch_size=5)
        np.testing.assert_allclose(ours.attributions[i], theirs, rtol=1e-4, atol=1e-7)


def test_gradients_match_pair_gradient_saliency(engine, cnn, batch):
    x, _ = batch
    ours = engine.gradients(x)
    for i in range(len(x)):
        theirs = saliency.GradientSaliency().GetMask(x[i], pair_gradients(cnn, int(ours.targets[i])))
        # float32 rounding: one image at a time (PAIR) vs a batch of five (ours) take different
        # convolution code paths
        np.testing.assert_allclose(ours.attributions[i], theirs, rtol=1e-4, atol=1e-7)
    gxi = engine.gradient_x_input(x)
    np.testing.assert_allclose(gxi.attributions, ours.attributions * x, rtol=1e-6)


@pytest.mark.parametrize("method", ["gradients", "integrated_gradients"])
def test_smoothing_matches_pair_get_smoothed_mask_fed_the_same_noise(engine, cnn, batch, monkeypatch, method):
    x, ids = batch
    samples, stdev = 4, 0.2
    xb = np.zeros_like(x)
    kwargs = dict(image_ids=ids, samples=samples, stdev=stdev)
    if method == "gradients":
        def ours(smoothing):
            return engine.gradients(x, smoothing=smoothing, **kwargs)
        pair, extra = saliency.GradientSaliency(), {}
    else:
        def ours(smoothing):
            return engine.integrated_gradients(x, xb, alphas=np.linspace(0, 1, 6), weights=np.full(6, 1 / 6),
                                               smoothing=smoothing, **kwargs)
        pair, extra = saliency.IntegratedGradients(), {"x_steps": 6, "batch_size": 4}
    sg, sq, var = ours("smoothgrad"), ours("smoothgrad_sq"), ours("vargrad")
    for i in range(len(x)):
        for result, magnitude in ((sg, False), (sq, True)):
            queue = [smoothing_noise(ids[i], s, SHAPE, stdev) for s in range(samples)]
            monkeypatch.setattr(np.random, "normal", lambda *a, **k: queue.pop(0))   # PAIR's noise source
            if method == "integrated_gradients":
                extra["x_baseline"] = xb[i]
            theirs = pair.GetSmoothedMask(x[i], pair_gradients(cnn, int(sg.targets[i])), nsamples=samples,
                                          magnitude=magnitude, **extra)
            assert not queue
            scale = np.abs(theirs).max()
            np.testing.assert_allclose(result.attributions[i], theirs, rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(var.attributions[i], sq.attributions[i] - sg.attributions[i] ** 2,
                                   rtol=1e-3, atol=1e-6 * np.abs(sq.attributions[i]).max())
    assert np.all(np.isnan(sq.completeness_gap)) and np.all(np.isnan(var.completeness_gap))


def test_smoothgrad_of_ig_checks_completeness_against_the_mean_noisy_score(engine, batch):
    x, ids = batch
    xb = np.full_like(x, 0.1)
    samples, stdev = 3, 0.1
    r = engine.integrated_gradients(x, xb, rule="gauss_legendre", steps=24, image_ids=ids,
                                    smoothing="smoothgrad", samples=samples, stdev=stdev)
    noisy = np.stack([x[i] + smoothing_noise(ids[i], s, SHAPE, stdev) for s in range(samples)
                      for i in range(len(x))])
    noisy_scores = engine.score_of(engine.forward(noisy), np.tile(r.targets, samples)).reshape(samples, -1).mean(0)
    expected_gap = r.attributions.reshape(len(x), -1).sum(1, dtype=np.float64) - (noisy_scores - r.score_baseline)
    np.testing.assert_allclose(r.completeness_gap, expected_gap, atol=1e-6)
    assert np.all(np.abs(r.completeness_gap) < 0.01 * np.abs(noisy_scores - r.score_baseline))
    np.testing.assert_allclose(r.score_input, engine.score_of(engine.forward(x), r.targets))   # F(clean x)


def test_grad_cam_matches_pair_at_the_layer_resolution(cnn, batch):
    x, _ = batch
    import keras
    features = keras.Model(cnn.inputs, [cnn.get_layer("conv1").output, cnn.outputs[0]])
    cam = GradCamEngine(cnn, "conv1", SHAPE, chunk_size=3)  # conv2 after it: gradients vary in space
    ours = cam.attribute(x, np.array([0, 1, 2, 0, 1]), upsample=False, broadcast_channels=False)
    for i in range(len(x)):
        def call(x_batch, call_model_args=None, expected_keys=None, target=int(ours.targets[i])):
            xt = tf.constant(np.asarray(x_batch, np.float32))
            with tf.GradientTape() as tape:
                acts, logits = features(xt)
                score = logits[:, target]
            return {saliency_base.CONVOLUTION_LAYER_VALUES: acts.numpy(),
                    saliency_base.CONVOLUTION_OUTPUT_GRADIENTS: tape.gradient(score, acts).numpy()}
        theirs = saliency.GradCam().GetMask(x[i], call, should_resize=False, three_dims=False)
        np.testing.assert_allclose(ours.attributions[i, ..., 0], theirs, rtol=1e-4, atol=1e-6)
    assert cam.trace_count == 1


def test_occlusion_matches_pair_occlusion_up_to_its_normalisation(engine, cnn, batch):
    x, _ = batch
    window = 3
    ours = engine.occlusion(x[:1], window=window, stride=1, fill=0.0)
    h, w, c = SHAPE
    cover = np.zeros((h, w))
    for top in range(h - window + 1):
        for left in range(w - window + 1):
            cover[top:top + window, left:left + window] += 1
    for i in range(1):                  # PAIR runs one forward pass per window: keep it to one image
        target = int(ours.targets[i])

        def call(x_batch, call_model_args=None, expected_keys=None):
            p = tf.nn.softmax(cnn(tf.constant(np.asarray(x_batch, np.float32))), axis=-1)[:, target]
            return {saliency_base.OUTPUT_LAYER_VALUES: p.numpy()}
        theirs = saliency.Occlusion().GetMask(x[i], call, size=window, value=0)   # sums raw drops
        np.testing.assert_allclose(ours.attributions[i] * (cover * window * window * c)[..., None], theirs,
                                   rtol=1e-4, atol=1e-6)


# -- occlusion and grad-cam against known answers ------------------------------------------------------
def test_occlusion_on_a_linear_model_is_the_analytic_map():
    rng = np.random.default_rng(5)
    w = rng.normal(size=int(np.prod(SHAPE))).astype(np.float32)
    eng = AttributionEngine(linear_model(w), SHAPE, score="logit", chunk_size=10)
    x = rng.uniform(size=(2,) + SHAPE).astype(np.float32)
    fill = np.array([0.5, 0.2, 0.0], np.float32)
    window, stride = 3, 2
    r = eng.occlusion(x, np.zeros(2, np.int64), window=window, stride=stride, fill=fill)
    starts = occlusion_windows(8, window, stride)
    assert list(starts) == [0, 2, 4, 5]                  # the last window is flush with the edge
    contrib = w.reshape(SHAPE) * (x - fill)              # the drop a linear model shows per value
    expected = np.zeros((2,) + SHAPE[:2])
    count = np.zeros(SHAPE[:2])
    for top in starts:
        for left in starts:
            drop = contrib[:, top:top + window, left:left + window].sum(axis=(1, 2, 3))
            expected[:, top:top + window, left:left + window] += drop[:, None, None] / (window * window * 3)
            count[top:top + window, left:left + window] += 1
    expected = np.repeat((expected / count)[..., None], 3, -1)
    np.testing.assert_allclose(r.attributions, expected, rtol=1e-4, atol=1e-6)
    assert np.all(r.forward_passes == 16)
    # non-overlapping windows: the map adds up to F(x) - F(all fill), like IG from the fill baseline
    tiled = eng.occlusion(x, np.zeros(2, np.int64), window=4, stride=4, fill=fill)
    np.testing.assert_allclose(tiled.attributions.sum(axis=(1, 2, 3)), contrib.sum(axis=(1, 2, 3)), rtol=1e-4)


def colour_detector():
    """conv 'features': channel 0 fires on red, channel 1 on blue; class k = mean of channel k."""
    import keras
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="features"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="logits")])
    kernel = np.zeros((3, 3, 3, 2), np.float32)
    kernel[1, 1] = [[1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]]   # input channel x output channel
    model.get_layer("features").set_weights([kernel, np.zeros(2, np.float32)])
    model.get_layer("logits").set_weights([np.eye(2, dtype=np.float32) * 10, np.zeros(2, np.float32)])
    return model


def test_grad_cam_heat_sits_on_the_region_the_target_class_depends_on():
    model = colour_detector()
    x = np.zeros((2, 16, 16, 3), np.float32)
    x[:, 2:6, 2:6, 0] = 1.0        # red square, top left: what class 0 looks at
    x[:, 10:14, 9:13, 2] = 1.0     # blue square, bottom right: class 1
    x[1] = x[1, ::-1, ::-1]        # second image: the squares swapped round
    cam = GradCamEngine(model, "features", (16, 16, 3), chunk_size=3)
    for target in (0, 1):
        r = cam.attribute(x, np.full(2, target))
        assert r.attributions.shape == (2, 16, 16, 3)
        for i in range(2):
            heat = r.attributions[i, ..., 0]
            red = np.argwhere(x[i, ..., 0] > 0)
            blue = np.argwhere(x[i, ..., 2] > 0)
            region = red if target == 0 else blue
            peak = np.unravel_index(heat.argmax(), heat.shape)
            assert region.min(0)[0] - 1 <= peak[0] <= region.max(0)[0] + 1
            assert region.min(0)[1] - 1 <= peak[1] <= region.max(0)[1] + 1
            inside = np.zeros_like(heat, bool)
            inside[region.min(0)[0] - 1:region.max(0)[0] + 2, region.min(0)[1] - 1:region.max(0)[1] + 2] = True
            assert heat[inside].sum() > 0.95 * heat.sum()
    assert cam.trace_count == 1
    assert GradCamEngine(model, None, (16, 16, 3)).layer == "features"   # default: the last 4-D layer
    with pytest.raises(ValueError, match="not a layer of the model.*features"):
        GradCamEngine(model, "conv_5", (16, 16, 3))
    with pytest.raises(ValueError, match="needs an \\(N, h, w, channels\\) layer"):
        GradCamEngine(model, "logits", (16, 16, 3))


# -- adaptive steps ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adaptive_case():
    """Images from nearly-the-baseline (easy) to far from it (hard) on a steep tanh CNN."""
    model = small_cnn(seed=1, stddev=6.0)
    rng = np.random.default_rng(6)
    n = 8
    x = (rng.uniform(size=(n,) + SHAPE) * np.linspace(0.1, 1.0, n)[:, None, None, None]).astype(np.float32)
    return AttributionEngine(model, SHAPE, chunk_size=32), x, np.zeros_like(x)


def test_adaptive_trapezoid_meets_the_tolerance_with_fewer_samples_than_fixed_steps(adaptive_case):
    eng, x, xb = adaptive_case
    tol = 0.01
    r = adaptive_ig(eng, x, xb, tolerance=tol, start_steps=2, max_steps=1024, atol=0.0, rule="trapezoid")
    assert r.converged.all()
    gaps = rel_gap(r)
    assert np.all(gaps <= tol)
    assert np.all(r.gradient_samples == r.steps + 1)     # doubling reused every earlier point
    assert len(set(r.steps)) > 1                          # images left the batch at different rounds
    # the reused sums are the trapezoid rule at each image's final step count
    for i in range(len(x)):
        fixed = eng.integrated_gradients(x[i:i + 1], xb[i:i + 1], r.targets[i:i + 1], steps=int(r.steps[i]))
        np.testing.assert_allclose(r.attributions[i], fixed.attributions[0], rtol=1e-4, atol=1e-7)
    # the smallest fixed step count reaching the same worst-case gap (scanned, not guessed)
    worst = gaps.max()
    m = next(m for m in range(1, 1025)
             if rel_gap(eng.integrated_gradients(x, xb, r.targets, steps=m)).max() <= worst)
    assert r.gradient_samples.sum() < len(x) * (m + 1), (r.gradient_samples.sum(), m)


def test_adaptive_gauss_legendre_converges_on_fewer_samples_than_trapezoid(adaptive_case):
    eng, x, xb = adaptive_case
    trap = adaptive_ig(eng, x, xb, tolerance=0.001, start_steps=4, max_steps=1024, atol=0.0, rule="trapezoid")
    gl = adaptive_ig(eng, x, xb, tolerance=0.001, start_steps=4, max_steps=1024, rule="gauss_legendre", atol=0.0)
    assert trap.converged.all() and gl.converged.all()
    assert np.all(rel_gap(gl) <= 0.001)
    assert gl.gradient_samples.sum() < trap.gradient_samples.sum() / 2
    # no reuse for Gauss-Legendre: 4 + 8 + ... + steps samples
    np.testing.assert_array_equal(gl.gradient_samples, 2 * gl.steps - 4)


def test_adaptive_over_several_baselines_is_the_mean_of_each_baselines_run(adaptive_case):
    eng, x, _ = adaptive_case
    ids = [f"a{i}" for i in range(len(x))]
    baselines = make_baselines("uniform", x, ids, samples=2) * 0.2
    both = adaptive_ig(eng, x, baselines, tolerance=0.01, max_steps=256, atol=0.0)
    each = [adaptive_ig(eng, x, baselines[s], both.targets, tolerance=0.01, max_steps=256, atol=0.0)
            for s in range(2)]
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
    eng = AttributionEngine(model, SHAPE, chunk_size=5)
    counter.assign(0)
    r = adaptive_ig(eng, x, np.zeros_like(x), tolerance=1e-9, start_steps=2, max_steps=16, atol=0.0,
                    rule="trapezoid")
    assert not r.converged.any()
    assert np.all(r.steps == 16) and np.all(r.gradient_samples == 17)
    # per round, the active images' points are flattened together: ceil(items / chunk) model calls
    rounds = [6 * 3, 6 * 2, 6 * 4, 6 * 8]
    forward_calls = 2                                   # F(x) and F(x') (each 6 images, chunk 5)
    assert counter.numpy() == sum(-(-k // 5) for k in rounds) + forward_calls * 2


# -- seeding: batching, chunking and order do not change anything ------------------------------------------
def run_split(eng, fn, x, ids, order, sizes):
    """Run fn(engine, images, ids) on `order`-permuted sub-batches of `sizes`; reassemble."""
    out = np.empty_like(x)
    start = 0
    for size in sizes:
        idx = order[start:start + size]
        out[idx] = fn(eng, x[idx], [ids[k] for k in idx])
        start += size
    return out


SEEDED = {
    "uniform_baselines": lambda e, x, ids: e.integrated_gradients(
        x, make_baselines("uniform", x, ids, samples=3), np.zeros(len(x), np.int64), steps=5).attributions,
    "gaussian_baselines": lambda e, x, ids: e.integrated_gradients(
        x, make_baselines("gaussian", x, ids, samples=2, noise_stdev=0.3), np.ones(len(x), np.int64),
        steps=5).attributions,
    "smoothgrad_sq": lambda e, x, ids: e.gradients(
        x, np.zeros(len(x), np.int64), image_ids=ids, smoothing="smoothgrad_sq", samples=4).attributions,
    "expected_gradients": lambda e, x, ids: e.expected_gradients(
        x, REFERENCES, ids, np.full(len(x), 2), samples=6).attributions,
}
REFERENCES = np.random.default_rng(8).uniform(size=(7,) + SHAPE).astype(np.float32)


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_random_draws_do_not_depend_on_batching_chunking_or_order(engine, other_engine, batch, name):
    x, ids = batch
    other = other_engine
    whole = run_split(engine, SEEDED[name], x, ids, np.arange(5), [5])
    split = run_split(other, SEEDED[name], x, ids, np.array([3, 0, 4, 2, 1]), [2, 1, 2])
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-7 * np.abs(whole).max())
    assert np.abs(whole).max() > 0


def test_random_baselines_are_per_image_and_per_sample():
    rng = np.random.default_rng(9)
    x = rng.uniform(size=(3,) + SHAPE).astype(np.float32)
    ids = ["a", "b", "c"]
    for kind in RANDOM_BASELINES:
        b = make_baselines(kind, x, ids, samples=3)
        assert b.shape == (3, 3) + SHAPE and b.dtype == np.float32
        assert b.min() >= 0 and b.max() <= 1
        np.testing.assert_array_equal(make_baselines(kind, x[::-1], ids[::-1], samples=3)[:, ::-1], b)
        np.testing.assert_array_equal(make_baselines(kind, x[1:2], ids[1:2], samples=2)[:, 0], b[:2, 1])
        assert not np.array_equal(b[0], b[1]) and not np.array_equal(b[0, 0], b[0, 1])
    # uniform sample 0 is the stream igaudit's first uniform baseline used: old runs stay comparable
    np.testing.assert_array_equal(make_baselines("uniform", x, ids)[0, 1],
                                  np.random.default_rng(seed_from_id("b")).uniform(size=SHAPE).astype(np.float32))
    # streams differ per purpose
    assert image_rng("a", "gaussian", 0).normal() != image_rng("a", "smoothing", 0).normal()
    index, alpha = expected_gradients_draws("a", 50, 7)
    assert set(index) == set(range(7)) and 0 <= alpha.min() and alpha.max() < 1


# -- baselines ------------------------------------------------------------------------------------------
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


# -- targets -----------------------------------------------------------------------------------------
def test_targets_parse_and_resolve():
    names = ["ant", "bee", "cat", "dog"]
    probs = np.array([[0.1, 0.5, 0.3, 0.1], [0.4, 0.1, 0.1, 0.4]])
    assert resolve_targets(parse_target("predicted", names), probs).tolist() == [[1], [0]]
    assert resolve_targets(parse_target("label", names), probs, np.array([2, -1])).tolist() == [[2], [-1]]
    assert resolve_targets(parse_target("cat", names), probs).tolist() == [[2], [2]]
    assert resolve_targets(parse_target(3, names), probs).tolist() == [[3], [3]]
    assert resolve_targets(parse_target("1", names), probs).tolist() == [[1], [1]]
    top = parse_target("top_k", names, k=3)
    assert top == TargetSpec("top_k", k=3) and top.per_image == 3
    assert resolve_targets(top, probs).tolist() == [[1, 2, 0], [0, 3, 1]]   # ties: lower index first
    rows = target_rows(resolve_targets(top, probs))
    assert rows[0].tolist() == [0, 0, 0, 1, 1, 1] and rows[1].tolist() == [1, 2, 0, 0, 3, 1]
    assert parse_target("3", ["0", "1", "2", "3"]).index == 3    # a class named "3" is that class


@pytest.mark.parametrize("target,kwargs,message", [
    ("dgo", {}, "unknown class name 'dgo' \\(did you mean 'dog'\\?\\)"),
    (7, {}, "class index 7 is out of range; the model has 4 classes \\(0..3\\)"),
    (-1, {}, "class index -1 is out of range"),
    ("12", {}, "class index '12' is out of range"),
    ("top_k", {"k": 0}, "attribution.k must be a positive integer"),
    ("top_k", {"k": 5}, "attribution.k = 5 is more than the model's 4 classes"),
    (True, {}, "must be predicted, label, top_k"),
    (2.5, {}, "must be predicted, label, top_k"),
])
def test_bad_targets_are_clear_config_errors(target, kwargs, message):
    with pytest.raises(ValueError, match="attribution\\.(target|k)") as info:
        parse_target(target, ["ant", "bee", "cat", "dog"], **kwargs)
    assert info.match(message)


# -- one trace per engine --------------------------------------------------------------------------------
def test_one_trace_per_engine_across_methods_batches_targets_and_samples(engine, batch):
    x, ids = batch
    for n in (1, 4, 2):                                  # ragged batches
        t = np.arange(n) % 3
        engine.gradients(x[:n], t, image_ids=ids[:n], smoothing="smoothgrad", samples=n + 1)
        engine.integrated_gradients(x[:n], make_baselines("uniform", x[:n], ids[:n], samples=n), t,
                                    rule="gauss_legendre", steps=3 + n)
        engine.expected_gradients(x[:n], REFERENCES[:n + 2], ids[:n], samples=n + 2)
        engine.occlusion(x[:n], t, window=2 + n, stride=n)
        adaptive_ig(engine, x[:n], np.zeros_like(x[:n]), t, tolerance=0.05, max_steps=32)
    assert engine.trace_counts == {"gradients": 1, "forward": 1, "occlusion": 1, "point_gradients": 1}
