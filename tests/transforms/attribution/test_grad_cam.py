"""Grad-CAM against PAIR's `saliency` package and on a model whose classes look at known regions; it runs
through the gradient engine's traced functions (one trace per chunk size)."""
import numpy as np
import pytest
import tensorflow as tf

from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.grad_cam import GradCam
from tests.transforms.attribution.helpers import SHAPE


@pytest.mark.slow
def test_grad_cam_matches_pair_at_the_layer_resolution(cnn, batch):
    import keras
    import saliency.core as saliency
    from saliency.core import base as saliency_base
    x, _ = batch
    features = keras.Model(cnn.inputs, [cnn.get_layer("conv1").output, cnn.outputs[0]])
    cam = cam_of(cnn, "conv1", SHAPE, chunk_size=3)       # conv2 after it: gradients vary in space
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
    assert cam.engine.trace_counts == {"grad_cam": 1}


def cam_of(model, layer, shape, chunk_size=64, score="logit"):
    return GradCam(model, layer, GradientEngine(model, shape, output="logits", score=score, chunk_size=chunk_size))


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
    cam = cam_of(model, "features", (16, 16, 3), chunk_size=3)
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
    assert cam.engine.trace_counts == {"grad_cam": 1}
    # default: the last 4-D layer
    assert cam_of(model, None, (16, 16, 3)).layer == "features"
    with pytest.raises(ValueError, match="not a layer of the model.*features"):
        cam_of(model, "conv_5", (16, 16, 3))
    with pytest.raises(ValueError, match="needs an \\(N, h, w, channels\\) layer"):
        cam_of(model, "logits", (16, 16, 3))
