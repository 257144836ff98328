"""attribution/choices.py: each method's settings, ignored_settings with and without defaults, the name lists."""
import types

import pytest

from igaudit.transforms.attribution.choices import (AUTO_RULES, BASELINE_KINDS, COMMON_SETTINGS, METHOD_SETTINGS,
                                                    METHODS, RANDOM_BASELINES, RULE_CHOICES, ignored_settings)
from igaudit.transforms.attribution.quadrature import RULES


def test_every_method_declares_its_settings_and_none_repeats_a_common_one():
    assert set(METHOD_SETTINGS) == set(METHODS)
    for method, settings in METHOD_SETTINGS.items():
        assert len(set(settings)) == len(settings), method
        assert not set(settings) & set(COMMON_SETTINGS), method


@pytest.mark.parametrize("method, given, ignored", [
    ("integrated_gradients", {"steps": 8, "rule": "trapezoid", "baseline": "black", "window": 4}, ["window"]),
    ("expected_gradients", {"references": 8, "baseline_samples": 4, "steps": 8, "baseline": "white"},
     ["steps", "baseline"]),
    ("gradients", {"smoothing": "vargrad", "samples": 4, "stdev": 0.1, "references": 2}, ["references"]),
    ("gradient_x_input", {"smoothing": "smoothgrad", "rule": "trapezoid"}, ["rule"]),
    ("grad_cam", {"layer": "conv2", "smoothing": "smoothgrad", "stride": 2}, ["smoothing", "stride"]),
    ("occlusion", {"window": 4, "stride": 2, "fill": 0.0, "layer": "conv", "tolerance": 0.1},
     ["layer", "tolerance"]),
])
def test_ignored_settings_known_answers(method, given, ignored):
    assert ignored_settings(method, given) == ignored


def test_common_settings_are_never_ignored():
    given = {key: 1 for key in COMMON_SETTINGS}
    for method in METHODS:
        assert ignored_settings(method, given) == []


def test_settings_at_their_default_are_not_reported():
    """A setting equal to the defaults' value does nothing either way; one the defaults lack is still reported."""
    defaults = types.SimpleNamespace(steps=64, rule="adaptive", window=8)
    given = {"steps": 64, "rule": "trapezoid", "window": 8, "unheard_of": None}
    assert ignored_settings("occlusion", given, defaults) == ["rule", "unheard_of"]
    assert ignored_settings("grad_cam", dict(given, window=4), defaults) == ["rule", "window", "unheard_of"]
    assert ignored_settings("grad_cam", given) == ["steps", "rule", "window", "unheard_of"]    # no defaults


def test_an_unknown_method_ignores_nothing():
    """The config refuses the method itself, not each of its settings."""
    assert ignored_settings("lime", {"steps": 8, "window": 4}) == []


def test_name_lists_agree_with_each_other():
    assert RULE_CHOICES[0] == "adaptive" and RULE_CHOICES[1:] == RULES
    assert set(AUTO_RULES) <= set(RULE_CHOICES)
    assert set(RANDOM_BASELINES) <= set(BASELINE_KINDS)
    assert len(set(METHODS)) == len(METHODS)
