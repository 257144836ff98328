"""transforms/analysis/arraymath.py: the fast helpers give numpy's numbers bit for bit."""
import numpy as np
import pytest

from igaudit.transforms.analysis.arraymath import channel_sum, percentile


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 4096, 4097, 50176])
def test_percentile_equals_numpy(dtype, n):
    rng = np.random.default_rng(n)
    for trial in range(6):
        values = (rng.standard_normal(n) ** 2 * rng.uniform(0.001, 100)).astype(dtype)
        if trial % 3 == 0:
            values[: n // 2] = 0          # ties, and a run of zeros like a sparse attribution
        for q in (0, 0.5, 1, 5, 25, 37.3, 50, 90, 95, 99, 99.5, 99.9, 100):
            expected, got = np.percentile(values, q), percentile(values, q)
            assert got == expected, (dtype, n, q)
            assert np.asarray(got).dtype == np.asarray(expected).dtype


def test_percentile_of_a_map_uses_every_element():
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert percentile(values, 50) == np.percentile(values, 50) == 5.5
    assert percentile(values, 100) == 11 and percentile(values, 0) == 0


def test_percentile_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        percentile(np.zeros(0), 50)


@pytest.mark.parametrize("shape", [(64, 64, 3), (5, 7, 1), (4, 4, 4), (3, 2, 8), (6, 6, 9), (10, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_sum_equals_numpy(shape, dtype):
    values = np.random.default_rng(0).normal(size=shape).astype(dtype)
    got = channel_sum(values)
    np.testing.assert_array_equal(got, values.sum(axis=-1))
    assert got.dtype == values.sum(axis=-1).dtype and got.shape == shape[:-1]


def test_channel_sum_leaves_input_alone():
    values = np.ones((4, 4, 3), np.float32)
    channel_sum(values)
    assert (values == 1).all()
