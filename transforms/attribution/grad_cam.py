"""Grad-CAM (Selvaraju et al. 2017) for a Keras model: ReLU(sum_k mean_ij(dS/dA_ijk) A_k) at one conv layer.

The map is taken at `attribution.layer` (default: the last layer with (N, h, w, k) output, the
paper's choice), upsampled bilinearly to the input size and repeated in each channel, so it
drops into the pipeline's H x W x C contract. SavedModel and TF-Hub models have no layers to
take activations from. No completeness identity: `completeness_gap` is NaN.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from igaudit.transforms.attribution import chunks, scoring
from igaudit.transforms.attribution.result import Batch, Head, MethodResult, make_result

COMPLETENESS = False
NEEDS_REFERENCES = False


def explain(explainer, batch: Batch) -> MethodResult:
    a = explainer.attribution
    cam = explainer.cache.get("grad_cam")
    if cam is None:
        cam = explainer.cache["grad_cam"] = GradCam(explainer.classifier, a.layer, explainer.engine)
    return cam.attribute(batch.images, batch.targets)


def _output_rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, TypeError):   # unbuilt layers, several outputs
        return -1


class GradCam:
    """Grad-CAM maps for a keras.Model, or a `models.Classifier` loaded from a Keras file, through the
    engine's traced functions (`engine.GradientEngine.run`: one trace per chunk size, its chunk loop, device
    and XLA setting; the engine's score, e.g. the target's logit as in the paper, or its probability). Pixels
    are in [0, 1] and scaled to the Classifier's input range inside, as the engine's model does."""

    def __init__(self, model, layer: Optional[str], engine):
        import keras
        input_range, output = (0.0, 1.0), engine.output

        if not isinstance(model, keras.Model):
            inner = getattr(model, "_model", None)
            if getattr(model, "kind", None) == "keras" and isinstance(inner, keras.Model):
                input_range = tuple(model.spec.input_range)
                output = model.spec.output
                model = inner
            else:
                raise ValueError("grad_cam needs a Keras model (a .keras file); SavedModel and TF-Hub models "
                                 "have no layers to take activations from: use another attribution.method")
        four_d = [lay.name for lay in model.layers if _output_rank(lay) == 4]
        if layer is None:
            if not four_d:
                raise ValueError("grad_cam: the model has no layer with (N, h, w, channels) output; "
                                 "set attribution.layer")
            layer = four_d[-1]
        try:
            target_layer = model.get_layer(layer)
        except ValueError:
            raise ValueError(f"attribution.layer {layer!r} is not a layer of the model; layers with "
                             f"(N, h, w, channels) output: {', '.join(four_d) or 'none'}") from None
        if _output_rank(target_layer) != 4:
            raise ValueError(f"attribution.layer {layer!r} outputs shape {tuple(target_layer.output.shape)}; "
                             f"grad_cam needs an (N, h, w, channels) layer, e.g. one of: {', '.join(four_d)}")
        self.layer = layer
        try:
            if isinstance(model, keras.Sequential):
                # A Sequential loaded from a file may have layer outputs from a build-time graph that
                # is not the one model.outputs comes from; chaining the layers anew keeps them joined.
                x = inputs = keras.Input(tuple(model.inputs[0].shape[1:]))
                for lay in model.layers:
                    x = lay(x)
                    if lay.name == layer:
                        activations = x
                self._model = keras.Model(inputs, [activations, x])
            else:
                self._model = keras.Model(model.inputs, [target_layer.output, model.outputs[0]])
        except (AttributeError, ValueError, TypeError) as e:   # e.g. subclassed models have no graph
            raise ValueError(f"grad_cam cannot read layer {layer!r}'s activations from this model "
                             f"({type(e).__name__}: {e}); it needs a functional or Sequential Keras model") from e
        self.engine = engine
        self.input_shape = engine.input_shape
        self.input_range = tuple(float(v) for v in input_range)
        self.output, self.score = output, engine.score

    def _cam_graph(self, images, targets, size):
        lo, hi = self.input_range

        def produce(items, valid):
            x = lo + tf.gather(images, items) * (hi - lo)
            t = tf.gather(targets, items)
            with tf.GradientTape() as tape:
                acts, out = self._model(x, training=False)
                acts, out = tf.cast(acts, tf.float32), tf.cast(out, tf.float32)
                t = tf.where(t < 0, tf.argmax(out, axis=-1, output_type=tf.int32), t)
                s = scoring.target_scores(out, t, self.score, self.output)
            grads = tape.gradient(s, acts)                          # c x h x w x k, per sample
            channel_weights = tf.reduce_mean(grads, axis=[1, 2])    # c x k
            return tf.nn.relu(tf.einsum("chwk,ck->chw", acts, channel_weights)), out

        return chunks.collect(tf.shape(images)[0], size, produce, (tf.float32, tf.float32),
                              balanced=False, parallel_iterations=self.engine.parallel_iterations)

    def attribute(self, images: np.ndarray, targets: Optional[np.ndarray] = None, *, upsample: bool = True,
                  broadcast_channels: bool = True) -> MethodResult:
        """Grad-CAM maps, not normalised. upsample: bilinear (half-pixel centres) to the input H x W, else
        the layer's h x w. broadcast_channels: the map repeated in each of the C channels (N, H, W, C)
        (sum over channels = C x map; masks are scaled anyway), else (N, H, W, 1)."""
        images = np.ascontiguousarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(f"images have shape {images.shape}, engine expects (N,) + {self.input_shape}")
        n = len(images)
        requested = np.full(n, -1, np.int64) if targets is None else np.asarray(targets, np.int64).reshape(n)
        cams, outputs = self.engine.run("grad_cam", self._cam_graph, [self.engine.image_spec, self.engine.ints_spec],
                                        tf.constant(images), tf.constant(requested.astype(np.int32)))
        outputs = outputs.numpy().astype(np.float64)
        if np.any(requested >= outputs.shape[1]):
            raise ValueError(f"target {int(requested.max())} is out of range for {outputs.shape[1]} classes")
        cams = cams[..., None]
        if upsample:
            cams = tf.image.resize(cams, self.input_shape[:2], method="bilinear")
        cams = cams.numpy().astype(np.float32)
        if broadcast_channels:
            cams = np.repeat(cams, self.input_shape[-1], axis=-1)
        probs = scoring.probabilities(outputs, self.output)
        predicted = probs.argmax(axis=1)
        resolved = np.where(requested < 0, predicted, requested)
        head = Head(outputs, predicted, probs[np.arange(n), predicted], resolved)
        return make_result("grad_cam", cams, head, score_input=scoring.score_of(outputs, resolved, self.score,
                                                                                self.output),
                           gap=False, gradient_samples=1)
