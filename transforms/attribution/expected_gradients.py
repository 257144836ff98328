"""Expected gradients (Erion et al. 2021): IG with its baseline drawn from the data and one random alpha per draw.

attribution = mean over `samples` draws of (x - r) * dF/dx at r + a (x - r), r drawn from a
fixed reference sample of the dataset (a side input, the same on every worker) and a from
U[0, 1), both seeded by the image id. Completeness holds in expectation: F(x') is the mean F
over the drawn references. An image that is itself one of the references never draws itself (that
path has zero length and would only dilute the mean).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from igaudit.transforms.attribution.baselines import image_rng
from igaudit.transforms.attribution.paths import has_completeness, noise_samples, path_attributions
from igaudit.transforms.attribution.result import Batch, MethodResult

COMPLETENESS = True
NEEDS_REFERENCES = True     # its baselines arrive with the data: no warm-up before the first batch


def explain(explainer, batch: Batch) -> MethodResult:
    a = explainer.attribution
    return expected_gradients(explainer.engine, batch.images, batch.references, batch.image_ids, batch.targets,
                              samples=a.baseline_samples, smoothing=a.smoothing, smoothing_samples=a.samples,
                              stdev=a.stdev)


def draws(image_id: str, samples: int, num_references: int,
          allowed: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference indices (samples,) and alphas (samples,) in [0, 1) for one image's expected gradients,
    drawn among `allowed` reference indices (all of them by default)."""
    allowed = np.arange(num_references) if allowed is None else np.asarray(allowed)
    index = np.empty(samples, np.int64)
    alpha = np.empty(samples, np.float64)
    for s in range(samples):
        rng = image_rng(image_id, "expected_gradients", s)
        index[s] = allowed[rng.integers(len(allowed))]
        alpha[s] = rng.uniform()
    return index, alpha


def not_itself(image: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The references an image may draw: every one but copies of the image itself (a draw of itself
    is a zero path and adds nothing), unless the image is all the references there are."""
    same = np.array([np.array_equal(image, r) for r in references])
    return np.flatnonzero(~same) if not same.all() else np.arange(len(references))


def expected_gradients(engine, images: np.ndarray, references: np.ndarray, image_ids: Sequence[str],
                       targets: Optional[np.ndarray] = None, *, samples: int, smoothing: str = "none",
                       smoothing_samples: Optional[int] = None, stdev: Optional[float] = None) -> MethodResult:
    """Expected gradients of a batch; `references` (M, H, W, C) must be a fixed array (drawing from the
    batch would tie results to batching)."""
    images = engine.check_images(images)
    references = engine.check_images(references)
    n, m = len(images), len(references)
    if m == 0:
        raise ValueError("expected_gradients needs at least one reference image")
    if image_ids is None or len(image_ids) != n:
        raise ValueError("expected_gradients needs one image id per image (draws are seeded by image id)")
    if int(samples) < 1:
        raise ValueError(f"expected_gradients samples must be >= 1, got {samples}")
    drawn = [draws(image_id, samples, m, not_itself(images[i], references)) for i, image_id in enumerate(image_ids)]
    head = engine.head(images, targets)
    ref_outputs = engine.forward(references)
    score_baseline = np.array([engine.score_of(ref_outputs[index], np.full(samples, head.targets[i])).mean()
                               for i, (index, _) in enumerate(drawn)])
    attributions, end_mean = path_attributions(
        engine, images, head.targets, image_ids, inner=int(samples),
        start_of=lambda i, b, end: references[drawn[i][0][b]],
        alphas_of=lambda i, b: (np.array([drawn[i][1][b]], np.float32), np.ones(1, np.float32)),
        multiply="diff", smoothing=smoothing, samples=smoothing_samples, stdev=stdev,
        end_scores=smoothing == "smoothgrad")
    copies = noise_samples(smoothing, smoothing_samples)
    return engine.result("expected_gradients", attributions, head, score_baseline=score_baseline,
                         gap_input=end_mean, gap=has_completeness(smoothing), gradient_samples=copies * samples,
                         forward_passes=(copies if smoothing == "smoothgrad" else 0))
