"""The Integrated Gradients engine: pure TensorFlow, no Beam.

IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x'))/dx_i da, approximated
by a quadrature rule: a set of alphas and weights.

The (image, alpha) pairs of a batch are flattened and run through the model in
chunks of a fixed size inside one traced function (a `tf.while_loop`), so:
  - the model always sees the same batch shape (the last chunk is padded and
    its padding weighted zero): one trace per model, no retracing on ragged
    batches, targets or step counts (all are tensors);
  - weighted gradients are accumulated per image as chunks finish, so memory
    is O(chunk x H x W x C + batch x H x W x C), never O(steps x ...);
  - there is no host round-trip inside the chunk loop.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

RULES = ("riemann_left", "riemann_right", "riemann_middle", "trapezoid", "gauss_legendre")
SCORES = ("probability", "logit")
OUTPUTS = ("logits", "probabilities")


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Alphas in [0, 1] and weights summing to 1 for `rule` with `steps` intervals.

    riemann_* and gauss_legendre use `steps` points; trapezoid uses steps + 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    m = int(steps)
    if rule == "riemann_left":
        alphas = np.arange(m) / m
        weights = np.full(m, 1.0 / m)
    elif rule == "riemann_right":
        alphas = (np.arange(m) + 1.0) / m
        weights = np.full(m, 1.0 / m)
    elif rule == "riemann_middle":
        alphas = (np.arange(m) + 0.5) / m
        weights = np.full(m, 1.0 / m)
    elif rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, m + 1)
        weights = np.full(m + 1, 1.0 / m)
        weights[0] = weights[-1] = 0.5 / m
    elif rule == "gauss_legendre":
        nodes, w = np.polynomial.legendre.leggauss(m)
        alphas = (nodes + 1.0) / 2.0
        weights = w / 2.0
    else:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    return alphas.astype(np.float64), weights.astype(np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class IGBatch:
    """What the engine returns for a batch of N images."""
    attributions: np.ndarray    # N x H x W x C float32
    outputs: np.ndarray         # N x K model outputs at the inputs
    predicted: np.ndarray       # N int
    confidence: np.ndarray      # N softmax probability of the predicted class
    targets: np.ndarray         # N int, the class each attribution explains
    score_input: np.ndarray     # N, F(x)
    score_baseline: np.ndarray  # N, F(x')
    completeness_gap: np.ndarray  # N, sum(IG) - (F(x) - F(x'))
    gradient_samples: int       # per image


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class IGEngine:
    """Batched IG for one model.

    `model` maps float32 pixels (N, H, W, C) in the attribution space (for
    igaudit: [0, 1], with the model's own input scaling inside) to outputs
    (N, K), either logits or probabilities (`output`). The differentiated
    score is the target's softmax probability or its logit (`score`).
    """

    def __init__(self, model: Callable[[tf.Tensor], tf.Tensor], input_shape: tuple[int, int, int], *,
                 output: str = "logits", score: str = "probability", rule: str = "trapezoid",
                 steps: int = 50, chunk_size: int = 64, jit_compile: bool = False):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model = model
        self.input_shape = tuple(int(d) for d in input_shape)
        self.output = output
        self.score = score
        self.rule = rule
        self.steps = int(steps)
        self.chunk_size = int(chunk_size)
        alphas, weights = quadrature(rule, steps)
        self._alphas = alphas.astype(np.float32)
        self._weights = weights.astype(np.float32)
        self.trace_count = 0            # traces of the integration function
        self.forward_trace_count = 0
        image_spec = tf.TensorSpec((None,) + self.input_shape, tf.float32)
        self._integrate = tf.function(
            self._integrate_graph, jit_compile=jit_compile,
            input_signature=[image_spec, image_spec, tf.TensorSpec([None], tf.int32),
                             tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)])
        self._forward = tf.function(self._forward_graph, input_signature=[image_spec])

    @property
    def gradient_samples(self) -> int:
        return int(self._alphas.shape[0])

    # -- traced parts -------------------------------------------------------
    def _score_graph(self, x: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        out = tf.cast(self.model(x), tf.float32)
        if self.score == "probability":
            values = tf.nn.softmax(out, axis=-1) if self.output == "logits" else out
        else:
            values = out if self.output == "logits" else tf.math.log(tf.maximum(out, 1e-30))
        return tf.gather(values, targets, axis=1, batch_dims=1)

    def _forward_graph(self, images: tf.Tensor) -> tf.Tensor:
        self.forward_trace_count += 1
        return tf.cast(self.model(images), tf.float32)

    def _integrate_graph(self, images, baselines, targets, alphas, weights):
        self.trace_count += 1  # Python side effect: runs once per trace only
        n = tf.shape(images)[0]
        p = tf.shape(alphas)[0]
        total = n * p
        c = self.chunk_size
        num_chunks = (total + c - 1) // c
        diffs = images - baselines

        def body(i, accum):
            k = i * c + tf.range(c)
            valid = k < total
            k = tf.minimum(k, total - 1)  # padding repeats the last pair; its weight is zero
            image_index = k // p
            step_index = k % p
            a = tf.gather(alphas, step_index)
            w = tf.gather(weights, step_index) * tf.cast(valid, tf.float32)
            x = tf.gather(baselines, image_index) + a[:, None, None, None] * tf.gather(diffs, image_index)
            t = tf.gather(targets, image_index)
            with tf.GradientTape() as tape:
                tape.watch(x)
                s = self._score_graph(x, t)
            # Samples are independent (inference mode), so d(sum s)/dx is per-sample.
            g = tape.gradient(s, x) * w[:, None, None, None]
            accum = tf.tensor_scatter_nd_add(accum, image_index[:, None], g)
            return i + 1, accum

        _, accum = tf.while_loop(lambda i, _: i < num_chunks, body,
                                 (tf.constant(0), tf.zeros_like(images)))
        return diffs * accum

    # -- numpy API ----------------------------------------------------------
    def forward(self, images: np.ndarray) -> np.ndarray:
        """Model outputs for a batch of images (N, K)."""
        return self._forward(tf.convert_to_tensor(images, tf.float32)).numpy()

    def score_of(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """F for given model outputs and targets, computed like the traced score."""
        outputs = outputs.astype(np.float64)
        if self.score == "probability":
            values = _softmax(outputs) if self.output == "logits" else outputs
        else:
            values = outputs if self.output == "logits" else np.log(np.maximum(outputs, 1e-30))
        return values[np.arange(len(targets)), targets]

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        return _softmax(outputs.astype(np.float64)) if self.output == "logits" else outputs.astype(np.float64)

    def attribute(self, images: np.ndarray, baselines: np.ndarray,
                  targets: Optional[np.ndarray] = None) -> IGBatch:
        """IG for a batch. `targets[i] < 0` (or no targets) means: the predicted class."""
        images = np.ascontiguousarray(images, np.float32)
        baselines = np.ascontiguousarray(np.broadcast_to(baselines, images.shape), np.float32)
        n = images.shape[0]
        if images.shape[1:] != self.input_shape:
            raise ValueError(f"images have shape {images.shape[1:]}, engine expects {self.input_shape}")
        outputs = self.forward(np.concatenate([images, baselines]))
        out_x, out_b = outputs[:n], outputs[n:]
        probs = self.probabilities(out_x)
        predicted = probs.argmax(axis=1)
        confidence = probs[np.arange(n), predicted]
        if targets is None:
            targets = predicted.copy()
        else:
            targets = np.asarray(targets, np.int64).copy()
            targets[targets < 0] = predicted[targets < 0]
        attributions = self._integrate(
            tf.constant(images), tf.constant(baselines), tf.constant(targets, tf.int32),
            tf.constant(self._alphas), tf.constant(self._weights)).numpy()
        score_input = self.score_of(out_x, targets)
        score_baseline = self.score_of(out_b, targets)
        gap = attributions.reshape(n, -1).sum(axis=1, dtype=np.float64) - (score_input - score_baseline)
        return IGBatch(attributions=attributions, outputs=out_x, predicted=predicted,
                       confidence=confidence, targets=targets, score_input=score_input,
                       score_baseline=score_baseline, completeness_gap=gap,
                       gradient_samples=self.gradient_samples)
