"""The loaded model as an explainer of the configured method: what the Beam handler loads once per worker.

`Explainer` holds the classifier, its `GradientEngine` and the method module the registry
names (`attribution.method`), and takes the config sections as they are: `attribution`
(`pipeline.config.AttributionConfig`) and `quality` (`QualityConfig`). Everything that needs the
model (forward passes, gradients) happens in its methods, so with RunInference's
`share_across_processes` the callers hold a proxy and the work runs where the model lives.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from igaudit.transforms.attribution import registry
from igaudit.transforms.attribution.baselines import configured_baselines
from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.result import Batch, MethodResult

# chunk_size: auto starts from the smallest candidate until the probe has chosen.
_PROBE_SEED = 0


@dataclasses.dataclass(frozen=True, eq=False)
class Explained:
    """One batch's attributions, one row per (image, target)."""
    result: MethodResult
    steps: np.ndarray                  # per row; -1 where the method has no steps
    gradient_samples: np.ndarray       # per row
    quality: Optional[dict] = None     # per-row arrays: deletion_auc, insertion_auc, infidelity
    converged: Optional[np.ndarray] = None   # per row, steps: auto only: met its tolerances before max_steps


class Explainer:
    """Attributions of one classifier by the configured method.

    classifier: a callable of [0, 1] pixels (N, H, W, C) -> (N, K) (`models.Classifier`);
    output: what it returns (`model.output`); baseline_image: the decoded image when
    `attribution.baseline` is a path. `batch_size`: images per call, for `chunk_size: auto`.
    """

    def __init__(self, classifier, input_shape: tuple, output: str, attribution, quality, *,
                 baseline_image: Optional[np.ndarray] = None, batch_size: int = 1):
        from igaudit.transforms.attribution.chunk_size import CANDIDATES, choose_chunk_size
        self.classifier = classifier
        self.shape = tuple(int(d) for d in input_shape)
        self.attribution, self.quality = attribution, quality
        self.baseline_image = baseline_image
        self.method = registry.method(attribution.method)
        self.cache: dict = {}        # per-method state (e.g. Grad-CAM's activation model)
        auto = attribution.chunk_size == "auto"
        self.engine = GradientEngine(classifier, self.shape, output=output, score=attribution.score,
                                     chunk_size=min(CANDIDATES) if auto else attribution.chunk_size,
                                     jit_compile=attribution.jit_compile)
        self.chunk_timings: dict = {}
        self.chunk_skipped: dict = {}
        if auto:
            choose_chunk_size(self, batch_size, attribution.memory_mb)

    def num_classes(self) -> int:
        return self.classifier.num_classes

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.engine.probabilities(self.engine.forward(images))

    def probe_batch(self, n: int) -> Batch:
        """n seeded random images with their baselines, predicted targets and themselves as references:
        a stand-in batch for timing (`chunk_size`) and warm-up."""
        images = np.random.default_rng(_PROBE_SEED).uniform(size=(n,) + self.shape).astype(np.float32)
        ids = [f"probe-{i}" for i in range(n)]
        baselines = configured_baselines(self.attribution, images, ids, mean_image=images.mean(axis=0),
                                         baseline_image=self.baseline_image)
        return Batch(images, baselines, np.full(n, -1), ids, images)

    def warm_up(self) -> None:
        """Run the configured method once on one grey image against black baselines, so the traces happen
        at model load (startup) and not inside the first batch. Not for methods whose references arrive
        with the data (expected_gradients)."""
        if self.method.NEEDS_REFERENCES:
            return
        a = self.attribution
        samples = a.baseline_samples if a.method == "integrated_gradients" else 1
        image = np.full((1,) + self.shape, 0.5, np.float32)
        self.explain(Batch(image, np.zeros((samples, 1) + self.shape, np.float32), np.array([-1]), ["warm-up"]))

    def explain(self, batch: Batch) -> Explained:
        """Attributions for rows (images[i], targets[i])."""
        r = self.method.explain(self, batch)
        n = len(batch.images)
        steps = np.full(n, -1, np.int64) if r.steps is None else np.asarray(r.steps)
        quality = self._quality(batch, r) if self.quality.enabled else None
        converged = None if r.converged is None else np.asarray(r.converged, bool)
        return Explained(r, steps, np.asarray(r.gradient_samples, np.int64), quality, converged)

    def _quality(self, batch: Batch, r: MethodResult) -> dict:
        from igaudit.transforms.attribution.quality import deletion_insertion_auc, infidelity
        q, engine = self.quality, self.engine
        baselines = batch.baselines[0]
        deletion, insertion = deletion_insertion_auc(
            engine.forward, engine.score_of, batch.images, r.attributions, r.targets, baselines,
            steps=q.steps, chunk_size=engine.chunk_size, ranking=q.ranking)
        # path attributions explain F(x) - F(x'): Captum's multiply_by_inputs convention
        path = self.attribution.method in ("integrated_gradients", "expected_gradients", "gradient_x_input")
        infid = infidelity(engine.forward, engine.score_of, batch.images, r.attributions, r.targets,
                           seed_ids=batch.image_ids, baselines=baselines if path else None,
                           samples=q.infidelity_samples, stdev=q.infidelity_stdev, chunk_size=engine.chunk_size)
        return {"deletion_auc": deletion, "insertion_auc": insertion, "infidelity": infid}
