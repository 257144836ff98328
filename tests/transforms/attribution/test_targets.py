"""`attribution.target`: parsing against the class names and resolving per batch (`targets`)."""
import numpy as np
import pytest

from igaudit.transforms.attribution.targets import TargetSpec, parse_target, resolve_targets, target_rows


def test_targets_parse_and_resolve():
    names = ["ant", "bee", "cat", "dog"]
    probs = np.array([[0.1, 0.5, 0.3, 0.1], [0.4, 0.1, 0.1, 0.4]])
    assert resolve_targets(parse_target("predicted", names), probs).tolist() == [[1], [0]]
    assert resolve_targets(parse_target("label", names), probs, np.array([2, -1])).tolist() == [[2], [-1]]
    assert resolve_targets(parse_target("cat", names), probs).tolist() == [[2], [2]]
    assert resolve_targets(parse_target(3, names), probs).tolist() == [[3], [3]]
    assert resolve_targets(parse_target("1", names), probs).tolist() == [[1], [1]]
    top = parse_target("top_k", names, k=3)
    assert top == TargetSpec("top_k", k=3) and top.per_image == 3
    assert resolve_targets(top, probs).tolist() == [[1, 2, 0], [0, 3, 1]]   # ties: lower index first
    rows = target_rows(resolve_targets(top, probs))
    assert rows[0].tolist() == [0, 0, 0, 1, 1, 1] and rows[1].tolist() == [1, 2, 0, 0, 3, 1]
    assert parse_target("3", ["0", "1", "2", "3"]).index == 3    # a class named "3" is that class


@pytest.mark.parametrize("target,kwargs,message", [
    ("dgo", {}, "unknown class name 'dgo' \\(did you mean 'dog'\\?\\)"),
    (7, {}, "class index 7 is out of range; the model has 4 classes \\(0..3\\)"),
    (-1, {}, "class index -1 is out of range"),
    ("12", {}, "class index '12' is out of range"),
    ("top_k", {"k": 0}, "attribution.k must be a positive integer"),
    ("top_k", {"k": 5}, "attribution.k = 5 is more than the model's 4 classes"),
    (True, {}, "must be predicted, label, top_k"),
    (2.5, {}, "must be predicted, label, top_k"),
])
def test_bad_targets_are_clear_config_errors(target, kwargs, message):
    with pytest.raises(ValueError, match="attribution\\.(target|k)") as info:
        parse_target(target, ["ant", "bee", "cat", "dog"], **kwargs)
    assert info.match(message)

