"""transforms/analysis/distances.py: Jensen-Shannon divergence, L-infinity distance of counts, robust z."""
import math

import numpy as np
import pytest

from igaudit.transforms.analysis.distances import MAD_FLOOR, MAD_TO_SIGMA, js_divergence, linf_distance, robust_z


def test_js_identical_is_zero_and_normalises():
    assert js_divergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence([2, 3, 5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-12)


def test_js_disjoint_is_one_bit():
    assert js_divergence([1, 0, 0, 0], [0, 0, 3, 1]) == pytest.approx(1.0)


def test_js_symmetric_and_bounded():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.random(10) * (rng.random(10) > 0.3), rng.random(10) + 0.01
        d = js_divergence(p, q)
        assert d == pytest.approx(js_divergence(q, p))
        assert 0 <= d <= 1


def test_js_known_value():
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4):
    # KL(p||m) = log2(4/3); KL(q||m) = 1/2 log2(2/3) + 1/2 log2(2); JS = 3/2 - 3/4 log2(3)
    expected = 1.5 - 0.75 * math.log2(3)
    assert expected == pytest.approx(0.311278, abs=1e-6)
    assert js_divergence([1, 0], [1, 1]) == pytest.approx(expected)


def test_js_rejects_unusable_inputs():
    with pytest.raises(ValueError):
        js_divergence([0, 0], [1, 1])
    with pytest.raises(ValueError):
        js_divergence([1, 2, 3], [1, 2])


def test_linf_counts_normalised_missing_keys_zero():
    assert linf_distance({"a": 10, "b": 10}, {"a": 1, "b": 1}) == pytest.approx(0.0)
    # shares (.5, .5, 0) vs (.25, .25, .5): largest gap is c's 0.5
    assert linf_distance({"a": 2, "b": 2}, {"a": 1, "b": 1, "c": 2}) == pytest.approx(0.5)
    assert linf_distance({"a": 7, "b": 3}, {"a": 4, "b": 6}) == pytest.approx(0.3)
    assert linf_distance({"a": 1}, {"b": 5}) == pytest.approx(1.0)
    assert linf_distance([("a", 7), ("b", 3)], {"b": 6, "a": 4}) == pytest.approx(0.3)  # pairs accepted


def test_robust_z_plain_and_floored():
    others = [0.1, 0.2, 0.3, 0.4, 0.5]    # median .3, MAD .1
    assert robust_z(0.6, others) == pytest.approx(0.3 / (MAD_TO_SIGMA * 0.1))
    assert robust_z(0.0, others) == pytest.approx(-0.3 / (MAD_TO_SIGMA * 0.1))
    # near-identical others: MAD ~ 0, the floor keeps z finite
    tight = [0.120, 0.1201, 0.1199]
    z = robust_z(0.42, tight)
    assert math.isfinite(z)
    assert z == pytest.approx((0.42 - 0.12) / (MAD_TO_SIGMA * MAD_FLOOR))
    assert MAD_FLOOR == 0.02
    assert robust_z(0.12, [0.12, 0.12, 0.12]) == 0.0
    with pytest.raises(ValueError):
        robust_z(0.1, [])
