"""The one score every method explains: the target's softmax probability or its logit.

`class_values` turns a model's raw outputs (logits or probabilities, `model.output`) into the
per-class values the score reads (`attribution.score`); `target_scores` picks the target's.
Both are TensorFlow ops on any float dtype: the traced gradient loops call them on float32
tensors, and `score_of` / `probabilities` call them eagerly on float64 copies of outputs that
have left the graph, so the host-side numbers (F(x), F(x'), confidences) are the same formula
at double precision rather than a second implementation of it.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

# The smallest probability whose log is taken (score: logit on a model that outputs probabilities).
_TINY = 1e-30


def class_values(outputs: tf.Tensor, score: str, output: str) -> tf.Tensor:
    """(N, K) outputs -> (N, K) values: probabilities (softmax of logits) or logits (log of probabilities)."""
    if score == "probability":
        return tf.nn.softmax(outputs, axis=-1) if output == "logits" else outputs
    return outputs if output == "logits" else tf.math.log(tf.maximum(outputs, tf.cast(_TINY, outputs.dtype)))


def target_scores(outputs: tf.Tensor, targets: tf.Tensor, score: str, output: str) -> tf.Tensor:
    """(N, K) outputs and (N,) int targets -> (N,) F: the target's value."""
    return tf.gather(class_values(outputs, score, output), targets, axis=1, batch_dims=1)


def score_of(outputs: np.ndarray, targets: np.ndarray, score: str, output: str) -> np.ndarray:
    """`target_scores` on outputs that left the graph, in float64."""
    values = target_scores(tf.constant(np.asarray(outputs, np.float64)),
                           tf.constant(np.asarray(targets, np.int64)), score, output)
    return values.numpy()


def probabilities(outputs: np.ndarray, output: str) -> np.ndarray:
    """Softmax probabilities (N, K) float64 of outputs that left the graph."""
    return class_values(tf.constant(np.asarray(outputs, np.float64)), "probability", output).numpy()
