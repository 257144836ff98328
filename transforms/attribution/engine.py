"""The chunked gradient primitive every gradient method runs through, and the model's forward pass.

`GradientEngine` wraps one model (float32 pixels (N, H, W, C) in the attribution space, for
igaudit [0, 1] with the model's own input scaling inside, -> outputs (N, K), logits or
probabilities) and its score (`scoring`). Every gradient method is a set of *paths*, each
a start point, an end point and a target, plus *items* on them (path, alpha, weight); an
item's gradient is taken at start + alpha (end - start):

  - `gradient_sums`: per path, the weighted sum of its items' gradients (IG on a fixed rule,
    expected gradients, plain gradients; memory O(chunk + paths) x H x W x C);
  - `point_gradients`: every item's gradient and score (`rule: adaptive` keeps each node).

Both run the items through `chunks` (balanced chunks, one trace per engine and chunk size:
every input is a tensor with a `None` batch dimension, so the batch, method, target, step
count and sample count never retrace). `forward` runs the model alone, in padded chunks.
Methods with a graph of their own (occlusion, Grad-CAM) get it traced per chunk size through
`function`.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from igaudit.transforms.attribution import chunks, scoring
from igaudit.transforms.attribution.result import Head, MethodResult, make_result


class GradientEngine:
    """Batched, traced forward passes and input gradients of one model's score.

    output: what the model returns (logits | probabilities); score: what is explained
    (probability | logit of the target). chunk_size: items per model call; it can be changed
    (`chunk_size` attribute), each size tracing its functions once. device (e.g. "/GPU:0")
    places the computations; None leaves placement to TensorFlow.
    """

    def __init__(self, model: Callable[[tf.Tensor], tf.Tensor], input_shape: Sequence[int], *, output: str,
                 score: str, chunk_size: int, jit_compile: bool = False,
                 parallel_iterations: int = chunks.PARALLEL_ITERATIONS, device: Optional[str] = None):
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if parallel_iterations < 1:
            raise ValueError(f"parallel_iterations must be >= 1, got {parallel_iterations}")
        self.model = model
        self.input_shape = tuple(int(d) for d in input_shape)
        self.output, self.score = output, score
        self.chunk_size = int(chunk_size)
        self.jit_compile = bool(jit_compile)
        self.parallel_iterations = int(parallel_iterations)
        self.device = device
        self.trace_counts: dict[str, int] = {}
        self._functions: dict = {}
        image = tf.TensorSpec((None,) + self.input_shape, tf.float32)
        ints, floats = tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32)
        self.image_spec, self.ints_spec, self.floats_spec = image, ints, floats
        self._signatures = {"forward": [image], "gradients": [image, image, ints, ints, floats, floats],
                            "point_gradients": [image, image, ints, ints, floats]}

    # -- tracing ----------------------------------------------------------------------------------------
    def function(self, name: str, graph: Callable, signature: Sequence[tf.TensorSpec]):
        """`graph(*inputs, chunk_size)` traced for this engine's current chunk size: once per (name, size).
        trace_counts[name] counts the traces."""
        key = (name, self.chunk_size)
        if key not in self._functions:
            size = self.chunk_size

            def traced(*inputs):
                self.trace_counts[name] = self.trace_counts.get(name, 0) + 1   # Python side effect: per trace
                return graph(*inputs, size)

            self._functions[key] = tf.function(traced, jit_compile=self.jit_compile, input_signature=signature,
                                                 autograph=False)   # explicit loops: AutoGraph would only cost startup
        return self._functions[key]

    def run(self, name: str, graph: Callable, signature: Sequence[tf.TensorSpec], *inputs):
        """Call the traced `graph` on `inputs`, on the engine's device."""
        fn = self.function(name, graph, signature)
        if self.device is None:
            return fn(*inputs)
        with tf.device(self.device):
            return fn(*inputs)

    def forget_other_chunk_sizes(self) -> None:
        """Drop the traced functions of chunk sizes other than the current one (after a probe)."""
        self._functions = {key: fn for key, fn in self._functions.items() if key[1] == self.chunk_size}

    @property
    def balanced(self) -> bool:
        """Balanced chunks (dynamic size), except under XLA, which compiles every distinct shape."""
        return not self.jit_compile

    # -- traced parts ---------------------------------------------------------------------------------
    def scores(self, outputs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        return scoring.target_scores(tf.cast(outputs, tf.float32), targets, self.score, self.output)

    def _item_gradients(self, items, starts, ends, targets, item_path, item_alpha):
        """For items: their paths, dF_t/dx at start + alpha (end - start), and F_t there. Samples are
        independent (inference mode), so the gradient of the summed scores is per-sample."""
        path = tf.gather(item_path, items)
        a = tf.gather(item_alpha, items)[:, None, None, None]
        start = tf.gather(starts, path)
        x = start + a * (tf.gather(ends, path) - start)
        with tf.GradientTape() as tape:
            tape.watch(x)
            s = self.scores(self.model(x), tf.gather(targets, path))
        return path, tape.gradient(s, x), s

    def _gradient_sums_graph(self, starts, ends, targets, item_path, item_alpha, item_weight, size):
        """Each item's weighted gradient is added to its path's sum in item order (a scatter-add): the sums
        add no dependence on which items share a chunk (a matrix product over the chunk, 1.05x faster, made
        an image's bits depend on its neighbours). Padding repeats the call's last item
        (`chunks.chunk_items`): weight 0 keeps it out, and a NaN there is that item's, on its own path."""
        total = tf.shape(item_path)[0]

        def step(i, items, valid, accum):
            path, g, _ = self._item_gradients(items, starts, ends, targets, item_path, item_alpha)
            w = tf.where(valid, tf.gather(item_weight, items), 0.0)[:, None, None, None]
            return (tf.tensor_scatter_nd_add(accum, path[:, None], g * w),)

        accum, = chunks.run(total, size, step, (tf.zeros_like(starts),), balanced=self.balanced,
                            parallel_iterations=self.parallel_iterations)
        return accum

    def _point_gradients_graph(self, starts, ends, targets, item_path, item_alpha, size):
        """One gradient and score per item, collected per chunk (a per-path accumulator would copy
        all of it on every update)."""
        def produce(items, valid):
            _, g, s = self._item_gradients(items, starts, ends, targets, item_path, item_alpha)
            return g, s

        return chunks.collect(tf.shape(item_path)[0], size, produce, (tf.float32, tf.float32),
                              balanced=self.balanced, parallel_iterations=self.parallel_iterations)

    def _forward_graph(self, images, size):
        def produce(items, valid):
            return (tf.cast(self.model(tf.gather(images, items)), tf.float32),)

        outputs, = chunks.collect(tf.shape(images)[0], size, produce, (tf.float32,), balanced=False,
                                  parallel_iterations=self.parallel_iterations)
        return outputs

    # -- numpy API ------------------------------------------------------------------------------------
    def check_images(self, images) -> np.ndarray:
        images = np.ascontiguousarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(f"images have shape {images.shape}, engine expects (N,) + {self.input_shape}")
        return images

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Model outputs (P, K) for (P, H, W, C) pixels, in chunks of `chunk_size`."""
        images = self.check_images(images)
        if images.shape[0] == 0:
            raise ValueError("forward needs at least one image")
        return self.run("forward", self._forward_graph, self._signatures["forward"], tf.constant(images)).numpy()

    def gradient_sums(self, starts: np.ndarray, ends: np.ndarray, targets: np.ndarray,
                      item_path: np.ndarray, item_alpha: np.ndarray, item_weight: np.ndarray) -> np.ndarray:
        """For each path p, the sum over its items of weight * dF_t/dx at starts[p] + alpha (ends[p] -
        starts[p]). Returns float32 (P, H, W, C)."""
        starts, ends = self.check_images(starts), self.check_images(ends)
        return self.run("gradients", self._gradient_sums_graph, self._signatures["gradients"],
                        tf.constant(starts), tf.constant(ends), tf.constant(np.asarray(targets, np.int32)),
                        tf.constant(np.asarray(item_path, np.int32)),
                        tf.constant(np.asarray(item_alpha, np.float32)),
                        tf.constant(np.asarray(item_weight, np.float32))).numpy()

    def point_gradients(self, starts: np.ndarray, ends: np.ndarray, targets: np.ndarray,
                        item_path: np.ndarray, item_alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dF_t/dx and F_t at starts[p] + alpha (ends[p] - starts[p]) for each item (path p = item_path):
        float32 (items, H, W, C) and (items,)."""
        starts, ends = self.check_images(starts), self.check_images(ends)
        grads, scores = self.run(
            "point_gradients", self._point_gradients_graph, self._signatures["point_gradients"],
            tf.constant(starts), tf.constant(ends), tf.constant(np.asarray(targets, np.int32)),
            tf.constant(np.asarray(item_path, np.int32)), tf.constant(np.asarray(item_alpha, np.float32)))
        return grads.numpy(), scores.numpy()

    def score_of(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """F for given model outputs and targets, as in the traced loops (float64)."""
        return scoring.score_of(outputs, targets, self.score, self.output)

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        return scoring.probabilities(outputs, self.output)

    def head(self, images: np.ndarray, targets: Optional[np.ndarray]) -> Head:
        """The model at `images`: outputs, prediction, confidence, and targets with -1 (or None) resolved
        to the prediction."""
        outputs = self.forward(images)
        probs = self.probabilities(outputs)
        predicted = probs.argmax(axis=1)
        confidence = probs[np.arange(len(images)), predicted]
        if targets is None:
            targets = predicted.copy()
        else:
            targets = np.asarray(targets, np.int64).reshape(len(images)).copy()
            if np.any(targets >= outputs.shape[1]):
                raise ValueError(f"target {int(targets.max())} is out of range for {outputs.shape[1]} classes")
            targets[targets < 0] = predicted[targets < 0]
        return Head(outputs, predicted, confidence, targets)

    def result(self, method: str, attributions: np.ndarray, head: Head, *, score_input=None,
               **fields) -> MethodResult:
        """A MethodResult; score_input defaults to F at the clean inputs (see result.make_result)."""
        if score_input is None:
            score_input = self.score_of(head.outputs, head.targets)
        return make_result(method, attributions, head, score_input=score_input, **fields)
