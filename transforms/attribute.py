"""`Attribute`: RunInference with a ModelHandler that runs the IG engine.

The model is loaded once per worker process by RunInference (ModelHandler.load_model).
The IG call sits behind a method of the loaded object (`IGModel.attribute`), so
RunInference's multi-process sharing, which hands out a proxy to that object,
still gets gradients: the tape runs where the model lives.

Metrics (namespace "igaudit"): `attributed`, `rejected_attribute`,
`gradient_samples` (model gradient evaluations, per image x samples) and the
`ig_batch_ms` distribution (wall time of one batch's IG call); RunInference adds
its own (`num_inferences`, `load_model_latency_milli_secs`, ...) in the same
namespace. Each worker process logs a progress line on the "igaudit" logger at
most every IGAUDIT_PROGRESS_SECONDS (default 10) seconds.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from transforms.ig import IGBatch, IGEngine
from transforms.models import ModelSpec, load_classifier
from transforms.records import AttributionResult, DecodedImage, Rejected, seed_from_id


log = logging.getLogger("igaudit")

PROGRESS_ENV = "IGAUDIT_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 10.0

# Module level: Metrics objects resolve the current bundle's container when used.
_GRADIENT_SAMPLES = Metrics.counter("igaudit", "gradient_samples")
_IG_BATCH_MS = Metrics.distribution("igaudit", "ig_batch_ms")


def progress_interval(default: float = DEFAULT_PROGRESS_SECONDS) -> float:
    """Seconds between progress lines: $IGAUDIT_PROGRESS_SECONDS, else `default`."""
    raw = os.environ.get(PROGRESS_ENV, "").strip()
    try:
        return max(float(raw), 0.0) if raw else default
    except ValueError:
        return default


class ProgressReporter:
    """Images attributed in this process for one run; a progress line at most every `interval` s."""

    def __init__(self):
        self._lock = threading.Lock()
        self._started: Optional[float] = None
        self._last = 0.0
        self.done = 0

    def add(self, images: int, batch_started: float, interval: float, now: Optional[float] = None) -> Optional[str]:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._started is None:
                self._started = self._last = batch_started
            self.done += images
            if now - self._last < interval:
                return None
            self._last = now
            rate = self.done / max(now - self._started, 1e-6)
            return (f"igaudit progress: {self.done} image{'' if self.done == 1 else 's'} attributed by worker "
                    f"pid {os.getpid()} ({rate:.1f} images/s)")


# One reporter per (run, process): DoFn copies in several threads of a worker add to the same one.
_REPORTERS: dict[str, ProgressReporter] = {}
_REPORTERS_LOCK = threading.Lock()


def progress_reporter(run_token: str) -> ProgressReporter:
    with _REPORTERS_LOCK:
        return _REPORTERS.setdefault(run_token, ProgressReporter())


def enable_gpu_memory_growth() -> None:
    """Let TensorFlow take GPU memory as it needs it instead of all of it up front, so several
    SDK processes (Dataflow runs one per vCPU) can share a GPU. Only possible before TF has
    initialised the GPUs; if this process already did (the launcher loaded the model), skip."""
    import tensorflow as tf
    try:
        gpus = tf.config.list_physical_devices("GPU")
    except Exception:  # noqa: BLE001 - no usable GPU runtime: nothing to configure
        return
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised in this process
            pass


def make_baseline(kind: str, image: DecodedImage) -> np.ndarray:
    """The IG baseline x' for one image, in pixel space [0, 1]; random ones seeded by image id."""
    shape = image.pixels.shape
    if kind == "black":
        return np.zeros(shape, np.float32)
    if kind == "white":
        return np.ones(shape, np.float32)
    if kind == "uniform":
        return np.random.default_rng(seed_from_id(image.image_id)).uniform(size=shape).astype(np.float32)
    raise ValueError(f"unknown baseline {kind!r}")


class IGModel:
    """What load_model returns: the classifier and its IG engine, used through `attribute`."""

    def __init__(self, spec: ModelSpec, *, rule: str, steps: int, score: str, chunk_size: int,
                 jit_compile: bool = False):
        enable_gpu_memory_growth()  # before load_classifier runs the first TF op
        self.classifier = load_classifier(spec)
        h, w = spec.input_size
        self.engine = IGEngine(self.classifier, (h, w, 3), output=spec.output, score=score, rule=rule,
                               steps=steps, chunk_size=chunk_size, jit_compile=jit_compile)

    def attribute(self, images: np.ndarray, baselines: np.ndarray, targets: np.ndarray) -> IGBatch:
        return self.engine.attribute(images, baselines, targets)

    def num_classes(self) -> int:
        return self.classifier.num_classes


class IGModelHandler(ModelHandler[DecodedImage, Any, IGModel]):
    """DecodedImage batches -> AttributionResult (or Rejected for images that cannot be explained)."""

    def __init__(self, spec: ModelSpec, class_names: Sequence[str], *, rule: str = "trapezoid",
                 steps: int = 50, score: str = "probability", baseline: str = "black",
                 target: str = "predicted", batch_size: int = 16, chunk_size: int = 64,
                 jit_compile: bool = False, share_across_processes: bool = False,
                 progress_seconds: Optional[float] = None):
        super().__init__()
        self.spec = spec
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.rule, self.steps, self.score = rule, steps, score
        self.baseline, self.target = baseline, target
        self.batch_size, self.chunk_size, self.jit_compile = batch_size, chunk_size, jit_compile
        self.share_across_processes = share_across_processes
        # Read here, on the launcher, so remote workers use the launcher's setting.
        self.progress_seconds = progress_interval() if progress_seconds is None else float(progress_seconds)
        self.run_token = uuid.uuid4().hex

    def load_model(self) -> IGModel:
        return IGModel(self.spec, rule=self.rule, steps=self.steps, score=self.score,
                       chunk_size=self.chunk_size, jit_compile=self.jit_compile)

    def run_inference(self, batch: Sequence[DecodedImage], model: IGModel,
                      inference_args: Optional[dict] = None) -> Iterable[Any]:
        label_index = [self.class_index.get(e.label, -1) if e.label is not None else -1 for e in batch]
        keep, rejected = [], []
        for e, li in zip(batch, label_index):
            if self.target == "label" and li < 0:
                rejected.append(Rejected(e.uri, e.image_id, "attribute",
                                         f"target is 'label' but label {e.label!r} is not one of the "
                                         f"model's classes"))
            else:
                keep.append((e, li))
        yield from rejected
        if not keep:
            return
        images = np.stack([e.pixels for e, _ in keep]).astype(np.float32)
        baselines = np.stack([make_baseline(self.baseline, e) for e, _ in keep])
        targets = np.array([li if self.target == "label" else -1 for _, li in keep], np.int64)
        started = time.monotonic()
        r = model.attribute(images, baselines, targets)
        done = time.monotonic()
        _IG_BATCH_MS.update(int(round((done - started) * 1000)))
        _GRADIENT_SAMPLES.inc(int(r.gradient_samples) * len(keep))
        line = progress_reporter(self.run_token).add(len(keep), started, self.progress_seconds, done)
        if line:
            log.info(line)
        for i, (e, li) in enumerate(keep):
            values = (r.score_input[i], r.score_baseline[i], r.completeness_gap[i], r.confidence[i])
            if not (np.all(np.isfinite(values)) and np.all(np.isfinite(r.attributions[i]))):
                yield Rejected(e.uri, e.image_id, "attribute", "non_finite: the model produced NaN or "
                                                             "infinite scores or gradients")
                continue
            yield AttributionResult(
                uri=e.uri, label=e.label, image_id=e.image_id, pixels=e.pixels,
                attribution=r.attributions[i], label_index=li, predicted=int(r.predicted[i]),
                confidence=float(r.confidence[i]), target=int(r.targets[i]),
                score_input=float(r.score_input[i]), score_baseline=float(r.score_baseline[i]),
                completeness_gap=float(r.completeness_gap[i]), steps=self.steps, rule=self.rule)

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": self.batch_size}

    def share_model_across_processes(self) -> bool:
        return self.share_across_processes

    def get_metrics_namespace(self) -> str:
        return "igaudit"


class _SplitRejected(beam.DoFn):
    def __init__(self):
        self.attributed = beam.metrics.Metrics.counter("igaudit", "attributed")
        self.rejected = beam.metrics.Metrics.counter("igaudit", "rejected_attribute")

    def process(self, element):
        if isinstance(element, Rejected):
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput("rejected", element)
        else:
            self.attributed.inc()
            yield element


class Attribute(beam.PTransform):
    """PCollection[DecodedImage] -> main: AttributionResult, 'rejected': Rejected(stage='attribute')."""

    def __init__(self, handler: IGModelHandler):
        super().__init__()
        self.handler = handler

    def expand(self, images):
        return (images
                | "RunInference" >> RunInference(self.handler)
                | "SplitRejected" >> beam.ParDo(_SplitRejected()).with_outputs("rejected", main="attributed"))
