"""The GradientEngine's mechanisms, tested as mechanisms (no timings are asserted): one trace per model and
function whatever the batch, targets, step counts, methods and samples; device placement.

Old IGEngine / AttributionEngine defaults passed explicitly: output "logits", score "probability", IG rule
"trapezoid"; occlusion fill 0.0; smoothing stdev 0.15; adaptive_ig rule "adaptive", pixel_tolerance 0.08.
"""
import numpy as np
import pytest
import tensorflow as tf

from igaudit.transforms.attribution.baselines import make_baselines
from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.expected_gradients import expected_gradients
from igaudit.transforms.attribution.gradients import gradients
from igaudit.transforms.attribution.integrated_gradients import adaptive_ig, integrated_gradients
from igaudit.transforms.attribution.occlusion import occlusion
from igaudit.transforms.attribution.quadrature import quadrature
from tests.transforms.attribution.helpers import CLASSES12 as CLASSES
from tests.transforms.attribution.helpers import SHAPE, SHAPE12, cnn12, flat_model
from tests.transforms.attribution.helpers import images12 as images


@pytest.fixture(scope="module")
def model():
    return cnn12()


def engine_for(model, chunk_size, **kwargs):
    return GradientEngine(model, SHAPE12, output="logits", score="probability", chunk_size=chunk_size, **kwargs)


def test_one_trace_across_ragged_batches_many_targets_and_step_counts(model):
    engine = engine_for(model, 8)
    calls = [  # (batch size, steps, rule): ragged, and never a multiple of the chunk
        (1, None, None), (5, None, None), (3, 4, None), (7, 33, None), (2, 9, "gauss_legendre"),
        (4, 6, "riemann_middle"), (6, None, None)]
    seen_targets = set()
    for i, (n, steps, rule) in enumerate(calls):
        x = images(n, i)
        targets = (np.arange(n) + i) % CLASSES  # every class comes up as a target
        seen_targets.update(targets.tolist())
        # None: what the old engine was built with (trapezoid, 10 steps)
        r = integrated_gradients(engine, x, np.zeros_like(x), targets, rule=rule or "trapezoid", steps=steps or 10)
        assert r.attributions.shape == (n,) + SHAPE12
        expected_samples = len(quadrature(rule or "trapezoid", steps or 10)[0])
        assert np.all(r.gradient_samples == expected_samples)
        np.testing.assert_array_equal(r.targets, targets)
    assert seen_targets == set(range(CLASSES))
    assert engine.trace_counts["gradients"] == 1
    assert engine.trace_counts["forward"] == 1


@pytest.mark.slow
def test_an_engine_used_with_other_quadratures_gives_what_a_fresh_one_gives(model):
    """The quadrature is per call (tensors): an engine that ran trapezoid 10 first gives the same
    Gauss-Legendre 16 as a fresh engine (was: per-call steps vs an IGEngine built with them)."""
    x = images(3, 10)
    used = engine_for(model, 8)
    integrated_gradients(used, x, np.zeros_like(x), rule="trapezoid", steps=10)
    per_call = integrated_gradients(used, x, np.zeros_like(x), rule="gauss_legendre", steps=16)
    built = integrated_gradients(engine_for(model, 8), x, np.zeros_like(x), rule="gauss_legendre", steps=16)
    np.testing.assert_allclose(per_call.attributions, built.attributions, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(per_call.completeness_gap, built.completeness_gap, atol=1e-6)
    assert used.trace_counts["gradients"] == 1


@pytest.mark.slow
def test_device_placement_on_cpu(model):
    x = images(2, 5)
    placed = integrated_gradients(engine_for(model, 4, device="/CPU:0"), x, np.zeros_like(x), rule="trapezoid",
                                  steps=4)
    default = integrated_gradients(engine_for(model, 4), x, np.zeros_like(x), rule="trapezoid", steps=4)
    np.testing.assert_allclose(placed.attributions, default.attributions, rtol=1e-5, atol=1e-7)


REFERENCES = np.random.default_rng(8).uniform(size=(7,) + SHAPE).astype(np.float32)


def test_one_trace_per_engine_across_methods_batches_targets_and_samples(engine, batch):
    x, ids = batch
    for n in (1, 4, 2):                                  # ragged batches
        t = np.arange(n) % 3
        gradients(engine, x[:n], t, image_ids=ids[:n], smoothing="smoothgrad", samples=n + 1, stdev=0.15)
        integrated_gradients(engine, x[:n], make_baselines("uniform", x[:n], ids[:n], samples=n), t,
                             rule="gauss_legendre", steps=3 + n)
        expected_gradients(engine, x[:n], REFERENCES[:n + 2], ids[:n], samples=n + 2)
        occlusion(engine, x[:n], t, window=2 + n, stride=n, fill=0.0)
        adaptive_ig(engine, x[:n], np.zeros_like(x[:n]), t, rule="adaptive", tolerance=0.05, pixel_tolerance=0.08,
                    max_steps=32)
    assert engine.trace_counts == {"gradients": 1, "forward": 1, "occlusion": 1, "point_gradients": 1}


@pytest.mark.slow
def test_each_chunk_size_traces_once_and_sizes_can_be_switched():
    """New with issue 13: the chunk size is an attribute (chunk_size: auto sets it); each size traces its
    functions once, and switching back reuses the earlier trace."""
    w = tf.constant(np.random.default_rng(1).normal(size=(int(np.prod(SHAPE12)), 4)).astype(np.float32) * 0.1)
    engine = engine_for(flat_model(lambda f: 3.0 * tf.tanh(f @ w)), 4)    # a plain TF function: quick to trace
    x = images(3, 11)
    first = integrated_gradients(engine, x, np.zeros_like(x), rule="trapezoid", steps=5)
    engine.chunk_size = 6
    second = integrated_gradients(engine, x, np.zeros_like(x), rule="trapezoid", steps=5)
    assert engine.trace_counts == {"gradients": 2, "forward": 2}
    engine.chunk_size = 4
    again = integrated_gradients(engine, x, np.zeros_like(x), rule="trapezoid", steps=5)
    assert engine.trace_counts == {"gradients": 2, "forward": 2}
    np.testing.assert_allclose(second.attributions, first.attributions, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(again.attributions, first.attributions, rtol=1e-6, atol=1e-8)
    engine.forget_other_chunk_sizes()
    engine.chunk_size = 6
    integrated_gradients(engine, x, np.zeros_like(x), rule="trapezoid", steps=5)
    assert engine.trace_counts == {"gradients": 3, "forward": 3}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_non_finite_gradient_stays_on_its_own_path(jit_compile):
    """A NaN gradient reaches only its own path's sum (a matrix product over the chunk would carry it to
    every path there: 0 x NaN is NaN). Path 0 runs through sqrt of a negative mean (NaN gradients);
    path 1, in the same chunks, must come out finite and as it does alone."""
    def model(x):
        m = tf.reduce_mean(x, axis=[1, 2, 3])
        return tf.stack([tf.sqrt(m) + m ** 2, -m], axis=1)

    engine = GradientEngine(model, SHAPE12, output="logits", score="probability", chunk_size=4,
                            jit_compile=jit_compile)
    starts = np.stack([np.full(SHAPE12, -1.0), np.full(SHAPE12, 0.5)]).astype(np.float32)
    ends = starts * np.float32(0.5) + np.float32(1.0) * (starts > 0)   # path 1 ends at 1.25
    alpha = np.linspace(0, 1, 5, dtype=np.float32)
    path = np.tile([0, 1], 5).astype(np.int32)                         # both paths in every chunk
    weight = np.full(10, 0.25, np.float32)
    sums = engine.gradient_sums(starts, ends, np.zeros(2, np.int32), path, np.repeat(alpha, 2), weight)
    alone = engine.gradient_sums(starts[1:], ends[1:], np.zeros(1, np.int32), np.zeros(5, np.int32), alpha,
                                 weight[:5])
    assert np.all(np.isnan(sums[0]))
    assert np.all(np.isfinite(sums[1]))
    np.testing.assert_allclose(sums[1], alone[0], rtol=1e-5, atol=1e-9)


def test_an_images_attribution_does_not_depend_on_its_batch(model):
    """The same bits for an image whatever shares its batch and chunks (runs that list files in another
    order, or batch them otherwise, must agree: tests/pipeline/test_buckets.py compares a bucket run with
    a local one). Chunks of 8 cut the paths (11 items each) at other places in each call."""
    x = images(6, 21)
    base = np.full_like(x, 0.1)
    engine = engine_for(model, 8)
    ig = lambda i: integrated_gradients(engine, x[i], base[i], None, rule="trapezoid", steps=10).attributions
    together = ig(np.arange(6))
    order = np.array([4, 1, 5, 0, 3, 2])
    np.testing.assert_array_equal(ig(order)[np.argsort(order)], together)
    np.testing.assert_array_equal(np.concatenate([ig(np.arange(1)), ig(np.arange(1, 6))]), together)
