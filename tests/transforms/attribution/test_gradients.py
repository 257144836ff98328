"""Saliency (`gradients`) and gradient x input against PAIR's `saliency` package."""
import numpy as np

from igaudit.transforms.attribution.gradient_x_input import gradient_x_input
from igaudit.transforms.attribution.gradients import gradients
from tests.transforms.attribution.helpers import pair_gradients


def test_gradients_match_pair_gradient_saliency(engine, cnn, batch):
    import saliency.core as saliency
    x, _ = batch
    ours = gradients(engine, x)
    for i in range(len(x)):
        theirs = saliency.GradientSaliency().GetMask(x[i], pair_gradients(cnn, int(ours.targets[i])))
        # float32 rounding: one image at a time (PAIR) vs a batch of five (ours) take different
        # convolution code paths
        np.testing.assert_allclose(ours.attributions[i], theirs, rtol=1e-4, atol=1e-7)
    gxi = gradient_x_input(engine, x)
    np.testing.assert_allclose(gxi.attributions, ours.attributions * x, rtol=1e-6)
