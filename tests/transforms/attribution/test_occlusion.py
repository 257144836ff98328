"""Occlusion against PAIR's `saliency` package and against the analytic map of a linear model."""
import numpy as np
import tensorflow as tf

from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.occlusion import occlusion, occlusion_windows
from tests.transforms.attribution.helpers import SHAPE, linear_model


def test_occlusion_matches_pair_occlusion_up_to_its_normalisation(engine, cnn, batch):
    import saliency.core as saliency
    from saliency.core import base as saliency_base
    x, _ = batch
    window = 3
    ours = occlusion(engine, x[:1], window=window, stride=1, fill=0.0)
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


def test_occlusion_on_a_linear_model_is_the_analytic_map():
    rng = np.random.default_rng(5)
    w = rng.normal(size=int(np.prod(SHAPE))).astype(np.float32)
    eng = GradientEngine(linear_model(w), SHAPE, output="logits", score="logit", chunk_size=10)
    x = rng.uniform(size=(2,) + SHAPE).astype(np.float32)
    fill = np.array([0.5, 0.2, 0.0], np.float32)
    window, stride = 3, 2
    r = occlusion(eng, x, np.zeros(2, np.int64), window=window, stride=stride, fill=fill)
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
    tiled = occlusion(eng, x, np.zeros(2, np.int64), window=4, stride=4, fill=fill)
    np.testing.assert_allclose(tiled.attributions.sum(axis=(1, 2, 3)), contrib.sum(axis=(1, 2, 3)), rtol=1e-4)
