"""The names the attribution engines answer to: methods, rules, scores, outputs, formats, smoothings, baselines.

TensorFlow-free, so the config takes its allowed values from here (a name is declared
once) without importing an engine.
"""
from __future__ import annotations

from igaudit.transforms.attribution.quadrature import RULES

METHODS = ("integrated_gradients", "gradients", "gradient_x_input", "expected_gradients", "grad_cam",
           "occlusion")
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
