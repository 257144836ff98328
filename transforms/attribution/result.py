"""What every attribution method returns for a batch, and the few numbers around it."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import numpy as np


class Head(NamedTuple):
    """The model at the clean inputs: outputs, predicted class, its confidence, and the resolved
    targets (-1 requested -> the predicted class)."""
    outputs: np.ndarray      # N x K
    predicted: np.ndarray    # N int
    confidence: np.ndarray   # N softmax probability of the predicted class
    targets: np.ndarray      # N int


@dataclasses.dataclass(frozen=True, eq=False)
class MethodResult:
    """One method's attributions for a batch of N images (rows: images, or (image, target) pairs)."""
    method: str
    attributions: np.ndarray        # N x H x W x C float32 (grad_cam: the map repeated per channel)
    outputs: np.ndarray             # N x K model outputs at the (clean) inputs
    predicted: np.ndarray           # N int
    confidence: np.ndarray          # N softmax probability of the predicted class
    targets: np.ndarray             # N int, the class each attribution explains
    score_input: np.ndarray         # N, F(x) at the clean input
    score_baseline: np.ndarray      # N, F(x') (mean over samples); NaN where there is no baseline
    completeness_gap: np.ndarray    # N, sum(attr) - (F(x) - F(x')); NaN where the method has no such identity
    gradient_samples: np.ndarray    # N int: model gradient evaluations per image
    forward_passes: np.ndarray      # N int: extra forward-only evaluations per image (occlusion, scores)
    steps: Optional[np.ndarray] = None      # IG: steps each image used (intervals / points)
    converged: Optional[np.ndarray] = None  # IG with steps auto: reached its tolerances before max_steps
    estimated_error: Optional[np.ndarray] = None  # IG rule adaptive: the policy's per-pixel error estimate / ||IG||_1


def make_result(method: str, attributions: np.ndarray, head: Head, *, score_input=None, score_baseline=None,
                gap: bool = True, gap_input=None, gradient_samples=0, forward_passes=0, **extra) -> MethodResult:
    """A MethodResult with the completeness gap computed where `gap` (sum(attr) - (F - F(x'))).

    score_input defaults to F at the clean inputs (`head`'s outputs need a score_of, so callers pass it);
    gap_input: the F(x) the gap is measured against when it is not score_input (smoothgrad: the mean F
    over the noisy inputs).
    """
    n = len(head.targets)
    if score_baseline is None:
        score_baseline = np.full(n, np.nan)
    if gap:
        reference = score_input if gap_input is None else gap_input
        completeness = attributions.reshape(n, -1).sum(axis=1, dtype=np.float64) - (reference - score_baseline)
    else:
        completeness = np.full(n, np.nan)
    return MethodResult(
        method=method, attributions=attributions, outputs=head.outputs, predicted=head.predicted,
        confidence=head.confidence, targets=head.targets, score_input=np.asarray(score_input, np.float64),
        score_baseline=np.asarray(score_baseline, np.float64), completeness_gap=completeness,
        gradient_samples=np.broadcast_to(np.asarray(gradient_samples, np.int64), (n,)).copy(),
        forward_passes=np.broadcast_to(np.asarray(forward_passes, np.int64), (n,)).copy(), **extra)


class Batch(NamedTuple):
    """What a method explains: rows (image, target), their baselines and ids."""
    images: np.ndarray                     # N x H x W x C float32 in [0, 1]
    baselines: np.ndarray                  # S x N x H x W x C (S random baseline samples, else 1)
    targets: np.ndarray                    # N int; -1: the predicted class
    image_ids: list                        # N ids: every random draw is seeded by them
    references: Optional[np.ndarray] = None  # expected_gradients: M x H x W x C reference images
