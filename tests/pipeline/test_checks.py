"""pipeline/checks.py: each config field check cleans a good value and refuses a bad one saying what it accepts."""
import dataclasses
import math
from pathlib import Path

import pytest

from igaudit.pipeline import checks as c


def refused(check, value) -> str:
    """The message of the ValueError `check(value)` raises."""
    with pytest.raises(ValueError) as e:
        check(value)
    return str(e.value)


def test_integers_have_a_floor_and_are_never_bools_or_floats():
    assert c.integer()(1) == 1 and c.integer(0)(0) == 0
    for bad in (0, True, 2.0, "3", None):
        assert refused(c.integer(), bad) == "expected an integer >= 1"
    assert refused(c.integer(2), 1) == "expected an integer >= 2"


def test_numbers_are_floats_within_inclusive_bounds():
    check = c.number(0.0, 0.5)
    assert check(0) == 0.0 and isinstance(check(0), float) and check(0.5) == 0.5
    for bad in (0.51, -1e-9, math.nan, True, "0.1"):
        assert refused(check, bad) == "expected a number in [0.0, 0.5]"


def test_choices_booleans_and_text():
    assert c.choice("a", "b")("b") == "b"
    assert refused(c.choice("a", "b"), "c") == "expected one of: a, b"
    assert c.boolean(False) is False
    assert refused(c.boolean, 0) == refused(c.boolean, "yes") == "expected true or false"
    assert c.text("x") == "x"
    assert refused(c.text, "") == refused(c.text, 5) == "expected a non-empty string"


def test_a_path_given_in_code_is_taken_as_its_text():
    assert c.path(Path("models") / "m.keras") == "models/m.keras"
    assert c.path("gs://b/m") == "gs://b/m"
    assert c.path(Path("")) == "."                           # a Path is never empty text
    assert refused(c.path, None) == "expected a non-empty string"
    assert refused(c.path, "") == "expected a non-empty string"


def test_optional_lets_none_through_and_or_auto_lets_auto_through():
    assert c.optional(c.integer())(None) is None and c.optional(c.integer())(3) == 3
    assert refused(c.optional(c.integer()), 0) == "expected an integer >= 1"
    assert c.or_auto(c.integer())("auto") == "auto" and c.or_auto(c.integer())(8) == 8
    assert refused(c.or_auto(c.integer()), "many") == "expected an integer >= 1, or auto"


def test_pairs_are_tuples_of_two_finite_numbers_of_the_kind_asked():
    assert c.pair(int)([64.0, 32]) == (64, 32) and all(type(x) is int for x in c.pair(int)([64.0, 32]))
    assert c.pair(float)((0, 1)) == (0.0, 1.0)
    assert refused(c.pair(int), [64]) == "expected a list of two numbers, like [64, 64]"
    assert refused(c.pair(float), [0, True]) == "expected a list of two numbers, like [0, 1]"
    assert refused(c.pair(float), "0, 1") == "expected a list of two numbers, like [0, 1]"
    assert refused(c.pair(float), [0, math.inf]) == "expected two finite numbers"
    assert refused(c.pair(int), [64, math.nan]) == "expected two finite numbers"
    assert refused(c.pair(int), [1.5, 2]) == "expected two whole numbers"
    assert refused(c.pair(int, positive=True), [0, 5]) == "expected two positive numbers"
    assert c.pair(int)([0, -5]) == (0, -5)                   # only `positive` asks for more than whole numbers


def test_a_range_is_low_below_high():
    assert c.range_pair([0, 255]) == (0.0, 255.0) and c.range_pair([-1, 1]) == (-1.0, 1.0)
    for bad in ([1, 1], [1, 0]):
        assert refused(c.range_pair, bad).startswith("expected [low, high] with low < high")
    assert refused(c.range_pair, [0]) == "expected a list of two numbers, like [0, 1]"


def test_a_baseline_is_any_non_empty_text_and_a_target_a_name_or_index():
    assert c.baseline("blur") == "blur" and c.baseline("base/grey.png") == "base/grey.png"
    message = refused(c.baseline, "")
    assert message.startswith("expected one of black, white") and message.endswith("or the path of an image")
    assert refused(c.baseline, 0) == message
    for good in ("predicted", "top_k", "cat", 0, 7):
        assert c.target(good) == good
    for bad in (-1, True, "", 1.5, None):
        assert refused(c.target, bad) == "expected predicted, label, top_k, a class name or a class index"


def test_thresholds_are_a_copy_of_a_mapping_of_known_positive_numbers():
    assert c.thresholds(None) == {}
    given = {"grid_js": 0.2}
    cleaned = c.thresholds(given)
    assert cleaned == given and cleaned is not given
    assert refused(c.thresholds, [("grid_js", 0.2)]) == "expected a mapping of threshold names to numbers"
    assert refused(c.thresholds, {"gird_js": 0.2}).startswith("analysis.thresholds.gird_js: unknown threshold")
    assert "must be a positive number" in refused(c.thresholds, {"grid_js": 0})


def test_a_colour_is_three_bytes():
    assert c.colour([0, 255, 0]) == (0, 255, 0)
    for bad in ([0, 256, 0], [0, 255], [0, True, 0], [0.0, 1, 2], "red"):
        assert refused(c.colour, bad) == "expected three integers in [0, 255], like [0, 255, 0]"


@dataclasses.dataclass(frozen=True)
class Knob:
    size: int = 1
    name: str = "x"

    def __post_init__(self):
        if self.size < 1:
            raise ValueError("size: expected an integer >= 1")


def test_a_section_is_built_from_a_mapping_or_taken_as_given():
    check = c.section(Knob)
    assert check({"size": 3}) == Knob(3, "x")
    knob = Knob(2)
    assert check(knob) is knob
    assert refused(check, [1]) == "expected a mapping with keys size, name"
    assert refused(check, {"size": 3, "nmae": "y"}) == "unknown key 'nmae'; known keys: size, name"
    assert refused(check, {"size": 0}) == "size: expected an integer >= 1"


def test_urls_are_http_or_https_with_something_after_the_scheme():
    assert c.url("https://hooks.example.com/T0/x") == "https://hooks.example.com/T0/x"
    assert c.url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/"
    for bad in ("ftp://example.com/x", "hooks.example.com", "https://", "http://"):
        assert refused(c.url, bad) == "expected an http:// or https:// URL"
    assert refused(c.url, "") == "expected a non-empty string"


def test_an_http_url_with_a_one_letter_host_is_accepted():
    assert c.url("http://a") == "http://a"


def test_exit_codes_are_a_sorted_set_from_0_to_5():
    assert c.exit_codes([4, 1, 3, 1]) == (1, 3, 4)
    assert c.exit_codes(3) == (3,) and c.exit_codes((0, 5)) == (0, 5)
    for bad in ([], [6], [-1], [True], ["3"], 1.0):
        assert refused(c.exit_codes, bad) == "expected a list of exit codes from 0 to 5, like [1, 3, 4]"


def test_a_field_carries_its_default_check_and_local_path_flag():
    f = c.field("black", c.baseline, local_path=True)
    assert f.default == "black"
    assert f.metadata["check"] is c.baseline and f.metadata["local_path"] is True
    assert c.field(1, c.integer()).metadata["local_path"] is False
