"""`Attribute`: RunInference with a ModelHandler that runs the IG engine.

The model is loaded once per worker process by RunInference (ModelHandler.load_model).
The IG call sits behind a method of the loaded object (`IGModel.attribute`), so
RunInference's multi-process sharing, which hands out a proxy to that object,
still gets gradients: the tape runs where the model lives.

Metrics (namespace "igaudit"): `attributed`, `rejected_attribute`,
`gradient_samples` (model gradient evaluations, per image x samples) and the
`ig_batch_ms` distribution (wall time of one batch's IG call) and `attribute_clock_ms` (the
milliseconds since launch at which each batch started and finished: its min and max bound the
attribution phase, startup and wind-down excluded); RunInference adds
its own (`num_inferences`, `load_model_latency_milli_secs`, ...) in the same
namespace. Each worker process logs a progress line on the "igaudit" logger at
most every IGAUDIT_PROGRESS_SECONDS (default 10) seconds.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from typing import Any, Iterable, Optional, Sequence, Union

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from transforms.baselines import make_baselines
from transforms.ig import RULES, IGEngine
from transforms.methods import AttributionEngine, GradCamEngine, adaptive_ig
from transforms.models import ModelSpec, load_classifier
from transforms.records import AttributionResult, DecodedImage, Rejected
from transforms.targets import TargetSpec, resolve_targets, target_rows


log = logging.getLogger("igaudit")

PROGRESS_ENV = "IGAUDIT_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 10.0

# Module level: Metrics objects resolve the current bundle's container when used.
_GRADIENT_SAMPLES = Metrics.counter("igaudit", "gradient_samples")
_IG_BATCH_MS = Metrics.distribution("igaudit", "ig_batch_ms")
_CLOCK_MS = Metrics.distribution("igaudit", "attribute_clock_ms")


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


@dataclasses.dataclass(frozen=True)
class AttributionSettings:
    """What to compute: the `attribution:` and `quality:` config, resolved for the workers."""
    method: str = "integrated_gradients"
    rule: str = "adaptive"                       # or a fixed rule of transforms.ig.RULES
    steps: Union[int, str] = "auto"              # "auto": refined per image until the tolerances
    tolerance: float = 0.01
    pixel_tolerance: float = 0.08
    max_steps: int = 128
    score: str = "probability"
    baseline: str = "black"                      # a kind of transforms.baselines, or "image" / "mean"
    baseline_image: Optional[np.ndarray] = None  # for baseline "image"
    baseline_samples: int = 1
    blur_sigma: float = 5.0
    baseline_stdev: float = 0.15
    target: TargetSpec = TargetSpec("predicted")
    smoothing: str = "none"
    samples: int = 25
    stdev: float = 0.15
    layer: Optional[str] = None
    window: int = 8
    stride: int = 4
    fill: float = 0.0
    chunk_size: Union[int, str] = 64
    memory_mb: Optional[float] = None
    jit_compile: bool = False
    quality: bool = False
    quality_steps: int = 20
    quality_ranking: str = "positive"
    infidelity_samples: int = 10
    infidelity_stdev: float = 0.1

    @property
    def steps_label(self) -> int:
        return self.steps if isinstance(self.steps, int) else -1


@dataclasses.dataclass(frozen=True, eq=False)
class Explained:
    """One batch's attributions, one row per (image, target)."""
    result: Any                        # ig.IGBatch or methods.MethodResult
    steps: np.ndarray                  # per row
    gradient_samples: np.ndarray       # per row
    quality: Optional[dict] = None     # per-row arrays: deletion_auc, insertion_auc, infidelity


# Methods without a completeness identity report NaN gaps; only these must have finite ones.
_GAP_METHODS = ("integrated_gradients", "expected_gradients")


class IGModel:
    """What load_model returns: the classifier and its engines, used through `explain`.

    Everything that needs the model (forward passes, gradients) happens in `explain`
    and `probabilities`, methods of this object: with share_across_processes the
    callers hold a proxy and the work runs where the model lives.
    """

    def __init__(self, spec: ModelSpec, settings: AttributionSettings):
        enable_gpu_memory_growth()  # before load_classifier runs the first TF op
        self.spec, self.settings = spec, settings
        self.classifier = load_classifier(spec)
        h, w = spec.input_size
        self.shape = (h, w, 3)
        s = settings
        # The engine serves forward passes and fixed-rule IG; "adaptive" goes through adaptive_ig.
        self.engine = IGEngine(self.classifier, self.shape, output=spec.output, score=s.score,
                               rule=s.rule if s.rule in RULES else "trapezoid",
                               steps=s.steps if isinstance(s.steps, int) else 2, chunk_size=s.chunk_size,
                               memory_mb=s.memory_mb, jit_compile=s.jit_compile)
        self._methods = None
        self._grad_cam = None

    @property
    def methods(self) -> AttributionEngine:
        if self._methods is None:
            self._methods = AttributionEngine(self.classifier, self.shape, output=self.spec.output,
                                              score=self.settings.score, chunk_size=self.engine.chunk_size,
                                              jit_compile=self.settings.jit_compile)
        return self._methods

    def num_classes(self) -> int:
        return self.classifier.num_classes

    def warm_up(self) -> None:
        """Run the configured attribution once on one grey image against black baselines, so the
        tf.function traces happen at model load (startup) and not inside the first batch. Not for
        expected_gradients, whose references arrive with the data."""
        s = self.settings
        if s.method == "expected_gradients":
            return
        samples = max(1, s.baseline_samples) if s.method == "integrated_gradients" else 1
        image = np.full((1,) + self.shape, 0.5, np.float32)
        self.explain(image, np.zeros((samples, 1) + self.shape, np.float32), np.array([-1]), ["warm-up"])

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.engine.probabilities(self.engine.forward(images))

    def explain(self, images: np.ndarray, baselines: np.ndarray, targets: np.ndarray, image_ids: Sequence[str],
                references: Optional[np.ndarray] = None) -> Explained:
        """Attributions for rows (images[i], targets[i]); baselines (S, N, H, W, C)."""
        s, n = self.settings, len(images)
        ids = list(image_ids)
        smooth = dict(smoothing=s.smoothing, samples=s.samples, stdev=s.stdev)
        steps = np.full(n, s.steps_label)
        if s.method == "integrated_gradients" and (s.steps == "auto" or s.rule == "adaptive"):
            r = adaptive_ig(self.methods, images, baselines, targets, tolerance=s.tolerance,
                            pixel_tolerance=s.pixel_tolerance, max_steps=s.max_steps, rule=s.rule,
                            steps=None if s.steps == "auto" else s.steps)
            steps = np.asarray(r.steps)
        elif s.method == "integrated_gradients" and baselines.shape[0] == 1 and s.smoothing == "none":
            r = self.engine.attribute(images, baselines[0], targets)       # the tuned fast path
        elif s.method == "integrated_gradients":
            r = self.methods.integrated_gradients(images, baselines, targets, rule=s.rule, steps=s.steps,
                                                  image_ids=ids, **smooth)
        elif s.method in ("gradients", "gradient_x_input"):
            r = getattr(self.methods, s.method)(images, targets, image_ids=ids, **smooth)
        elif s.method == "expected_gradients":
            r = self.methods.expected_gradients(images, references, ids, targets, samples=s.baseline_samples,
                                                smoothing=s.smoothing, smoothing_samples=s.samples,
                                                stdev=s.stdev)
        elif s.method == "occlusion":
            r = self.methods.occlusion(images, targets, window=s.window, stride=s.stride, fill=s.fill)
        elif s.method == "grad_cam":
            if self._grad_cam is None:
                self._grad_cam = GradCamEngine(self.classifier, s.layer, self.shape, score=s.score,
                                               chunk_size=self.engine.chunk_size)
            r = self._grad_cam.attribute(images, targets)
        else:
            raise ValueError(f"unknown attribution.method {s.method!r}")
        samples = np.broadcast_to(np.asarray(r.gradient_samples), (n,)).astype(np.int64)
        quality = self._quality(images, baselines[0], r, ids) if s.quality else None
        return Explained(r, steps, samples, quality)

    def _quality(self, images, baselines, r, image_ids) -> dict:
        from transforms.quality import deletion_insertion_auc, infidelity
        s = self.settings
        deletion, insertion = deletion_insertion_auc(
            self.engine.forward, self.engine.score_of, images, r.attributions, r.targets, baselines,
            steps=s.quality_steps, chunk_size=self.engine.chunk_size, ranking=s.quality_ranking)
        # IG-style attributions explain F(x) - F(x'): Captum's multiply_by_inputs convention
        path = s.method in ("integrated_gradients", "expected_gradients", "gradient_x_input")
        infid = infidelity(self.engine.forward, self.engine.score_of, images, r.attributions, r.targets,
                           seed_ids=image_ids, baselines=baselines if path else None,
                           samples=s.infidelity_samples, stdev=s.infidelity_stdev,
                           chunk_size=self.engine.chunk_size)
        return {"deletion_auc": deletion, "insertion_auc": insertion, "infidelity": infid}


class IGModelHandler(ModelHandler[DecodedImage, Any, IGModel]):
    """DecodedImage batches -> AttributionResult per (image, target), or Rejected."""

    def __init__(self, spec: ModelSpec, class_names: Sequence[str], settings: AttributionSettings = None, *,
                 batch_size: int = 16, share_across_processes: bool = False,
                 progress_seconds: Optional[float] = None):
        super().__init__()
        self.spec = spec
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.settings = settings or AttributionSettings()
        self.batch_size = batch_size
        self.share_across_processes = share_across_processes
        # Read here, on the launcher, so remote workers use the launcher's setting.
        self.progress_seconds = progress_interval() if progress_seconds is None else float(progress_seconds)
        self.run_token = uuid.uuid4().hex
        self.launched = time.time()   # on the launcher: workers report batch times relative to it

    def load_model(self) -> IGModel:
        model = IGModel(self.spec, self.settings)
        model.warm_up()
        return model

    def _baselines(self, batch: Sequence[DecodedImage], images: np.ndarray) -> np.ndarray:
        s = self.settings
        if s.baseline == "mean":
            return np.stack([e.baseline for e in batch])[None].astype(np.float32)
        kind = "image" if s.baseline_image is not None else s.baseline
        return make_baselines(kind, images, [e.image_id for e in batch], blur_sigma=s.blur_sigma,
                              noise_stdev=s.baseline_stdev, baseline_image=s.baseline_image,
                              samples=s.baseline_samples if s.method == "integrated_gradients" else 1)

    def run_inference(self, batch: Sequence[DecodedImage], model: IGModel,
                      inference_args: Optional[dict] = None) -> Iterable[Any]:
        s = self.settings
        started = time.monotonic()
        _CLOCK_MS.update(int((time.time() - self.launched) * 1000))
        images = np.stack([e.pixels for e in batch]).astype(np.float32)
        label_index = np.array([self.class_index.get(e.label, -1) if e.label is not None else -1 for e in batch])
        if s.target.kind == "predicted":
            # -1: every engine resolves it to the prediction in the forward pass it runs anyway
            per_image = np.full((len(batch), 1), -1, np.int64)
        else:
            probs = (model.probabilities(images) if s.target.kind == "top_k"
                     else np.zeros((len(batch), len(self.class_index))))
            per_image = resolve_targets(s.target, probs, label_index)
        # only target 'label' can leave an image without a class (-1: a label the model does not know)
        usable = (per_image >= 0).all(axis=1) if s.target.kind == "label" else np.ones(len(batch), bool)
        for e in (e for e, ok in zip(batch, usable) if not ok):
            yield Rejected(e.uri, e.image_id, "attribute", f"target is 'label' but label {e.label!r} is not one "
                                                           f"of the model's classes")
        if not usable.any():
            return
        keep = np.flatnonzero(usable)
        image_index, targets = target_rows(per_image[keep])
        rows = keep[image_index]
        row_images = images[rows]
        baselines = self._baselines(batch, images)[:, rows]
        references = batch[0].references if s.method == "expected_gradients" else None
        out = model.explain(row_images, baselines, targets, [batch[i].image_id for i in rows], references)
        r = out.result
        done = time.monotonic()
        _IG_BATCH_MS.update(int(round((done - started) * 1000)))
        _CLOCK_MS.update(int((time.time() - self.launched) * 1000))
        _GRADIENT_SAMPLES.inc(int(out.gradient_samples.sum()))
        line = progress_reporter(self.run_token).add(len(keep), started, self.progress_seconds, done)
        if line:
            log.info(line)
        gap_needed = s.method in _GAP_METHODS and not (s.smoothing in ("smoothgrad_sq", "vargrad"))
        for j, i in enumerate(rows):
            e = batch[i]
            values = [r.score_input[j], r.confidence[j]] + ([r.completeness_gap[j]] if gap_needed else [])
            if not (np.all(np.isfinite(values)) and np.all(np.isfinite(r.attributions[j]))):
                yield Rejected(e.uri, e.image_id, "attribute", "non_finite: the model produced NaN or "
                                                             "infinite scores or gradients")
                continue
            quality = {k: float(v[j]) for k, v in out.quality.items()} if out.quality else {}
            yield AttributionResult(
                uri=e.uri, label=e.label, image_id=e.image_id, pixels=e.pixels,
                attribution=r.attributions[j], label_index=int(label_index[i]), predicted=int(r.predicted[j]),
                confidence=float(r.confidence[j]), target=int(r.targets[j]),
                score_input=float(r.score_input[j]), score_baseline=float(r.score_baseline[j]),
                completeness_gap=float(r.completeness_gap[j]), steps=int(out.steps[j]), rule=s.rule,
                method=s.method, gradient_samples=int(out.gradient_samples[j]), quality=quality, bbox=e.bbox)

    def batch_elements_kwargs(self) -> dict:
        # Fixed batches: with min 1, Beam's BatchElements starts at 1 image and grows the size
        # by timing, so a local run spent its first batches far below the engine's best size.
        # A bundle's last batch may still be smaller (BatchElements flushes it).
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}

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
