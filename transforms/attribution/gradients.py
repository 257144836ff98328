"""Saliency: the gradient dF/dx at the input (Simonyan et al. 2013; PAIR's GradientSaliency), optionally smoothed.

No completeness identity: `completeness_gap` is NaN. `plain_gradients` also serves gradient x input.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from igaudit.transforms.attribution.paths import noise_samples, path_attributions
from igaudit.transforms.attribution.result import Batch, MethodResult

COMPLETENESS = False
NEEDS_REFERENCES = False


def explain(explainer, batch: Batch) -> MethodResult:
    return explain_plain(explainer, batch, "gradients", "one")


def gradients(engine, images: np.ndarray, targets: Optional[np.ndarray] = None, **smoothing) -> MethodResult:
    """dF/dx at each input (with smoothing: averaged over noisy copies; keywords as `plain_gradients`)."""
    return plain_gradients(engine, "gradients", "one", images, targets, **smoothing)


def explain_plain(explainer, batch: Batch, method: str, multiply: str) -> MethodResult:
    a = explainer.attribution
    return plain_gradients(explainer.engine, method, multiply, batch.images, batch.targets, image_ids=batch.image_ids,
                           smoothing=a.smoothing, samples=a.samples, stdev=a.stdev)


def plain_gradients(engine, method: str, multiply: str, images: np.ndarray, targets: Optional[np.ndarray], *,
                    image_ids: Optional[Sequence[str]] = None, smoothing: str = "none", samples: Optional[int] = None,
                    stdev: Optional[float] = None) -> MethodResult:
    """One gradient per (noisy) input, multiplied by 1 ("one") or by the input itself ("end")."""
    images = engine.check_images(images)
    head = engine.head(images, targets)
    one = (np.ones(1, np.float32), np.ones(1, np.float32))
    attributions, _ = path_attributions(
        engine, images, head.targets, image_ids, inner=1, start_of=lambda i, b, end: end,
        alphas_of=lambda i, b: one, multiply=multiply, smoothing=smoothing, samples=samples, stdev=stdev)
    return engine.result(method, attributions, head, gap=False, gradient_samples=noise_samples(smoothing, samples))
