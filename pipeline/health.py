"""Whether a finished run can be trusted: its status (ok / failed, with the reason), why it is suspect, and
its warnings.

A run fails when its counts do not reconcile, when it attributed nothing, or when more than
`analysis.max_rejected_share` of its inputs were rejected: a scheduler must not read any of
those as a healthy audit. A complete run is suspect when the model's answers look like a misconfigured
input rather than a model: accuracy at most 1.5x chance, or one class taking at least 90% of the
predictions (exit 4 under analysis.fail_on_suspect; an empty input is suspect too, `NothingToAudit`).
It warns, without being suspect, when one class takes most predictions (less than 90%) or no label is a
model class. The usual causes are named, so each line says what to check.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

# The likely causes of predictions at chance on a model that works elsewhere.
CAUSES = ("model.input_range (the scale the model expects: [0, 1], [-1, 1] or [0, 255])",
          "model.resize (pad, crop or stretch, as in training)",
          "the class order (model.class_names: one name per model output, in output order)")
CHECK = "; check " + ", ".join(CAUSES)      # the end of every sentence about the model's answers
MIN_IMAGES = 10          # below this, accuracy and prediction shares are too noisy to warn on
SUSPECT_CHANCE = 1.5     # accuracy at most this multiple of chance (1 / classes) is suspect
SUSPECT_SHARE = 0.9      # one class taking at least this share of the predictions is suspect


def status(matched: int, attributed: int, rejected: int, max_rejected_share: float) -> tuple[str, Optional[str]]:
    """("ok", None) or ("failed", the reason in one sentence)."""
    if matched != attributed + rejected:
        return "failed", (f"counts do not reconcile: matched {matched} != attributed {attributed} + rejected "
                          f"{rejected}")
    if attributed == 0:
        return "failed", (f"no image was attributed: all {rejected} inputs were rejected (see rejected.parquet "
                          f"for the reasons)")
    share = rejected / matched
    if share > max_rejected_share:
        return "failed", (f"{rejected} of {matched} inputs ({share:.0%}) were rejected, more than "
                          f"analysis.max_rejected_share ({max_rejected_share:.0%}); see rejected.parquet")
    return "ok", None


def accuracy(label_index: Sequence[int], predicted: Sequence[int]) -> Optional[float]:
    """Share of images predicted as their label, over images whose label is a model class; None if none is."""
    pairs = [(lab, pred) for lab, pred in zip(label_index, predicted) if lab is not None and lab >= 0]
    return sum(lab == pred for lab, pred in pairs) / len(pairs) if pairs else None


def collapse_share(num_classes: int) -> float:
    """The share of images predicted as one class above which predictions look collapsed: most images
    (half) for many classes, more for few (a 2-class set is 50/50 when balanced: 90% there)."""
    return max(0.5, min(0.9, 3.0 / max(num_classes, 1)))


def _top_prediction(predicted_names: Sequence[str]) -> tuple[Optional[str], float]:
    """(the most predicted class, its share of the predictions), or (None, 0) below MIN_IMAGES images."""
    if len(predicted_names) < MIN_IMAGES:
        return None, 0.0
    name, count = Counter(predicted_names).most_common(1)[0]
    return name, count / len(predicted_names)


def suspect(label_index: Sequence[int], predicted_names: Sequence[str], predicted: Sequence[int],
            num_classes: int) -> list[str]:
    """Why a complete run's answers look like a broken set-up, one sentence each (empty: not suspect)."""
    out = []
    labelled = [i for i in label_index if i is not None and i >= 0]
    acc = accuracy(label_index, predicted)
    chance = 1 / max(num_classes, 1)
    if acc is not None and len(labelled) >= max(MIN_IMAGES, 2 * num_classes) and acc <= SUSPECT_CHANCE * chance:
        out.append(f"accuracy {acc:.2f} on {len(labelled)} labelled images is near or below chance (chance is "
                   f"{chance:.2f} for {num_classes} classes; suspect at or below {SUSPECT_CHANCE:g}x that, "
                   f"{SUSPECT_CHANCE * chance:.2f}){CHECK}")
    name, share = _top_prediction(predicted_names)
    if num_classes >= 2 and share >= SUSPECT_SHARE:
        out.append(f"{share:.0%} of images are predicted '{name}' (of {num_classes} classes; suspect at or above "
                   f"{SUSPECT_SHARE:.0%}){CHECK}")
    return out


def warnings(labels: Sequence[Optional[str]], label_index: Sequence[int], predicted_names: Sequence[str],
             num_classes: int) -> list[str]:
    """Warnings about the model's answers that do not make the run suspect, one sentence each (one row per
    attributed image)."""
    out = []
    labelled = [i for i in label_index if i is not None and i >= 0]
    if any(lab is not None for lab in labels) and not labelled:
        out.append("none of the image labels is one of the model's class names, so accuracy cannot be measured; "
                   "set model.class_names to the model's classes in output order")
    name, share = _top_prediction(predicted_names)
    if num_classes >= 2 and collapse_share(num_classes) < share < SUSPECT_SHARE:
        out.append(f"{share:.0%} of images are predicted '{name}' (of {num_classes} classes){CHECK}")
    return out


def convergence_line(not_converged: int, attributed: int) -> Optional[str]:
    """The summary sentence for images the step policy left short (None when none): `converged` is false
    when the policy did not reach what it controls (rule adaptive: the per-pixel error estimate within
    pixel_tolerance; trapezoid / gauss_legendre: the completeness gap within tolerance) before max_steps.
    Reported, not a warning (docs/step-policy.md)."""
    if not not_converged:
        return None
    return (f"{not_converged} of {attributed} images stopped at attribution.max_steps before their error "
            f"estimate met its tolerance (converged = false in their images rows); a larger max_steps brings "
            f"them closer")
