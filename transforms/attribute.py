"""`Attribute`: RunInference with a ModelHandler whose loaded model is an `Explainer` of the configured method.

The model is loaded once per worker process by RunInference (ModelHandler.load_model) and
warmed up there. The attribution call sits behind a method of the loaded object
(`Explainer.explain`), so RunInference's multi-process sharing, which hands out a proxy to
that object, still gets gradients: the tape runs where the model lives.

Metrics (namespace "igaudit"): `attributed`, `rejected_attribute`, `gradient_samples` (model
gradient evaluations, per image x samples), the `ig_batch_ms` distribution (wall time of one
batch's attribution call) and `attribute_clock_ms` (the milliseconds since launch at which each
batch started and finished: its min and max bound the attribution phase, startup and wind-down
excluded); RunInference adds its own (`num_inferences`, `load_model_latency_milli_secs`, ...) in
the same namespace. Each worker process logs a progress line (`progress`).
"""
from __future__ import annotations

import sys
import time
import uuid
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from igaudit.transforms.attribution import registry
from igaudit.transforms.attribution.baselines import configured_baselines
from igaudit.transforms.attribution.choices import METHOD_SETTINGS
from igaudit.transforms.attribution.paths import has_completeness
from igaudit.transforms.attribution.targets import TargetSpec, resolve_targets, target_rows
from igaudit.transforms import progress
from igaudit.transforms.progress import progress_interval, progress_reporter
from igaudit.transforms.records import AttributionResult, DecodedImage, Rejected

# Module level: Metrics objects resolve the current bundle's container when used.
_GRADIENT_SAMPLES = Metrics.counter("igaudit", "gradient_samples")
_IG_BATCH_MS = Metrics.distribution("igaudit", "ig_batch_ms")
_CLOCK_MS = Metrics.distribution("igaudit", "attribute_clock_ms")



def _steps(steps) -> Optional[int]:
    """A row's steps: None for a method without (the explainer's -1)."""
    return int(steps) if steps >= 0 else None

class ExplainerHandler(ModelHandler[DecodedImage, Any, Any]):
    """DecodedImage batches -> AttributionResult per (image, target), or Rejected.

    model, attribution, quality: the config's sections; target: `attribution.target` resolved
    against the classes; baseline_image: the decoded image when `attribution.baseline` is a path.
    """

    def __init__(self, model, attribution, quality, class_names: Sequence[str], target: TargetSpec, *,
                 baseline_image: Optional[np.ndarray] = None, progress_seconds: Optional[float] = None):
        super().__init__()
        self.model_config, self.attribution, self.quality = model, attribution, quality
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.target = target
        self.baseline_image = baseline_image
        # Read here, on the launcher, so remote workers use the launcher's setting.
        self.progress_seconds = progress_interval() if progress_seconds is None else float(progress_seconds)
        self.run_token = uuid.uuid4().hex
        self.launched = time.time()   # on the launcher: workers report batch times relative to it

    def load_model(self):
        from igaudit.transforms.attribution.explainer import Explainer
        from igaudit.transforms.attribution.models import enable_gpu_memory_growth, load_classifier
        enable_gpu_memory_growth()  # before load_classifier runs the first TF op
        m = self.model_config
        classifier = load_classifier(m)
        explainer = Explainer(classifier, classifier.input_shape, m.output, self.attribution, self.quality,
                              baseline_image=self.baseline_image, batch_size=self.attribution.batch_size)
        explainer.warm_up()
        return explainer

    def run_inference(self, batch: Sequence[DecodedImage], model, inference_args: Optional[dict] = None) -> Iterable:
        from igaudit.transforms.attribution.result import Batch
        a = self.attribution
        started = time.monotonic()
        _CLOCK_MS.update(int((time.time() - self.launched) * 1000))
        images = np.stack([e.pixels for e in batch]).astype(np.float32)
        label_index = np.array([self.class_index.get(e.label, -1) if e.label is not None else -1 for e in batch])
        if self.target.kind == "predicted":
            # -1: every method resolves it to the prediction in the forward pass it runs anyway
            per_image = np.full((len(batch), 1), -1, np.int64)
        else:
            probs = (model.probabilities(images) if self.target.kind == "top_k"
                     else np.zeros((len(batch), len(self.class_index))))
            per_image = resolve_targets(self.target, probs, label_index)
        # only target 'label' can leave an image without a class (-1: a label the model does not know)
        usable = (per_image >= 0).all(axis=1) if self.target.kind == "label" else np.ones(len(batch), bool)
        for e in (e for e, ok in zip(batch, usable) if not ok):
            yield Rejected(e.uri, e.image_id, "attribute", f"target is 'label' but label {e.label!r} is not one "
                                                           f"of the model's classes")
        if not usable.any():
            return
        keep = np.flatnonzero(usable)
        image_index, targets = target_rows(per_image[keep])
        rows = keep[image_index]
        ids = [batch[i].image_id for i in rows]
        baselines = configured_baselines(a, images, [e.image_id for e in batch],
                                         mean_image=batch[0].baseline if a.baseline == "mean" else None,
                                         baseline_image=self.baseline_image)[:, rows]
        references = batch[0].references if a.method == "expected_gradients" else None
        out = model.explain(Batch(images[rows], baselines, targets, ids, references))
        r = out.result
        done = time.monotonic()
        _IG_BATCH_MS.update(int(round((done - started) * 1000)))
        _CLOCK_MS.update(int((time.time() - self.launched) * 1000))
        _GRADIENT_SAMPLES.inc(int(out.gradient_samples.sum()))
        line = progress_reporter(self.run_token).add(len(keep), started, self.progress_seconds, done)
        if line:     # straight to stderr: Beam forwards worker log records only at the launcher's log level
            print(line, file=sys.stderr, flush=True)
        gap_needed = registry.method(a.method).COMPLETENESS and has_completeness(a.smoothing)
        rule = a.rule if "rule" in METHOD_SETTINGS[a.method] else None      # rows record a rule only for IG
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
                completeness_gap=float(r.completeness_gap[j]), steps=_steps(out.steps[j]), rule=rule,
                method=a.method, gradient_samples=int(out.gradient_samples[j]), quality=quality, bbox=e.bbox,
                content_hash=e.content_hash,
                converged=None if out.converged is None else bool(out.converged[j]))

    def batch_elements_kwargs(self) -> dict:
        # Fixed batches: with min 1, Beam's BatchElements starts at 1 image and grows the size
        # by timing, so a local run spent its first batches far below the engine's best size.
        # A bundle's last batch may still be smaller (BatchElements flushes it).
        size = self.attribution.batch_size
        return {"min_batch_size": size, "max_batch_size": size}

    def share_model_across_processes(self) -> bool:
        return self.model_config.share_across_processes

    def get_metrics_namespace(self) -> str:
        return "igaudit"


class _SplitRejected(beam.DoFn):
    def __init__(self):
        self.attributed = beam.metrics.Metrics.counter("igaudit", "attributed")
        self.rejected = beam.metrics.Metrics.counter("igaudit", "rejected_attribute")

    def process(self, element):
        if isinstance(element, Rejected):
            self.rejected.inc()
            progress.count("rejected")
            yield beam.pvalue.TaggedOutput("rejected", element)
        else:
            self.attributed.inc()
            progress.count("attributed")
            yield element

    def finish_bundle(self):
        progress.flush()


class Attribute(beam.PTransform):
    """PCollection[DecodedImage] -> main: AttributionResult, 'rejected': Rejected(stage='attribute')."""

    def __init__(self, handler: ExplainerHandler):
        super().__init__()
        self.handler = handler

    def expand(self, images):
        return (images
                | "RunInference" >> RunInference(self.handler)
                | "SplitRejected" >> beam.ParDo(_SplitRejected()).with_outputs("rejected", main="attributed"))
