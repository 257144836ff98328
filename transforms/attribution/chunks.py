"""The one chunk loop: items of a call run through the model in fixed-size chunks, inside a traced graph.

Every traced computation of the attribution engines (gradient sums, per-point gradients,
forward passes, occlusion scores, Grad-CAM maps) is a `tf.while_loop` over chunks of the
call's items, built here. Why chunks: the model sees batches of a bounded size (memory is
O(chunk) activations, whatever the batch, steps or samples), and the loop runs inside one
traced function, so there is one trace per model and no host round-trip between chunks.

Two plans for a call of `total` items and a chunk size c:
  - padded: ceil(total / c) chunks of exactly c items, the last one padded by repeating the
    last item. The model always sees batch c (a static shape).
  - balanced: the same number of chunks, all of size ceil(total / chunks), so the padding is
    under one item per chunk instead of up to a whole chunk. That matters for small calls
    (a refinement round of `rule: adaptive` may hold 20 items). The size is a tensor, so
    the model sees a dynamic batch dimension: still one trace. Under jit_compile the size
    stays c (XLA compiles every distinct shape).

Consecutive chunks may overlap (`parallel_iterations`): on a CPU a small model's ops do not
fill every core, and letting the next chunk start while the previous one finishes gains
10-40% there (benchmarks/RESULTS.md); each chunk in flight holds its activations.
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

# Chunks the loop may run at once. 2 gets the overlap on a 2-core CPU; more only adds memory.
PARALLEL_ITERATIONS = 2


def plan(total: tf.Tensor, chunk_size: int, balanced: bool) -> tuple:
    """(number of chunks, items per chunk) for `total` items; padded chunks keep the Python int, a
    static shape."""
    chunks = (total + chunk_size - 1) // chunk_size
    if not balanced:
        return chunks, chunk_size
    return chunks, (total + chunks - 1) // tf.maximum(chunks, 1)


def chunk_items(i: tf.Tensor, total: tf.Tensor, size) -> tuple[tf.Tensor, tf.Tensor]:
    """Item indices of chunk i and which of them are real; padding repeats the last item."""
    k = i * size + tf.range(size)
    return tf.minimum(k, total - 1), k < total


def run(total: tf.Tensor, chunk_size: int, step: Callable, state: Sequence, *, balanced: bool,
        parallel_iterations: int = PARALLEL_ITERATIONS) -> tuple:
    """Loop `state = step(i, items, valid, *state)` over the chunks of `total` items; returns the final state.

    `step` gets the chunk number (for TensorArray writes), the chunk's item indices and their
    validity mask, and returns the new state tuple.
    """
    chunks, size = plan(total, chunk_size, balanced)

    def body(i, *carried):
        items, valid = chunk_items(i, total, size)
        return (i + 1,) + tuple(step(i, items, valid, *carried))

    out = tf.while_loop(lambda i, *_: i < chunks, body, (tf.constant(0),) + tuple(state),
                        parallel_iterations=parallel_iterations)
    return tuple(out[1:])


def collect(total: tf.Tensor, chunk_size: int, produce: Callable, dtypes: Sequence, *, balanced: bool,
            parallel_iterations: int = PARALLEL_ITERATIONS) -> tuple:
    """Run `produce(items, valid) -> tensors` per chunk and concatenate each output over chunks,
    padding dropped: one (total, ...) tensor per dtype in `dtypes`."""
    chunks, _ = plan(total, chunk_size, balanced)
    arrays = tuple(tf.TensorArray(d, size=chunks, infer_shape=False) for d in dtypes)

    def step(i, items, valid, *arrays):
        values = produce(items, valid)
        return tuple(a.write(i, v) for a, v in zip(arrays, values))

    arrays = run(total, chunk_size, step, arrays, balanced=balanced, parallel_iterations=parallel_iterations)
    return tuple(a.concat()[:total] for a in arrays)
