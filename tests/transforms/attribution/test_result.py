"""attribution/result.py: make_result's completeness gap, defaults and per-image counts; Head, MethodResult, Batch."""
import dataclasses

import numpy as np
import pytest

from igaudit.transforms.attribution.result import Batch, Head, MethodResult, make_result


def _head(n=2):
    outputs = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return Head(outputs=outputs, predicted=np.full(n, 2), confidence=np.full(n, 0.6), targets=np.array([2, 0])[:n])


def _attributions():
    """Two images whose attributions sum to 1.5 and -0.25."""
    a = np.zeros((2, 2, 2, 1), np.float32)
    a[0, 0, 0, 0], a[0, 1, 1, 0] = 1.0, 0.5
    a[1, 0, 1, 0] = -0.25
    return a


def test_gap_is_attribution_sum_minus_score_difference():
    r = make_result("integrated_gradients", _attributions(), _head(), score_input=np.array([2.0, 1.0]),
                    score_baseline=np.array([0.25, 1.5]))
    np.testing.assert_allclose(r.completeness_gap, [1.5 - 1.75, -0.25 - (-0.5)])
    assert r.completeness_gap.dtype == np.float64
    assert r.score_input.dtype == r.score_baseline.dtype == np.float64


def test_gap_input_replaces_score_input_in_the_gap_only():
    """smoothgrad: the gap is measured against the mean F over the noisy inputs."""
    r = make_result("gradients", _attributions(), _head(), score_input=np.array([2.0, 1.0]),
                    score_baseline=np.zeros(2), gap_input=np.array([1.5, -0.25]))
    np.testing.assert_array_equal(r.completeness_gap, [0.0, 0.0])
    np.testing.assert_array_equal(r.score_input, [2.0, 1.0])


def test_no_baseline_or_no_identity_gives_nan():
    without_baseline = make_result("gradients", _attributions(), _head(), score_input=np.ones(2))
    assert np.isnan(without_baseline.score_baseline).all() and np.isnan(without_baseline.completeness_gap).all()
    no_gap = make_result("occlusion", _attributions(), _head(), score_input=np.ones(2), score_baseline=np.zeros(2),
                         gap=False)
    assert np.isnan(no_gap.completeness_gap).all()
    np.testing.assert_array_equal(no_gap.score_baseline, [0.0, 0.0])


def test_the_gap_sums_float32_attributions_in_float64():
    """A million float32 values of 0.1 sum to 100000 within float64 rounding (a float32 sum is off by ~0.008)."""
    a = np.full((1, 1000, 1000, 1), 0.1, np.float32)
    head = _head(1)
    r = make_result("integrated_gradients", a, head, score_input=np.array([0.0]), score_baseline=np.array([0.0]))
    assert abs(r.completeness_gap[0] - 1e6 * float(np.float32(0.1))) < 1e-6


def test_counts_broadcast_to_one_int64_per_image_and_are_writable():
    r = make_result("expected_gradients", _attributions(), _head(), score_input=np.zeros(2),
                    gradient_samples=5, forward_passes=np.array([1, 3]))
    np.testing.assert_array_equal(r.gradient_samples, [5, 5])
    np.testing.assert_array_equal(r.forward_passes, [1, 3])
    assert r.gradient_samples.dtype == r.forward_passes.dtype == np.int64
    r.gradient_samples[0] = 7                          # a copy, not a read-only broadcast view
    assert r.gradient_samples.tolist() == [7, 5]
    defaults = make_result("gradients", _attributions(), _head(), score_input=np.zeros(2))
    assert defaults.gradient_samples.tolist() == [0, 0] and defaults.forward_passes.tolist() == [0, 0]


def test_head_fields_are_carried_and_extras_land_in_their_fields():
    head = _head()
    r = make_result("integrated_gradients", _attributions(), head, score_input=np.zeros(2),
                    steps=np.array([8, 16]), converged=np.array([True, False]))
    assert r.method == "integrated_gradients"
    assert r.outputs is head.outputs and r.predicted is head.predicted and r.targets is head.targets
    assert r.confidence is head.confidence
    assert r.steps.tolist() == [8, 16] and r.converged.tolist() == [True, False]
    assert make_result("gradients", _attributions(), head, score_input=np.zeros(2)).steps is None
    with pytest.raises(TypeError):
        make_result("gradients", _attributions(), head, score_input=np.zeros(2), not_a_field=1)


def test_method_result_is_frozen_and_compared_by_identity():
    r = make_result("gradients", _attributions(), _head(), score_input=np.zeros(2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.method = "other"
    twin = dataclasses.replace(r)
    assert isinstance(twin, MethodResult) and twin != r    # eq=False: arrays are never compared


def test_batch_references_default_to_none():
    images = np.zeros((1, 2, 2, 3), np.float32)
    batch = Batch(images=images, baselines=images[None], targets=np.array([-1]), image_ids=["a"])
    assert batch.references is None
    assert batch._fields == ("images", "baselines", "targets", "image_ids", "references")
