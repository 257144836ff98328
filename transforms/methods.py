"""Attribution methods besides plain IG, batched like the IG engine: pure TensorFlow + numpy, no Beam.

Methods (`attribution.method`): `gradients` (saliency, dF/dx), `gradient_x_input`,
`integrated_gradients` over one or several baselines (`baseline_samples`),
`expected_gradients` (Erion et al.), `occlusion`, and `grad_cam` (`GradCamEngine`,
it needs a Keras model's layer). Each gradient method can be smoothed
(`smoothgrad`, `smoothgrad_sq`, `vargrad`). `adaptive_ig` is IG with `steps: auto`.

How the work is batched (the IG engine's approach, generalised):
  - Every gradient method is a set of *paths*: a start point, an end point and
    a target, plus *items* on them: (path, alpha, weight). An item's gradient is
    taken at start + alpha (end - start); a path's result is the weighted sum of
    its items' gradients. IG: start = baseline, end = input, items = the rule's
    alphas and weights. Gradients: start = end = input, one item. Expected
    gradients: start = a reference image, one item at a random alpha.
  - All items of a call are flattened and run through the model in chunks of a
    fixed size inside one traced `tf.function` (a `tf.while_loop`); the last
    chunk is padded with zero-weight repeats. Every input is a tensor with a
    `None` batch dimension: one trace per engine whatever the batch, method,
    target, step count or sample count, and no host round-trip inside a call.
  - Per-path sums are accumulated in the loop (scatter-add), so memory is
    O(chunk x H x W x C + paths-per-call x H x W x C). A call takes paths until
    it holds max(8 x chunk, batch x points per path) items: plain IG of a batch
    is one call, as in ig.py, padding wastes at most 1/8 of a call, and with
    many samples the host streams paths through several calls and reduces them
    per image as each image's samples complete.
  - Smoothing adds noise to the end point (the input), never the baseline, and
    does not clip it (SmoothGrad and PAIR's `GetSmoothedMask` do not either).
  - Random draws (noise, references, alphas) come from
    `transforms.baselines.image_rng(image_id, stream, sample)`: they depend only
    on the image id and the sample index, never on batching, order or chunking.

Completeness (`completeness_gap`, sum(attribution) - (F(x) - F(x'))) is reported
where it is defined: integrated gradients (F(x') is the mean over baseline
samples), expected gradients (in expectation: F(x') is the mean F over the
drawn references), and their `smoothgrad` (the gap is then measured against the
mean F over the noisy inputs; `score_input` stays F at the clean input). It is
NaN for gradients, gradient x input, grad-cam, occlusion and the squared/variance
smoothings, where no such identity holds; callers must not treat that NaN as a
failed image.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from transforms.baselines import image_rng
from transforms.ig import quadrature
from transforms.refine import refined_ig

METHODS = ("integrated_gradients", "gradients", "gradient_x_input", "expected_gradients", "grad_cam",
           "occlusion")
GRADIENT_METHODS = ("integrated_gradients", "gradients", "gradient_x_input", "expected_gradients")
SMOOTHINGS = ("none", "smoothgrad", "smoothgrad_sq", "vargrad")
SCORES = ("probability", "logit")
OUTPUTS = ("logits", "probabilities")

# Chunks a traced loop may run at once, as in ig.py: on a CPU the next chunk can start while the
# previous one finishes; each in-flight chunk holds its activations.
DEFAULT_PARALLEL_ITERATIONS = 2
DEFAULT_SMOOTHING_SAMPLES = 25
DEFAULT_SMOOTHING_STDEV = 0.15   # fraction of the [0, 1] pixel range (PAIR's default spread)


@dataclasses.dataclass(frozen=True, eq=False)
class MethodResult:
    """One method's attributions for a batch of N images (fields named as in `ig.IGBatch`)."""
    method: str
    attributions: np.ndarray        # N x H x W x C float32 (grad_cam: see GradCamEngine.attribute)
    outputs: np.ndarray             # N x K model outputs at the (clean) inputs
    predicted: np.ndarray           # N int
    confidence: np.ndarray          # N softmax probability of the predicted class
    targets: np.ndarray             # N int, the class each attribution explains
    score_input: np.ndarray         # N, F(x) at the clean input
    score_baseline: np.ndarray      # N, F(x') (mean over samples); NaN where there is no baseline
    completeness_gap: np.ndarray    # N, sum(attr) - (F(x) - F(x')); NaN where undefined (module docstring)
    gradient_samples: np.ndarray    # N int: model gradient evaluations per image
    forward_passes: np.ndarray      # N int: extra forward-only evaluations per image (occlusion, scores)
    steps: Optional[np.ndarray] = None      # adaptive IG: steps each image used (trapezoid intervals / GL points)
    converged: Optional[np.ndarray] = None  # adaptive IG: reached the tolerance before max_steps


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def smoothing_noise(image_id: str, sample: int, shape: tuple, stdev: float) -> np.ndarray:
    """The SmoothGrad noise for one (image, sample): float32 N(0, stdev) of `shape`."""
    return image_rng(image_id, "smoothing", sample).normal(0.0, stdev, size=shape).astype(np.float32)


def expected_gradients_draws(image_id: str, samples: int, num_references: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference indices (samples,) and alphas (samples,) in [0, 1) for one image's expected gradients."""
    index = np.empty(samples, np.int64)
    alpha = np.empty(samples, np.float64)
    for s in range(samples):
        rng = image_rng(image_id, "expected_gradients", s)
        index[s] = rng.integers(num_references)
        alpha[s] = rng.uniform()
    return index, alpha


def occlusion_windows(size: int, window: int, stride: int) -> np.ndarray:
    """Window starts along one axis: every `stride`, plus a last window flush with the edge,
    so every pixel is covered (a window larger than the image is clipped to it)."""
    window = min(int(window), int(size))
    starts = list(range(0, size - window + 1, int(stride)))
    if starts[-1] != size - window:
        starts.append(size - window)
    return np.asarray(starts, np.int64)


class AttributionEngine:
    """Batched gradient methods and occlusion for one model (one trace per traced function).

    `model` maps float32 pixels (N, H, W, C) in [0, 1] (scaling to the model's
    input range inside, e.g. `transforms.models.Classifier`) to outputs (N, K):
    logits or probabilities (`output`). The explained score F is the target's
    softmax probability or its logit (`score`), as in `ig.IGEngine`.
    """

    def __init__(self, model: Callable[[tf.Tensor], tf.Tensor], input_shape: tuple[int, int, int], *,
                 output: str = "logits", score: str = "probability", chunk_size: int = 64,
                 jit_compile: bool = False, parallel_iterations: int = DEFAULT_PARALLEL_ITERATIONS):
        _check_choice("output", output, OUTPUTS)
        _check_choice("score", score, SCORES)
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model = model
        self.input_shape = tuple(int(d) for d in input_shape)
        self.output, self.score = output, score
        self.chunk_size = int(chunk_size)
        self.parallel_iterations = int(parallel_iterations)
        self.jit_compile = bool(jit_compile)
        self.trace_counts = {"gradients": 0, "forward": 0, "occlusion": 0, "point_gradients": 0}
        image = tf.TensorSpec((None,) + self.input_shape, tf.float32)
        ints = tf.TensorSpec([None], tf.int32)
        floats = tf.TensorSpec([None], tf.float32)
        self._gradient_sums = tf.function(self._gradient_sums_graph, jit_compile=jit_compile,
                                          input_signature=[image, image, ints, ints, floats, floats])
        self._forward = tf.function(self._forward_graph, jit_compile=jit_compile, input_signature=[image])
        self._point_gradients = tf.function(self._point_gradients_graph, jit_compile=jit_compile,
                                            input_signature=[image, image, ints, ints, floats])
        self._occlusion = tf.function(
            self._occlusion_graph, jit_compile=jit_compile,
            input_signature=[image, ints, ints, ints, ints, tf.TensorSpec([2], tf.int32),
                             tf.TensorSpec([self.input_shape[-1]], tf.float32)])

    # -- traced parts -------------------------------------------------------
    def _score_graph(self, out: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        out = tf.cast(out, tf.float32)
        if self.score == "probability":
            values = tf.nn.softmax(out, axis=-1) if self.output == "logits" else out
        else:
            values = out if self.output == "logits" else tf.math.log(tf.maximum(out, 1e-30))
        return tf.gather(values, targets, axis=1, batch_dims=1)

    def _chunk_indices(self, i, total, size=None):
        size = self.chunk_size if size is None else size
        k = i * size + tf.range(size)
        valid = k < total
        return tf.minimum(k, total - 1), valid   # padding repeats the last entry

    def _balanced_chunks(self, total):
        """(chunks, size): the fewest chunks of at most chunk_size that hold `total` items, all of
        one size, so padding is under one item per chunk rather than up to a whole chunk. That
        matters for small calls (a refinement round of `rule: adaptive` may hold 20 items). The
        size is a tensor, so the model sees a dynamic batch dimension: still one trace. Under
        jit_compile the size stays static (XLA would compile every size)."""
        chunks = (total + self.chunk_size - 1) // self.chunk_size
        if self.jit_compile:
            return chunks, self.chunk_size
        return chunks, (total + chunks - 1) // tf.maximum(chunks, 1)

    def _item_gradients(self, k, starts, ends, targets, item_path, item_alpha):
        """For items k: their paths, dF_t/dx at start + alpha (end - start), and F_t there. Samples are
        independent (inference mode), so the gradient of the summed scores is per-sample."""
        path = tf.gather(item_path, k)
        a = tf.gather(item_alpha, k)[:, None, None, None]
        start = tf.gather(starts, path)
        x = start + a * (tf.gather(ends, path) - start)
        with tf.GradientTape() as tape:
            tape.watch(x)
            s = self._score_graph(self.model(x), tf.gather(targets, path))
        return path, tape.gradient(s, x), s

    def _gradient_sums_graph(self, starts, ends, targets, item_path, item_alpha, item_weight):
        self.trace_counts["gradients"] += 1  # Python side effect: once per trace
        total = tf.shape(item_path)[0]
        num_chunks, size = self._balanced_chunks(total)

        def body(i, accum):
            k, valid = self._chunk_indices(i, total, size)
            path, g, _ = self._item_gradients(k, starts, ends, targets, item_path, item_alpha)
            w = tf.gather(item_weight, k)[:, None, None, None]
            g = tf.where(valid[:, None, None, None], g * w, 0.0)  # where, not *0: padding may be NaN
            return i + 1, tf.tensor_scatter_nd_add(accum, path[:, None], g)

        _, accum = tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(0), tf.zeros_like(starts)),
                                  parallel_iterations=self.parallel_iterations)
        return accum

    def _point_gradients_graph(self, starts, ends, targets, item_path, item_alpha):
        """One gradient and score per item (no sums): chunks written to TensorArrays, as
        `_forward_graph` does, rather than scatter-added into a per-path accumulator, whose
        every update would copy all P x H x W x C of it."""
        self.trace_counts["point_gradients"] += 1
        total = tf.shape(item_path)[0]
        num_chunks, size = self._balanced_chunks(total)
        grads = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)
        scores = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)

        def body(i, grads, scores):
            k, _ = self._chunk_indices(i, total, size)
            _, g, s = self._item_gradients(k, starts, ends, targets, item_path, item_alpha)
            return i + 1, grads.write(i, g), scores.write(i, s)

        _, grads, scores = tf.while_loop(lambda i, *_: i < num_chunks, body, (tf.constant(0), grads, scores),
                                         parallel_iterations=self.parallel_iterations)
        return grads.concat()[:total], scores.concat()[:total]

    def _forward_graph(self, images):
        self.trace_counts["forward"] += 1
        total = tf.shape(images)[0]
        num_chunks = (total + self.chunk_size - 1) // self.chunk_size
        parts = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)

        def body(i, parts):
            k, _ = self._chunk_indices(i, total)
            return i + 1, parts.write(i, tf.cast(self.model(tf.gather(images, k)), tf.float32))

        _, parts = tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(0), parts),
                                 parallel_iterations=self.parallel_iterations)
        return parts.concat()[:total]

    def _occlusion_graph(self, images, targets, item_image, item_top, item_left, window, fill):
        self.trace_counts["occlusion"] += 1
        h, w = self.input_shape[0], self.input_shape[1]
        total = tf.shape(item_image)[0]
        num_chunks = (total + self.chunk_size - 1) // self.chunk_size
        parts = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)
        rows, cols = tf.range(h)[None, :], tf.range(w)[None, :]

        def body(i, parts):
            k, _ = self._chunk_indices(i, total)
            index = tf.gather(item_image, k)
            top, left = tf.gather(item_top, k)[:, None], tf.gather(item_left, k)[:, None]
            in_rows = (rows >= top) & (rows < top + window[0])          # c x H
            in_cols = (cols >= left) & (cols < left + window[1])        # c x W
            inside = (in_rows[:, :, None] & in_cols[:, None, :])[..., None]
            x = tf.gather(images, index)
            x = tf.where(inside, tf.broadcast_to(fill, tf.shape(x)), x)  # occluded copies built in-graph
            return i + 1, parts.write(i, self._score_graph(self.model(x), tf.gather(targets, index)))

        _, parts = tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(0), parts),
                                 parallel_iterations=self.parallel_iterations)
        return parts.concat()[:total]

    # -- numpy building blocks ----------------------------------------------
    def _check_images(self, images) -> np.ndarray:
        images = np.ascontiguousarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(f"images have shape {images.shape}, engine expects (N,) + {self.input_shape}")
        return images

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Model outputs (P, K) for (P, H, W, C) pixels, in chunks of `chunk_size`."""
        images = self._check_images(images)
        if images.shape[0] == 0:
            raise ValueError("forward needs at least one image")
        return self._forward(tf.constant(images)).numpy()

    def gradient_sums(self, starts: np.ndarray, ends: np.ndarray, targets: np.ndarray,
                      item_path: np.ndarray, item_alpha: np.ndarray, item_weight: np.ndarray) -> np.ndarray:
        """The traced primitive: for each path p, sum over its items of weight * dF_t/dx at
        starts[p] + alpha (ends[p] - starts[p]). Returns float32 (P, H, W, C)."""
        starts, ends = self._check_images(starts), self._check_images(ends)
        return self._gradient_sums(
            tf.constant(starts), tf.constant(ends), tf.constant(np.asarray(targets, np.int32)),
            tf.constant(np.asarray(item_path, np.int32)), tf.constant(np.asarray(item_alpha, np.float32)),
            tf.constant(np.asarray(item_weight, np.float32))).numpy()

    def point_gradients(self, starts: np.ndarray, ends: np.ndarray, targets: np.ndarray,
                        item_path: np.ndarray, item_alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dF_t/dx and F_t at starts[p] + alpha (ends[p] - starts[p]) for each item (path p =
        item_path): float32 (items, H, W, C) and (items,). `rule: adaptive` keeps every node's
        gradient and score, so it uses this."""
        starts, ends = self._check_images(starts), self._check_images(ends)
        grads, scores = self._point_gradients(
            tf.constant(starts), tf.constant(ends), tf.constant(np.asarray(targets, np.int32)),
            tf.constant(np.asarray(item_path, np.int32)), tf.constant(np.asarray(item_alpha, np.float32)))
        return grads.numpy(), scores.numpy()

    def score_of(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """F for given model outputs and targets, computed like the traced score (float64)."""
        outputs = np.asarray(outputs, np.float64)
        if self.score == "probability":
            values = _softmax(outputs) if self.output == "logits" else outputs
        else:
            values = outputs if self.output == "logits" else np.log(np.maximum(outputs, 1e-30))
        return values[np.arange(len(targets)), np.asarray(targets, np.int64)]

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        outputs = np.asarray(outputs, np.float64)
        return _softmax(outputs) if self.output == "logits" else outputs

    def _head(self, images: np.ndarray, targets) -> tuple:
        """Outputs at the inputs, predicted class, confidence and resolved targets (-1 -> predicted)."""
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
        return outputs, predicted, confidence, targets

    # -- the path driver ----------------------------------------------------
    def _path_attributions(self, images, targets, image_ids, *, inner: int, start_of, alphas_of, multiply: str,
                           smoothing: str, samples: int, stdev: float, end_scores: bool = False):
        """Attributions (N, H, W, C) float32 over N images x noise samples x `inner` paths.

        start_of(i, b, end) -> start point of path b of image i (end: the possibly noisy input);
        alphas_of(i, b) -> (alphas, weights) of its items; multiply: what a path's gradient
        sum is multiplied by: "diff" (end - start), "end" or "one". The result per image is
        the mean over b, then reduced over noise samples as `smoothing` says. With
        end_scores, also returns mean F(end) over noise samples per image.
        """
        _check_choice("smoothing", smoothing, SMOOTHINGS)
        n = images.shape[0]
        noise_samples = 1 if smoothing == "none" else int(samples)
        if noise_samples < 1:
            raise ValueError(f"smoothing samples must be >= 1, got {samples}")
        if smoothing != "none":
            if not stdev >= 0:
                raise ValueError(f"smoothing stdev must be >= 0, got {stdev}")
            if image_ids is None or len(image_ids) != n:
                raise ValueError("smoothing needs one image id per image (noise is seeded by image id)")
        squares = smoothing in ("smoothgrad_sq", "vargrad")
        sum1 = np.zeros(images.shape, np.float64)
        sum2 = np.zeros(images.shape, np.float64) if squares else None
        end_score_sum = np.zeros(n, np.float64)
        # Items per call: the whole batch's first sample at least, else 8 chunks (padding <= 1/8).
        budget = max(8 * self.chunk_size, n * len(alphas_of(0, 0)[0]))

        def end_of(i, s):
            if smoothing == "none":
                return images[i]
            return images[i] + smoothing_noise(image_ids[i], s, images.shape[1:], stdev)

        def paths():
            for s in range(noise_samples):
                for i in range(n):
                    end = end_of(i, s)
                    for b in range(inner):
                        yield s, i, b, end

        open_units: dict = {}           # (s, i) -> running sum of its finished paths
        pending, pending_items = [], 0

        def run(batch):
            starts = np.stack([start_of(i, b, end) for _, i, b, end in batch])
            ends = np.stack([end for *_, end in batch])
            items = [alphas_of(i, b) for _, i, b, _ in batch]
            item_path = np.concatenate([np.full(len(a), p, np.int32) for p, (a, _) in enumerate(items)])
            sums = self.gradient_sums(starts, ends, targets[[i for _, i, _, _ in batch]], item_path,
                                      np.concatenate([a for a, _ in items]), np.concatenate([w for _, w in items]))
            if end_scores:
                fresh = [p for p, (_, _, b, _) in enumerate(batch) if b == 0]
                if fresh:
                    out = self.forward(ends[fresh])
                    for p, f in zip(fresh, self.score_of(out, targets[[batch[p][1] for p in fresh]])):
                        end_score_sum[batch[p][1]] += f
            for p, (s, i, b, end) in enumerate(batch):
                if multiply == "diff":
                    value = (ends[p] - starts[p]) * sums[p]
                elif multiply == "end":
                    value = ends[p] * sums[p]
                else:
                    value = sums[p]
                unit = open_units.setdefault((s, i), np.zeros(images.shape[1:], np.float64))
                unit += value
                if b == inner - 1:      # paths arrive in order: this unit is complete
                    attribution = open_units.pop((s, i)) / inner
                    sum1[i] += attribution
                    if squares:
                        sum2[i] += attribution * attribution

        for path in paths():
            pending.append(path)
            pending_items += len(alphas_of(path[1], path[2])[0])
            if pending_items >= budget:
                run(pending)
                pending, pending_items = [], 0
        if pending:
            run(pending)
        mean = sum1 / noise_samples
        if smoothing in ("none", "smoothgrad"):
            result = mean
        elif smoothing == "smoothgrad_sq":
            result = sum2 / noise_samples
        else:
            result = np.maximum(sum2 / noise_samples - mean * mean, 0.0)
        return result.astype(np.float32), (end_score_sum / noise_samples if end_scores else None)

    def _result(self, method, attributions, head, *, score_input=None, score_baseline=None, gap=True,
                gap_input=None, gradient_samples=0, forward_passes=0, **extra) -> MethodResult:
        """gap_input: the F(x) the gap is measured against when it is not F(x) itself
        (smoothgrad: the mean F over the noisy inputs)."""
        outputs, predicted, confidence, targets = head
        n = len(targets)
        if score_input is None:
            score_input = self.score_of(outputs, targets)
        if score_baseline is None:
            score_baseline = np.full(n, np.nan)
        if gap:
            reference = score_input if gap_input is None else gap_input
            completeness = (attributions.reshape(n, -1).sum(axis=1, dtype=np.float64)
                            - (reference - score_baseline))
        else:
            completeness = np.full(n, np.nan)
        return MethodResult(
            method=method, attributions=attributions, outputs=outputs, predicted=predicted,
            confidence=confidence, targets=targets, score_input=np.asarray(score_input, np.float64),
            score_baseline=np.asarray(score_baseline, np.float64), completeness_gap=completeness,
            gradient_samples=np.broadcast_to(np.asarray(gradient_samples, np.int64), (n,)).copy(),
            forward_passes=np.broadcast_to(np.asarray(forward_passes, np.int64), (n,)).copy(), **extra)

    # -- methods --------------------------------------------------------------
    def gradients(self, images: np.ndarray, targets: Optional[np.ndarray] = None, *,
                  image_ids: Optional[Sequence[str]] = None, smoothing: str = "none",
                  samples: int = DEFAULT_SMOOTHING_SAMPLES, stdev: float = DEFAULT_SMOOTHING_STDEV) -> MethodResult:
        """Saliency: dF/dx at the input (PAIR's GradientSaliency), optionally smoothed."""
        return self._plain_gradients("gradients", "one", images, targets, image_ids, smoothing, samples, stdev)

    def gradient_x_input(self, images: np.ndarray, targets: Optional[np.ndarray] = None, *,
                         image_ids: Optional[Sequence[str]] = None, smoothing: str = "none",
                         samples: int = DEFAULT_SMOOTHING_SAMPLES,
                         stdev: float = DEFAULT_SMOOTHING_STDEV) -> MethodResult:
        """x * dF/dx (with smoothing: the noisy input times its gradient, as Captum's NoiseTunnel)."""
        return self._plain_gradients("gradient_x_input", "end", images, targets, image_ids, smoothing, samples,
                                     stdev)

    def _plain_gradients(self, method, multiply, images, targets, image_ids, smoothing, samples, stdev):
        images = self._check_images(images)
        head = self._head(images, targets)
        one = (np.ones(1, np.float32), np.ones(1, np.float32))
        attributions, _ = self._path_attributions(
            images, head[3], image_ids, inner=1, start_of=lambda i, b, end: end, alphas_of=lambda i, b: one,
            multiply=multiply, smoothing=smoothing, samples=samples, stdev=stdev)
        noise_samples = 1 if smoothing == "none" else samples
        return self._result(method, attributions, head, gap=False, gradient_samples=noise_samples)

    def integrated_gradients(self, images: np.ndarray, baselines: np.ndarray,
                             targets: Optional[np.ndarray] = None, *, rule: str = "trapezoid", steps: int = 50,
                             alphas: Optional[np.ndarray] = None, weights: Optional[np.ndarray] = None,
                             image_ids: Optional[Sequence[str]] = None, smoothing: str = "none",
                             samples: int = DEFAULT_SMOOTHING_SAMPLES,
                             stdev: float = DEFAULT_SMOOTHING_STDEV) -> MethodResult:
        """IG averaged over baselines: (N, H, W, C) or (S, N, H, W, C) as `baselines.make_baselines` gives.

        The quadrature is `ig.quadrature(rule, steps)` unless `alphas` and `weights` are
        given (e.g. PAIR's linspace(0, 1, m) with weights 1/m). score_baseline is the mean
        F over the S baselines, so completeness holds for the average: sum(IG) = F(x) - mean F(x').
        """
        images = self._check_images(images)
        baselines = np.asarray(baselines, np.float32)
        if baselines.ndim == 4:
            baselines = baselines[None]
        if baselines.shape[1:] != images.shape:
            raise ValueError(f"baselines have shape {baselines.shape}, expected (S,) + {images.shape}")
        if alphas is None or weights is None:
            alphas, weights = quadrature(rule, steps)
        points = (np.asarray(alphas, np.float32), np.asarray(weights, np.float32))
        if points[0].shape != points[1].shape or points[0].ndim != 1:
            raise ValueError("alphas and weights must be 1-D arrays of the same length")
        head = self._head(images, targets)
        targets_ = head[3]
        inner = baselines.shape[0]
        n = len(images)
        score_baseline = self.score_of(self.forward(baselines.reshape((-1,) + self.input_shape)),
                                       np.tile(targets_, inner)).reshape(inner, n).mean(axis=0)
        attributions, end_mean = self._path_attributions(
            images, targets_, image_ids, inner=inner, start_of=lambda i, b, end: baselines[b, i],
            alphas_of=lambda i, b: points, multiply="diff", smoothing=smoothing, samples=samples, stdev=stdev,
            end_scores=smoothing == "smoothgrad")
        noise_samples = 1 if smoothing == "none" else samples
        return self._result(
            "integrated_gradients", attributions, head, score_baseline=score_baseline,
            gap_input=end_mean, gap=smoothing in ("none", "smoothgrad"),
            gradient_samples=noise_samples * inner * len(points[0]),
            forward_passes=inner + (noise_samples if smoothing == "smoothgrad" else 0))

    def expected_gradients(self, images: np.ndarray, references: np.ndarray, image_ids: Sequence[str],
                           targets: Optional[np.ndarray] = None, *, samples: int = 32, smoothing: str = "none",
                           smoothing_samples: int = DEFAULT_SMOOTHING_SAMPLES,
                           stdev: float = DEFAULT_SMOOTHING_STDEV) -> MethodResult:
        """Expected gradients: mean over `samples` draws of (x - r) * dF/dx at r + a (x - r),
        r drawn from `references` (M, H, W, C) and a from U[0, 1), both seeded by image id.

        `references` must be a fixed array (e.g. a deterministic sample of the dataset handed
        to the stage as a side input): drawing from the batch would tie results to batching.
        score_baseline is the mean F over the drawn references (completeness in expectation).
        """
        images = self._check_images(images)
        references = self._check_images(references)
        n, m = len(images), len(references)
        if m == 0:
            raise ValueError("expected_gradients needs at least one reference image")
        if image_ids is None or len(image_ids) != n:
            raise ValueError("expected_gradients needs one image id per image (draws are seeded by image id)")
        if int(samples) < 1:
            raise ValueError(f"expected_gradients samples must be >= 1, got {samples}")
        draws = [expected_gradients_draws(image_id, samples, m) for image_id in image_ids]
        head = self._head(images, targets)
        targets_ = head[3]
        ref_outputs = self.forward(references)
        score_baseline = np.array([
            self.score_of(ref_outputs[index], np.full(samples, targets_[i])).mean()
            for i, (index, _) in enumerate(draws)])
        attributions, end_mean = self._path_attributions(
            images, targets_, image_ids, inner=int(samples),
            start_of=lambda i, b, end: references[draws[i][0][b]],
            alphas_of=lambda i, b: (np.array([draws[i][1][b]], np.float32), np.ones(1, np.float32)),
            multiply="diff", smoothing=smoothing, samples=smoothing_samples, stdev=stdev,
            end_scores=smoothing == "smoothgrad")
        noise_samples = 1 if smoothing == "none" else smoothing_samples
        return self._result(
            "expected_gradients", attributions, head, score_baseline=score_baseline, gap_input=end_mean,
            gap=smoothing in ("none", "smoothgrad"), gradient_samples=noise_samples * samples,
            forward_passes=(noise_samples if smoothing == "smoothgrad" else 0))

    def occlusion(self, images: np.ndarray, targets: Optional[np.ndarray] = None, *, window: int = 8,
                  stride: int = 4, fill: Union[float, Sequence[float]] = 0.0) -> MethodResult:
        """Occlusion: slide a `window` x `window` patch of `fill` (scalar or per channel) with
        `stride` (plus a last window flush with each edge, so every pixel is covered).

        Each window's score drop F(x) - F(x occluded) is spread evenly over the H x W x C
        values it covers (drop / (window area * C) each), and each value gets the mean over
        the windows covering it. So with non-overlapping windows (stride == window) the map
        sums to the sum of the drops. Forward passes run in chunks like the gradients.
        """
        images = self._check_images(images)
        h, w, c = self.input_shape
        if int(window) < 1 or int(stride) < 1:
            raise ValueError(f"occlusion window and stride must be >= 1, got {window}, {stride}")
        wh, ww = min(int(window), h), min(int(window), w)
        tops, lefts = occlusion_windows(h, window, stride), occlusion_windows(w, window, stride)
        fill = np.broadcast_to(np.asarray(fill, np.float32), (c,)).copy()
        head = self._head(images, targets)
        targets_ = head[3]
        n = len(images)
        per_image = len(tops) * len(lefts)
        top_grid, left_grid = np.meshgrid(tops, lefts, indexing="ij")
        scores = self._occlusion(
            tf.constant(images), tf.constant(targets_.astype(np.int32)),
            tf.constant(np.repeat(np.arange(n), per_image).astype(np.int32)),
            tf.constant(np.tile(top_grid.ravel(), n).astype(np.int32)),
            tf.constant(np.tile(left_grid.ravel(), n).astype(np.int32)),
            tf.constant([wh, ww], tf.int32), tf.constant(fill)).numpy().astype(np.float64).reshape(n, per_image)
        score_input = self.score_of(head[0], targets_)
        drops = (score_input[:, None] - scores) / (wh * ww * c)
        total = np.zeros((n, h, w), np.float64)
        count = np.zeros((h, w), np.float64)
        for j, (top, left) in enumerate(zip(top_grid.ravel(), left_grid.ravel())):
            total[:, top:top + wh, left:left + ww] += drops[:, j, None, None]
            count[top:top + wh, left:left + ww] += 1
        attributions = np.repeat((total / count)[..., None], c, axis=-1).astype(np.float32)
        return self._result("occlusion", attributions, head, score_input=score_input, gap=False,
                            forward_passes=per_image)


# -- adaptive steps ---------------------------------------------------------------------------------
ADAPTIVE_RULES = ("adaptive", "trapezoid", "gauss_legendre")
DEFAULT_PIXEL_TOLERANCE = 0.08


def adaptive_ig(engine_or_model: Union[AttributionEngine, Callable], images: np.ndarray, baselines: np.ndarray,
                targets: Optional[np.ndarray] = None, *, tolerance: float = 0.01, max_steps: int = 128,
                start_steps: Optional[int] = None, rule: str = "adaptive", atol: float = 1e-6,
                pixel_tolerance: float = DEFAULT_PIXEL_TOLERANCE, steps: Optional[int] = None,
                input_shape: Optional[tuple] = None, **engine_kwargs) -> MethodResult:
    """IG with `steps: auto`: refine per image until |gap| <= max(tolerance * |F(x) - F(x')|, atol).

    rule "adaptive" (the default; `transforms.refine`): start from 8 uniform intervals and
    bisect, per image, the intervals with the largest estimated errors (their share of the
    completeness gap, and of the per-pixel error), until the gap test and a per-pixel error
    test (`pixel_tolerance`) both pass or the grid has max_steps intervals. Every gradient is
    reused. With `steps` (an int; "adaptive" only), a fixed budget instead: every image ends
    with exactly that many intervals, placed the same way.

    The other rules double the steps each round, until the next doubling would pass max_steps:

    rule "trapezoid": doubling m -> 2m reuses every earlier gradient: only the m new
    midpoints are evaluated and T_2m = T_m / 2 + (1 / 2m) * sum(new gradients), so an
    image that stops at m steps used m + 1 gradient samples.
    rule "gauss_legendre": Gauss-Legendre points do not nest, so each round evaluates
    the 2m-point rule afresh (an image that stops at m points used m0 + ... + m < 2m
    samples), but its error falls so much faster on smooth paths that it usually needs
    far fewer samples in all (see the module tests and the report on issue 3).

    Images that converged leave the batch; the others' new points are flattened
    together into full chunks (one padded chunk per round). Steps are start_steps (default
    4; 8 for "adaptive") * 2^j for the doubling rules.
    Per image: `steps` (intervals for trapezoid, points for Gauss-Legendre),
    `gradient_samples` (all gradient evaluations it used), `converged`. atol is a floor
    for images whose F(x) ~ F(x'), where a relative tolerance is below float32 resolution.

    `engine_or_model`: an AttributionEngine (reuse it: one trace per model) or a
    model callable (then input_shape defaults to images.shape[1:] and engine_kwargs
    go to AttributionEngine). `baselines`: (N, H, W, C), or (S, N, H, W, C) from
    `baselines.make_baselines` to average over S baselines (each pair refines on its
    own; see _adaptive_over_baselines).
    """
    if isinstance(engine_or_model, AttributionEngine):
        engine = engine_or_model
    else:
        engine = AttributionEngine(engine_or_model, input_shape or np.shape(images)[1:], **engine_kwargs)
    _check_choice("adaptive rule", rule, ADAPTIVE_RULES)
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    if start_steps is None:
        start_steps = 8 if rule == "adaptive" else 4
    if steps is not None:
        if rule != "adaptive":
            raise ValueError(f"a fixed step budget needs rule 'adaptive', got {rule!r}")
        max_steps, start_steps = int(steps), min(int(start_steps), int(steps))
    if int(start_steps) < 1 or int(max_steps) < int(start_steps):
        raise ValueError(f"need 1 <= start_steps <= max_steps, got {start_steps}, {max_steps}")
    images = engine._check_images(images)
    baselines = np.asarray(baselines, np.float32)
    if baselines.ndim == 5:
        if baselines.shape[1:] != images.shape:
            raise ValueError(f"baselines have shape {baselines.shape}, expected (S,) + {images.shape}")
        if baselines.shape[0] > 1:
            return _adaptive_over_baselines(engine, images, baselines, targets, tolerance=tolerance,
                                            max_steps=max_steps, start_steps=start_steps, rule=rule, atol=atol,
                                            pixel_tolerance=pixel_tolerance, steps=steps)
        baselines = baselines[0]
    baselines = engine._check_images(np.broadcast_to(baselines, images.shape))
    n = len(images)
    head = engine._head(images, targets)
    targets_ = head[3]
    score_input = engine.score_of(head[0], targets_)
    score_baseline = engine.score_of(engine.forward(baselines), targets_)
    delta = score_input - score_baseline
    allowed = np.maximum(tolerance * np.abs(delta), atol)
    diffs = images.astype(np.float64) - baselines
    if rule == "adaptive":
        def gradients_at(idx, alphas):
            return engine.point_gradients(baselines, images, targets_, idx, alphas)

        r = refined_ig(gradients_at, diffs, delta, tolerance=tolerance, pixel_tolerance=pixel_tolerance,
                       max_steps=max_steps, start_steps=start_steps, atol=atol, stop_early=steps is None)
        return engine._result("integrated_gradients", r["attributions"], head, score_input=score_input,
                              score_baseline=score_baseline, gradient_samples=r["gradient_samples"],
                              forward_passes=1, steps=r["steps"], converged=r["converged"])

    def evaluate(idx, alphas, weights):
        k = len(alphas)
        return engine.gradient_sums(baselines[idx], images[idx], targets_[idx], np.repeat(np.arange(len(idx)), k),
                                    np.tile(alphas, len(idx)), np.tile(weights, len(idx))).astype(np.float64)

    m = int(start_steps)
    everyone = np.arange(n)
    total = evaluate(everyone, *quadrature(rule, m))
    steps = np.full(n, m, np.int64)
    samples = np.full(n, len(quadrature(rule, m)[0]), np.int64)
    active = np.ones(n, bool)
    while True:
        gap = (diffs * total).reshape(n, -1).sum(axis=1) - delta
        active &= np.abs(gap) > allowed
        if not active.any() or 2 * m > max_steps:
            break
        idx = np.flatnonzero(active)
        if rule == "trapezoid":
            mids = (2 * np.arange(m) + 1) / (2.0 * m)
            total[idx] = total[idx] / 2 + evaluate(idx, mids, np.full(m, 1.0 / (2 * m)))
            samples[idx] += m
        else:
            total[idx] = evaluate(idx, *quadrature(rule, 2 * m))
            samples[idx] += 2 * m
        m *= 2
        steps[idx] = m
    attributions = (diffs * total).astype(np.float32)
    converged = np.abs(gap) <= allowed
    return engine._result("integrated_gradients", attributions, head, score_input=score_input,
                          score_baseline=score_baseline, gradient_samples=samples, forward_passes=1,
                          steps=steps, converged=converged)


def _adaptive_over_baselines(engine, images, baselines, targets, **options) -> MethodResult:
    """Adaptive IG averaged over S baselines: each (baseline, image) pair refines on its own
    (pairs are flattened into one batch, so chunks stay full), then the S results are averaged.

    Per image: attributions, score_baseline and completeness_gap are means over the S
    samples (so the gap stays sum(IG) - (F(x) - mean F(x'))); gradient_samples is the
    total; steps the largest; converged whether every sample met its own tolerance.
    """
    s, n = baselines.shape[:2]
    head = engine._head(images, targets)
    r = adaptive_ig(engine, np.tile(images, (s, 1, 1, 1)), baselines.reshape((s * n,) + images.shape[1:]),
                    np.tile(head[3], s), **options)

    def per_sample(a):
        return a.reshape((s, n) + a.shape[1:])

    return engine._result(
        "integrated_gradients", per_sample(r.attributions).mean(axis=0), head,
        score_baseline=per_sample(r.score_baseline).mean(axis=0),
        gradient_samples=per_sample(r.gradient_samples).sum(axis=0), forward_passes=s,
        steps=per_sample(r.steps).max(axis=0), converged=per_sample(r.converged).all(axis=0))


# -- Grad-CAM ---------------------------------------------------------------------------------------
def _output_rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, TypeError):   # unbuilt layers, several outputs
        return -1


class GradCamEngine:
    """Grad-CAM (Selvaraju et al.) for a Keras model, batched in fixed-size chunks, one trace.

    `model`: a keras.Model, or a `transforms.models.Classifier` loaded from a Keras
    file (SavedModel and hub models have no addressable layers). `layer`: the name
    of a layer with (N, h, w, k) output; None picks the last such layer (the paper's
    choice, the last convolutional block). Pixels are in [0, 1] and scaled to
    `input_range` inside, like Classifier. The score is the target's logit by
    default (the paper's pre-softmax class score); `score="probability"` differentiates
    the softmax probability instead.
    """

    def __init__(self, model, layer: Optional[str], input_shape: tuple[int, int, int], *,
                 input_range: tuple[float, float] = (0.0, 1.0), output: str = "logits", score: str = "logit",
                 chunk_size: int = 64, jit_compile: bool = False,
                 parallel_iterations: int = DEFAULT_PARALLEL_ITERATIONS):
        import keras

        _check_choice("output", output, OUTPUTS)
        _check_choice("score", score, SCORES)
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
        self.input_shape = tuple(int(d) for d in input_shape)
        self.input_range = tuple(float(v) for v in input_range)
        self.output, self.score = output, score
        self.chunk_size = int(chunk_size)
        self.parallel_iterations = int(parallel_iterations)
        self.trace_count = 0
        self._cam = tf.function(self._cam_graph, jit_compile=jit_compile, input_signature=[
            tf.TensorSpec((None,) + self.input_shape, tf.float32), tf.TensorSpec([None], tf.int32)])

    def _cam_graph(self, images, targets):
        self.trace_count += 1
        total = tf.shape(images)[0]
        c = self.chunk_size
        num_chunks = (total + c - 1) // c
        lo, hi = self.input_range
        cams = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)
        outs = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)

        def body(i, cams, outs):
            k = tf.minimum(i * c + tf.range(c), total - 1)
            x = lo + tf.gather(images, k) * (hi - lo)
            t = tf.gather(targets, k)
            with tf.GradientTape() as tape:
                acts, out = self._model(x, training=False)
                acts, out = tf.cast(acts, tf.float32), tf.cast(out, tf.float32)
                t = tf.where(t < 0, tf.argmax(out, axis=-1, output_type=tf.int32), t)
                if self.score == "probability":
                    values = tf.nn.softmax(out, axis=-1) if self.output == "logits" else out
                else:
                    values = out if self.output == "logits" else tf.math.log(tf.maximum(out, 1e-30))
                s = tf.gather(values, t, axis=1, batch_dims=1)
            grads = tape.gradient(s, acts)                          # c x h x w x k, per sample
            channel_weights = tf.reduce_mean(grads, axis=[1, 2])    # c x k
            cam = tf.nn.relu(tf.einsum("chwk,ck->chw", acts, channel_weights))
            return i + 1, cams.write(i, cam), outs.write(i, out)

        _, cams, outs = tf.while_loop(lambda i, *_: i < num_chunks, body, (tf.constant(0), cams, outs),
                                      parallel_iterations=self.parallel_iterations)
        return cams.concat()[:total], outs.concat()[:total]

    def attribute(self, images: np.ndarray, targets: Optional[np.ndarray] = None, *, upsample: bool = True,
                  broadcast_channels: bool = True) -> MethodResult:
        """Grad-CAM maps: ReLU(sum_k mean_ij(dS/dA_ijk) A_k), not normalised.

        upsample: bilinear (half-pixel centres) to the input H x W; else the layer's h x w.
        broadcast_channels: the map repeated in each of the C channels (N, H, W, C), so it
        drops into the pipeline's H x W x 3 contract (sum over channels = C x map; masks
        are scaled anyway); else (N, H, W, 1). completeness_gap is NaN.
        """
        images = np.ascontiguousarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(f"images have shape {images.shape}, engine expects (N,) + {self.input_shape}")
        n = len(images)
        requested = np.full(n, -1, np.int64) if targets is None else np.asarray(targets, np.int64).reshape(n)
        cams, outputs = self._cam(tf.constant(images), tf.constant(requested.astype(np.int32)))
        outputs = outputs.numpy().astype(np.float64)
        if np.any(requested >= outputs.shape[1]):
            raise ValueError(f"target {int(requested.max())} is out of range for {outputs.shape[1]} classes")
        cams = cams[..., None]
        if upsample:
            cams = tf.image.resize(cams, self.input_shape[:2], method="bilinear")
        cams = cams.numpy().astype(np.float32)
        if broadcast_channels:
            cams = np.repeat(cams, self.input_shape[-1], axis=-1)
        probs = _softmax(outputs) if self.output == "logits" else outputs
        predicted = probs.argmax(axis=1)
        resolved = np.where(requested < 0, predicted, requested)
        if self.score == "probability":
            values = probs
        else:
            values = outputs if self.output == "logits" else np.log(np.maximum(outputs, 1e-30))
        return MethodResult(
            method="grad_cam", attributions=cams, outputs=outputs, predicted=predicted,
            confidence=probs[np.arange(n), predicted], targets=resolved,
            score_input=values[np.arange(n), resolved], score_baseline=np.full(n, np.nan),
            completeness_gap=np.full(n, np.nan), gradient_samples=np.ones(n, np.int64),
            forward_passes=np.zeros(n, np.int64))
