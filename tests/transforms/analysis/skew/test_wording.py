"""analysis/skew/wording.py: figures in words: what counts as measured, percentages, numbers, signed probability
changes with a true minus, who was tested, and describe's sentences for region, background and colour tests."""
import math

import numpy as np
import pytest

from igaudit.transforms.analysis.skew.wording import change, describe, num, ok, pct
from igaudit.transforms.records import InterventionTest

FIGURES = {"attending": 12, "class_count": 40, "accuracy": 0.9, "accuracy_removed": 0.25, "accuracy_control": 0.85,
           "drop": 0.6, "control_drop": 0.05, "kept_class": 0.8, "kept_other": 0.1, "transplant_flip": 0.7,
           "transplant_control": 0.05, "stamp_pixels": 36, "stamp_repeat": 0.95, "stamp_others": 0.05}
WHO = "the 12 cat images that look there (30% of the class)"


def intervention(kind):
    return InterventionTest("t", "label", "cat", 0, kind, "the top-left 2x2 cells", cells=(0, 2, 0, 2), grid=8)


@pytest.mark.parametrize("x, measured", [(None, False), (math.nan, False), (np.float64("nan"), False), (0, True),
                                         (0.0, True), (-1.5, True), (np.float64(0.3), True)])
def test_ok_is_a_measured_figure(x, measured):
    assert ok(x) is measured


def test_pct_and_num_round_and_dash_what_was_not_measured():
    assert [pct(v) for v in (0.756, 0.0, 1.0, 0.004, None, math.nan)] == ["76%", "0%", "100%", "0%", "–", "–"]
    assert [num(v) for v in (0.5, 1, 0.125, -0.3, None, math.nan)] == ["0.50", "1.00", "0.12", "-0.30", "–", "–"]


def test_change_shows_a_drop_as_a_loss_with_a_true_minus():
    assert change(0.74) == "\u22120.74"
    assert change(-0.01) == "+0.01"
    assert change(1.0) == "\u22121.00"
    assert change(None) == "–" and change(math.nan) == "–"
    assert "-" not in change(0.5)                                       # never the hyphen-minus


def test_a_region_test_in_words():
    assert describe(intervention("region"), FIGURES) == (
        f"{WHO}: masking the top-left 2x2 cells drops accuracy 0.90 → 0.25 (probability −0.60); masking equal "
        "areas elsewhere: 0.85 (−0.05); kept alone it is called cat in 80% of them vs 10% of other classes' images; "
        "pasted onto other classes' images it turns 70% of them into cat (equal areas from elsewhere: 5%); a "
        "36-pixel pattern repeats in 95% of the images that rely on it and in 5% of other classes' images")


@pytest.mark.parametrize("pixels", [0, None, math.nan])
def test_a_region_without_a_repeating_pattern_or_transplant_says_so(pixels):
    f = {k: v for k, v in FIGURES.items() if not k.startswith("transplant")}
    text = describe(intervention("region"), dict(f, stamp_pixels=pixels))
    assert text.endswith("; no pattern repeats across the images that rely on it")
    assert "it turns – of them into cat (equal areas from elsewhere: –)" in text
    assert "pattern repeats in" not in text


def test_who_falls_back_to_the_class_without_counts():
    for counts in ({}, {"attending": 5, "class_count": 0}, {"attending": None, "class_count": 10}):
        f = dict(FIGURES, **{"attending": None, "class_count": None, **counts})
        assert describe(intervention("region"), f).startswith("cat images: masking")
    assert describe(intervention("region"), dict(FIGURES, attending=3, class_count=4)).startswith(
        "the 3 cat images that look there (75% of the class): ")


def test_a_background_test_in_words():
    assert describe(intervention("outside_box"), FIGURES) == (
        f"{WHO}: replacing the background around the object boxes by other classes' drops accuracy 0.90 → 0.25 "
        "(probability −0.60); other classes' own: −0.05; the background alone is called cat in 80% of them vs 10% "
        "of other classes' backgrounds; its texture repeats across the images that rely on it (spectrum "
        "correlation 0.95 vs 0.05 in other classes)")


def test_a_colour_test_in_words():
    text = describe(intervention("channel"), dict(FIGURES, drop=-0.02, stamp_repeat=None))
    assert text == (
        f"{WHO}: undoing the class's colour cast drops accuracy 0.90 → 0.25 (probability +0.02); other classes' "
        "own: −0.05; giving other classes' images cat's cast makes 80% of them cat (the cast reversed: 10%); the "
        "cast covers the frame: the images that rely on it carry more of the channel there than other classes' "
        "images – of the time, on content 5% less varied in colour than other classes'")
