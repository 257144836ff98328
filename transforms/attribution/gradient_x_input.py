"""Gradient x input: x * dF/dx (Shrikumar et al. 2016); with smoothing, the noisy input times its
gradient, as Captum's NoiseTunnel. No completeness identity: `completeness_gap` is NaN."""
from __future__ import annotations

from typing import Optional

import numpy as np

from igaudit.transforms.attribution.gradients import explain_plain, plain_gradients
from igaudit.transforms.attribution.result import Batch, MethodResult

COMPLETENESS = False
NEEDS_REFERENCES = False


def explain(explainer, batch: Batch) -> MethodResult:
    return explain_plain(explainer, batch, "gradient_x_input", "end")


def gradient_x_input(engine, images: np.ndarray, targets: Optional[np.ndarray] = None, **smoothing) -> MethodResult:
    """x * dF/dx at each input (keywords: image_ids, smoothing, samples, stdev, as `gradients.plain_gradients`)."""
    return plain_gradients(engine, "gradient_x_input", "end", images, targets, **smoothing)
