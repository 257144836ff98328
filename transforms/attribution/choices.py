"""The names the attribution engines answer to: methods, rules, scores, outputs, formats, smoothings, baselines.

TensorFlow-free, so the config takes its allowed values from here (a name is declared
once) without importing an engine.
"""
from __future__ import annotations

from igaudit.transforms.attribution.quadrature import RULES

METHODS = ("integrated_gradients", "gradients", "gradient_x_input", "expected_gradients", "grad_cam",
           "occlusion")
# The attribution settings each method reads, beyond those every method reads (COMMON_SETTINGS). A config
# that sets one its method ignores is refused (pipeline/config.py), so a setting never silently does nothing.
# Declared here, beside the method names, because a config is parsed without TensorFlow (grad_cam and
# occlusion import it).
COMMON_SETTINGS = ("method", "target", "k", "score", "batch_size", "chunk_size", "memory_mb", "jit_compile")
_SMOOTHING = ("smoothing", "samples", "stdev")
METHOD_SETTINGS = {
    "integrated_gradients": ("steps", "tolerance", "pixel_tolerance", "max_steps", "rule", "baseline",
                             "baseline_samples", "blur_sigma", "baseline_stdev") + _SMOOTHING,
    "expected_gradients": ("references", "baseline_samples") + _SMOOTHING,   # its baselines: the references
    "gradients": _SMOOTHING,
    "gradient_x_input": _SMOOTHING,
    "grad_cam": ("layer",),
    "occlusion": ("window", "stride", "fill"),
}


def ignored_settings(method: str, given, defaults=None) -> list:
    """The attribution settings in `given` (a mapping) that `method` does not read, leaving out those equal to
    `defaults`' (a setting at its default does nothing either way); none for an unknown method (the config
    refuses the method itself)."""
    if method not in METHOD_SETTINGS:
        return []
    used = COMMON_SETTINGS + METHOD_SETTINGS[method]
    return [key for key, value in given.items() if key not in used
            and (defaults is None or value != getattr(defaults, key, object()))]
# `adaptive` refines each image's grid (refine.py); the others are fixed quadrature rules.
RULE_CHOICES = ("adaptive",) + RULES
# The rules `steps: auto` can refine: adaptive splits intervals, trapezoid and gauss_legendre double.
AUTO_RULES = ("adaptive", "trapezoid", "gauss_legendre")
SCORES = ("probability", "logit")
OUTPUTS = ("logits", "probabilities")
FORMATS = ("auto", "keras", "saved_model", "hub")
# model.precision: Keras models' compute dtype (variables stay float32); gradients are summed in float32
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SMOOTHINGS = ("none", "smoothgrad", "smoothgrad_sq", "vargrad")
# Baselines by name; anything else in `attribution.baseline` is the path of a baseline image.
BASELINE_KINDS = ("black", "white", "uniform", "gaussian", "blur", "mean")
RANDOM_BASELINES = ("uniform", "gaussian")  # the only kinds for which several samples mean anything
