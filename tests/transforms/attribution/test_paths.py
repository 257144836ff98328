"""The path driver every gradient method runs through (`paths`): dummy inputs, smoothing against PAIR's
`GetSmoothedMask` fed the same noise, and seeded draws that depend on neither batching, chunking nor order.

Old defaults passed explicitly: smoothing samples 25 and stdev 0.15 where a test smoothed without them;
IG rule "trapezoid"; gaussian baseline noise_stdev as each test gave it.
"""
import numpy as np
import pytest
import tensorflow as tf

from igaudit.transforms.attribution.baselines import make_baselines
from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.expected_gradients import expected_gradients
from igaudit.transforms.attribution.gradient_x_input import gradient_x_input
from igaudit.transforms.attribution.gradients import gradients
from igaudit.transforms.attribution.integrated_gradients import integrated_gradients
from igaudit.transforms.attribution.paths import path_attributions, smoothing_noise
from tests.transforms.attribution.helpers import SHAPE, flat_model, pair_gradients

SMOOTHING_STDEV = 0.15     # the old default smoothing stdev


def test_dummy_inputs_get_exactly_zero_from_every_gradient_method():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 1.5, size=int(np.prod(SHAPE))).astype(np.float32)
    dummy = rng.uniform(size=a.shape) < 0.3
    a[dummy] = 0.0
    at = tf.constant(a.reshape(1, -1))
    model = flat_model(lambda f: tf.stack([tf.tanh(0.02 * tf.reduce_sum(at * f * f, 1)), tf.zeros(tf.shape(f)[0])], 1))
    eng = GradientEngine(model, SHAPE, output="logits", score="logit", chunk_size=8)
    x = rng.uniform(size=(3,) + SHAPE).astype(np.float32)
    ids = ["a", "b", "c"]
    t = np.zeros(3, np.int64)
    results = [
        integrated_gradients(eng, x, make_baselines("uniform", x, ids, samples=2), t, rule="trapezoid", steps=6),
        expected_gradients(eng, x, rng.uniform(size=(4,) + SHAPE).astype(np.float32), ids, t, samples=5),
        gradients(eng, x, t), gradient_x_input(eng, x, t),
        gradients(eng, x, t, image_ids=ids, smoothing="vargrad", samples=3, stdev=SMOOTHING_STDEV),
        integrated_gradients(eng, x, np.zeros_like(x), t, rule="trapezoid", steps=4, image_ids=ids,
                             smoothing="smoothgrad_sq", samples=3, stdev=SMOOTHING_STDEV)]
    mask = dummy.reshape(SHAPE)
    for r in results:
        assert np.all(r.attributions[:, mask] == 0.0), r.method
        assert np.all(np.abs(r.attributions[:, ~mask]).sum(axis=-1) > 0), r.method


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradients", "integrated_gradients"])
def test_smoothing_matches_pair_get_smoothed_mask_fed_the_same_noise(engine, cnn, batch, monkeypatch, method):
    import saliency.core as saliency
    x, ids = batch
    samples, stdev = 4, 0.2
    xb = np.zeros_like(x)
    kwargs = dict(image_ids=ids, samples=samples, stdev=stdev)
    if method == "gradients":
        def ours(smoothing):
            return gradients(engine, x, smoothing=smoothing, **kwargs)
        pair, extra = saliency.GradientSaliency(), {}
    else:
        def ours(smoothing):
            return integrated_gradients(engine, x, xb, rule="trapezoid", steps=None, alphas=np.linspace(0, 1, 6),
                                        weights=np.full(6, 1 / 6), smoothing=smoothing, **kwargs)
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


REFERENCES = np.random.default_rng(8).uniform(size=(7,) + SHAPE).astype(np.float32)
SEEDED = {
    "uniform_baselines": lambda e, x, ids: integrated_gradients(
        e, x, make_baselines("uniform", x, ids, samples=3), np.zeros(len(x), np.int64), rule="trapezoid",
        steps=5).attributions,
    "gaussian_baselines": lambda e, x, ids: integrated_gradients(
        e, x, make_baselines("gaussian", x, ids, samples=2, noise_stdev=0.3), np.ones(len(x), np.int64),
        rule="trapezoid", steps=5).attributions,
    "smoothgrad_sq": lambda e, x, ids: gradients(
        e, x, np.zeros(len(x), np.int64), image_ids=ids, smoothing="smoothgrad_sq", samples=4,
        stdev=SMOOTHING_STDEV).attributions,
    "expected_gradients": lambda e, x, ids: expected_gradients(
        e, x, REFERENCES, ids, np.full(len(x), 2), samples=6).attributions,
}


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_random_draws_do_not_depend_on_batching_chunking_or_order(engine, other_engine, batch, name):
    x, ids = batch
    other = other_engine
    whole = run_split(engine, SEEDED[name], x, ids, np.arange(5), [5])
    split = run_split(other, SEEDED[name], x, ids, np.array([3, 0, 4, 2, 1]), [2, 1, 2])
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-7 * np.abs(whole).max())
    assert np.abs(whole).max() > 0


@pytest.mark.parametrize("missing", ["samples", "stdev"])
def test_smoothing_needs_samples_and_stdev(engine, batch, missing):
    """New with issue 13: smoothing has no default sample count or spread any more."""
    x, ids = batch
    given = {"samples": 3, "stdev": 0.1}
    given.pop(missing)
    with pytest.raises(ValueError, match="needs samples and stdev"):
        path_attributions(engine, x, np.zeros(len(x), np.int64), ids, inner=1, start_of=lambda i, b, end: end,
                          alphas_of=lambda i, b: (np.ones(1, np.float32), np.ones(1, np.float32)),
                          multiply="one", smoothing="smoothgrad", **{"samples": None, "stdev": None, **given})


def test_an_image_among_the_references_never_draws_itself():
    """Its own draw is a zero-length path: with 3 references and 8 draws, 1 in 6561 images would get an
    all-zero attribution by chance (a flaky end-to-end test once did)."""
    from igaudit.transforms.attribution.expected_gradients import draws, not_itself
    rng = np.random.default_rng(3)
    refs = rng.uniform(size=(3,) + SHAPE).astype(np.float32)
    assert list(not_itself(refs[1], refs)) == [0, 2]
    assert list(not_itself(refs[1], refs[1:2])) == [0]          # itself is all there is: kept
    for i in range(200):
        index, _ = draws(f"img{i}", 8, 3, not_itself(refs[1], refs))
        assert 1 not in index
    model = flat_model(lambda f: tf.stack([tf.reduce_sum(f * f, 1), tf.zeros(tf.shape(f)[0])], 1))
    eng = GradientEngine(model, SHAPE, output="logits", score="logit", chunk_size=8)
    ids = [f"id{i}" for i in range(40)]
    x = np.repeat(refs[1:2], 40, axis=0)
    r = expected_gradients(eng, x, refs, ids, np.zeros(40, np.int64), samples=2)
    assert (np.abs(r.attributions).reshape(40, -1).sum(1) > 0).all()
