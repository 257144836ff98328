"""Quadrature rules for the IG path integral: weights, nodes and the exactness each rule promises (numpy only)."""
import numpy as np
import pytest

from igaudit.transforms.attribution.quadrature import RULES, quadrature


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_quadrature_weights_sum_to_one_and_alphas_in_unit_interval(rule, steps):
    alphas, weights = quadrature(rule, steps)
    assert np.isclose(weights.sum(), 1.0)
    assert alphas.min() >= 0 and alphas.max() <= 1
    # the integral of a: exact for the symmetric rules, off by 1/(2m) for left/right Riemann
    expected = {"riemann_left": 0.5 - 0.5 / steps, "riemann_right": 0.5 + 0.5 / steps}.get(rule, 0.5)
    assert np.isclose((alphas * weights).sum(), expected)


def test_quadrature_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown rule"):
        quadrature("simpson", 10)


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_graded_trapezoid_is_exact_for_linear_integrands_and_dense_near_the_baseline(steps):
    assert "graded_trapezoid" in RULES
    alphas, weights = quadrature("graded_trapezoid", steps)
    assert len(alphas) == steps + 1
    np.testing.assert_allclose(alphas, (np.arange(steps + 1) / steps) ** 2)
    assert np.isclose(weights.sum(), 1.0) and np.isclose((alphas * weights).sum(), 0.5)
    assert np.all(weights >= 0)
    if steps > 1:
        assert np.all(np.diff(np.diff(alphas)) > 0)  # spacing grows away from the baseline
