"""The two reference IG implementations igaudit's engine is compared with, as their sources publish them.

- `TutorialIG`: the TensorFlow tutorial "Integrated gradients"
  (tensorflow.org/tutorials/interpretability/integrated_gradients): one image at a
  time, alphas = linspace(0, 1, m_steps + 1) in batches of `batch_size` (32), a
  `@tf.function`-decorated `one_batch` (interpolate + gradient), the trapezoidal
  `integral_approximation`, Python loop over alpha batches, target class as a
  Python int. As published, `one_batch` is traced once per (alpha-batch length,
  target class); the benchmark warms it up on its images first, so the timed
  calls run cached traces. `TutorialIG(model, eager=True)` is the same code
  without the decorator: gradient calls in eager mode.
- `keras_example_ig`: the Keras code example "Model interpretability with
  Integrated Gradients" (keras.io/examples/vision/integrated_gradients):
  interpolate all m + 1 images in numpy, then one eager `get_gradients` call per
  step with a batch of one, trapezoid in TensorFlow.

The models here return logits; the tutorial applies the softmax itself (its
TF-Hub model returns logits too) and the Keras example's model has the softmax
built in, so it gets `softmax(model(x))`: every implementation differentiates
the target's softmax probability, as igaudit does by default.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


class TutorialIG:
    def __init__(self, model, eager: bool = False):
        self.model = model
        self.one_batch = self._one_batch if eager else tf.function(self._one_batch)

    @staticmethod
    def interpolate_images(baseline, image, alphas):
        alphas_x = alphas[:, tf.newaxis, tf.newaxis, tf.newaxis]
        baseline_x = tf.expand_dims(baseline, axis=0)
        input_x = tf.expand_dims(image, axis=0)
        delta = input_x - baseline_x
        images = baseline_x + alphas_x * delta
        return images

    def compute_gradients(self, images, target_class_idx):
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = self.model(images)
            probs = tf.nn.softmax(logits, axis=-1)[:, target_class_idx]
        return tape.gradient(probs, images)

    @staticmethod
    def integral_approximation(gradients):
        # riemann_trapezoidal
        grads = (gradients[:-1] + gradients[1:]) / tf.constant(2.0)
        integrated_gradients = tf.math.reduce_mean(grads, axis=0)
        return integrated_gradients

    def _one_batch(self, baseline, image, alpha_batch, target_class_idx):
        interpolated_path_input_batch = self.interpolate_images(baseline=baseline, image=image, alphas=alpha_batch)
        gradient_batch = self.compute_gradients(images=interpolated_path_input_batch,
                                                target_class_idx=target_class_idx)
        return gradient_batch

    def integrated_gradients(self, baseline, image, target_class_idx, m_steps=50, batch_size=32):
        alphas = tf.linspace(start=0.0, stop=1.0, num=m_steps + 1)
        gradient_batches = []
        for alpha in tf.range(0, len(alphas), batch_size):
            from_ = alpha
            to = tf.minimum(from_ + batch_size, len(alphas))
            alpha_batch = alphas[from_:to]
            gradient_batch = self.one_batch(baseline, image, alpha_batch, target_class_idx)
            gradient_batches.append(gradient_batch)
        total_gradients = tf.concat(gradient_batches, axis=0)
        avg_gradients = self.integral_approximation(gradients=total_gradients)
        integrated_gradients = (image - baseline) * avg_gradients
        return integrated_gradients


def keras_example_ig(model, img_input: np.ndarray, top_pred_idx: int, baseline=None, num_steps=50):
    """`get_integrated_gradients` of the Keras example (its xception preprocessing step dropped:
    the models here take [0, 1] pixels)."""
    probabilities = lambda x: tf.nn.softmax(model(x), axis=-1)  # noqa: E731 - the example's softmax head

    def get_gradients(img_input, top_pred_idx):
        images = tf.cast(img_input, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(images)
            preds = probabilities(images)
            top_class = preds[:, top_pred_idx]
        grads = tape.gradient(top_class, images)
        return grads

    if baseline is None:
        baseline = np.zeros(img_input.shape).astype(np.float32)
    else:
        baseline = baseline.astype(np.float32)
    # 1. Do interpolation.
    img_input = img_input.astype(np.float32)
    interpolated_image = [baseline + (step / num_steps) * (img_input - baseline) for step in range(num_steps + 1)]
    interpolated_image = np.array(interpolated_image).astype(np.float32)
    # 3. Get the gradients
    grads = []
    for i, img in enumerate(interpolated_image):
        img = tf.expand_dims(img, axis=0)
        grad = get_gradients(img, top_pred_idx=top_pred_idx)
        grads.append(grad[0])
    grads = tf.convert_to_tensor(grads, dtype=tf.float32)
    # 4. Approximate the integral using the trapezoidal rule
    grads = (grads[:-1] + grads[1:]) / 2.0
    avg_grads = tf.reduce_mean(grads, axis=0)
    # 5. Calculate integrated gradients and return
    integrated_grads = (img_input - baseline) * avg_grads
    return integrated_grads
