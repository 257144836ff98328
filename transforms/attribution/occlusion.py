"""Occlusion (Zeiler & Fergus 2014): slide a window of `fill` over the image and record the score drop.

Each window's drop F(x) - F(x occluded) is spread evenly over the H x W x C values it covers
(drop / (window area * C) each), and each value gets the mean over the windows covering it, so
with non-overlapping windows (stride == window) the map sums to the sum of the drops. Forward
passes only; the occluded copies are built inside the traced graph, chunk by chunk. No
completeness identity: `completeness_gap` is NaN.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from igaudit.transforms.attribution import chunks
from igaudit.transforms.attribution.result import Batch, MethodResult

COMPLETENESS = False
NEEDS_REFERENCES = False


def explain(explainer, batch: Batch) -> MethodResult:
    a = explainer.attribution
    return occlusion(explainer.engine, batch.images, batch.targets, window=a.window, stride=a.stride, fill=a.fill)


def occlusion_windows(size: int, window: int, stride: int) -> np.ndarray:
    """Window starts along one axis: every `stride`, plus a last window flush with the edge,
    so every pixel is covered (a window larger than the image is clipped to it)."""
    window = min(int(window), int(size))
    starts = list(range(0, size - window + 1, int(stride)))
    if starts[-1] != size - window:
        starts.append(size - window)
    return np.asarray(starts, np.int64)


def _occluded_scores_graph(engine):
    h, w = engine.input_shape[0], engine.input_shape[1]

    def graph(images, targets, item_image, item_top, item_left, window, fill, size):
        rows, cols = tf.range(h)[None, :], tf.range(w)[None, :]

        def produce(items, valid):
            index = tf.gather(item_image, items)
            top, left = tf.gather(item_top, items)[:, None], tf.gather(item_left, items)[:, None]
            in_rows = (rows >= top) & (rows < top + window[0])          # c x H
            in_cols = (cols >= left) & (cols < left + window[1])        # c x W
            inside = (in_rows[:, :, None] & in_cols[:, None, :])[..., None]
            x = tf.gather(images, index)
            x = tf.where(inside, tf.broadcast_to(fill, tf.shape(x)), x)  # occluded copies built in-graph
            return (engine.scores(engine.model(x), tf.gather(targets, index)),)

        scores, = chunks.collect(tf.shape(item_image)[0], size, produce, (tf.float32,), balanced=False,
                                 parallel_iterations=engine.parallel_iterations)
        return scores

    return graph


def occlusion(engine, images: np.ndarray, targets: Optional[np.ndarray] = None, *, window: int, stride: int,
              fill: Union[float, Sequence[float]]) -> MethodResult:
    """Occlusion maps for a batch: a `window` x `window` patch of `fill` (scalar or per channel) every
    `stride` pixels (plus a last window flush with each edge, so every pixel is covered)."""
    images = engine.check_images(images)
    h, w, c = engine.input_shape
    if int(window) < 1 or int(stride) < 1:
        raise ValueError(f"occlusion window and stride must be >= 1, got {window}, {stride}")
    wh, ww = min(int(window), h), min(int(window), w)
    tops, lefts = occlusion_windows(h, window, stride), occlusion_windows(w, window, stride)
    fill = np.broadcast_to(np.asarray(fill, np.float32), (c,)).copy()
    head = engine.head(images, targets)
    n = len(images)
    per_image = len(tops) * len(lefts)
    top_grid, left_grid = np.meshgrid(tops, lefts, indexing="ij")
    ints = engine.ints_spec
    signature = [engine.image_spec, ints, ints, ints, ints, tf.TensorSpec([2], tf.int32),
                 tf.TensorSpec([c], tf.float32)]
    scores = engine.run(
        "occlusion", _occluded_scores_graph(engine), signature,
        tf.constant(images), tf.constant(head.targets.astype(np.int32)),
        tf.constant(np.repeat(np.arange(n), per_image).astype(np.int32)),
        tf.constant(np.tile(top_grid.ravel(), n).astype(np.int32)),
        tf.constant(np.tile(left_grid.ravel(), n).astype(np.int32)),
        tf.constant([wh, ww], tf.int32), tf.constant(fill)).numpy().astype(np.float64).reshape(n, per_image)
    score_input = engine.score_of(head.outputs, head.targets)
    drops = (score_input[:, None] - scores) / (wh * ww * c)
    total = np.zeros((n, h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for j, (top, left) in enumerate(zip(top_grid.ravel(), left_grid.ravel())):
        total[:, top:top + wh, left:left + ww] += drops[:, j, None, None]
        count[top:top + wh, left:left + ww] += 1
    attributions = np.repeat((total / count)[..., None], c, axis=-1).astype(np.float32)
    return engine.result("occlusion", attributions, head, score_input=score_input, gap=False,
                         forward_passes=per_image)
