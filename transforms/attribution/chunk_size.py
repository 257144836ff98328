"""`attribution.chunk_size: auto`: the chunk size that runs the configured method fastest here, timed once at model load.

A gradient call's throughput depends on its batch size, and the best size differs by model
and device (32-64 for a small CNN, 8 for MobileNetV2 on a 2-core CPU). The probe times what
the run will really do: the configured method (`Explainer.explain`, adaptive refinement rounds
included) on a batch of `attribution.batch_size` seeded images, once per candidate.

A first pass goes in increasing size: trace and warm up, time once; it stops at the first
candidate more than 15% slower than the best so far (throughput against batch size rises,
flattens, then falls) or once probing has taken `max_probe_seconds` (a big model on a CPU,
where big chunks are slow to probe and rarely win). Then `repeats - 1` passes time the
surviving candidates in turn, so a burst of load from other processes hits all of them, and
each keeps its best call.

Memory: a candidate fits when in-flight chunks (`parallel_iterations`) x chunk x
`estimate_sample_bytes` <= memory_mb MiB; on a GPU the probe's measured peak
(`tf.config.experimental.get_memory_info`) must fit too, and running out of memory ends the
search. When nothing fits, the smallest candidate is used.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

import tensorflow as tf

CANDIDATES = (8, 16, 32, 64, 128)
SLOWER = 0.85           # the first pass stops at a candidate below this share of the best rate


def estimate_sample_bytes(model: Callable[[tf.Tensor], tf.Tensor], input_shape: Sequence[int]) -> int:
    """Rough activation bytes one sample needs in a forward + input-gradient pass.

    Traces the model's forward pass for one sample and adds up the float
    tensors every op produces, nested function calls included (a SavedModel
    signature or a Keras layer's call is one op wrapping a function), at 4
    bytes each; unknown dimensions count as 1. Not every forward tensor is
    alive at once, but the backward pass keeps most of them and adds
    gradients of the same sizes, so this is the right order: measured peak
    RSS growth per sample of a traced forward + input-gradient call on CPU
    was 1.4x this estimate for the demo CNN and 0.3-0.5x for MobileNetV2
    (whose inference-mode batch norms leave many forward tensors dead). On a
    GPU `choose_chunk_size` measures the real peak instead.
    """
    shape = (1,) + tuple(int(d) for d in input_shape)
    def forward(x):
        return model(x)
    concrete = tf.function(forward, autograph=False).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    seen: set = set()

    def walk(graph) -> int:
        total = 0
        for op in graph.get_operations():
            for t in op.outputs:
                if t.dtype.is_floating and t.shape.rank is not None:
                    total += math.prod(d if d is not None else 1 for d in t.shape.as_list())
            if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
                name = op.get_attr("f").name
                if name in seen:
                    continue
                seen.add(name)
                nested = getattr(graph._get_function(name), "graph", None)  # noqa: SLF001 - no public API
                if nested is not None:
                    total += walk(nested)
        return total

    return 4 * max(walk(concrete.graph), math.prod(shape))


def choose_chunk_size(explainer, batch_size: int, memory_mb: Optional[float] = None,
                      candidates: Sequence[int] = CANDIDATES, repeats: int = 3,
                      max_probe_seconds: float = 30.0) -> int:
    """Set `explainer.engine.chunk_size` to the fastest candidate for batches of `batch_size` images and
    return it. Timings (images/s) and reasons for skipped candidates are left in
    `explainer.chunk_timings` / `explainer.chunk_skipped`."""
    engine = explainer.engine
    candidates = sorted({int(c) for c in candidates})
    if not candidates or min(candidates) < 1:
        raise ValueError(f"chunk candidates must be positive ints, got {candidates}")
    budget = None if memory_mb is None else float(memory_mb) * 2 ** 20
    sample_bytes = estimate_sample_bytes(engine.model, engine.input_shape) if budget is not None else None
    on_gpu = _on_gpu(engine)
    batch = explainer.probe_batch(batch_size)
    timings: dict[int, float] = {}
    skipped: dict[int, str] = {}
    for c in candidates:
        if budget is not None and engine.parallel_iterations * c * sample_bytes > budget:
            skipped[c] = (f"estimated {engine.parallel_iterations} x {c} x {sample_bytes / 2 ** 20:.2f} "
                          f"MiB > memory_mb {memory_mb:g}")

    def timed_call(c: int) -> float:
        engine.chunk_size = c
        started = time.perf_counter()
        explainer.explain(batch)
        return batch_size / (time.perf_counter() - started)

    best = None
    probe_started = time.perf_counter()
    for c in (c for c in candidates if c not in skipped):     # pass 1, in increasing size
        if len(timings) >= 2 and time.perf_counter() - probe_started > max_probe_seconds:
            skipped[c] = f"not probed: probing took more than {max_probe_seconds:g} s"
            continue
        try:
            if on_gpu:
                tf.config.experimental.reset_memory_stats(_device_name(engine))
            timed_call(c)                                      # trace + warm up
            if on_gpu and budget is not None:
                peak = tf.config.experimental.get_memory_info(_device_name(engine))["peak"]
                if peak > budget:
                    skipped[c] = f"measured peak {peak / 2 ** 20:.0f} MiB > memory_mb {memory_mb:g}"
                    break
            timings[c] = timed_call(c)
        except tf.errors.ResourceExhaustedError:
            skipped[c] = "out of memory"
            break
        if best is None or timings[c] > timings[best]:
            best = c
        elif timings[c] < SLOWER * timings[best]:
            break
    for _ in range(max(1, repeats) - 1):                       # passes 2..: the survivors in turn
        for c in list(timings):
            timings[c] = max(timings[c], timed_call(c))
    best = max(timings, key=timings.get) if timings else candidates[0]
    engine.chunk_size = best
    engine.forget_other_chunk_sizes()
    explainer.chunk_timings, explainer.chunk_skipped = timings, skipped
    return best


def _on_gpu(engine) -> bool:
    if engine.device is not None:
        return "GPU" in engine.device.upper()
    return bool(tf.config.list_logical_devices("GPU"))


def _device_name(engine) -> str:
    name = engine.device or "/GPU:0"
    return name.split("device:")[-1].lstrip("/")
