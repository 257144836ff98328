"""attribution/chunks.py: plans cover every item exactly once in balanced or padded chunks; run and collect loops."""
import numpy as np
import pytest
import tensorflow as tf

from igaudit.transforms.attribution import chunks

CASES = [(total, size) for total in (1, 2, 5, 7, 10, 13, 20, 33) for size in (1, 3, 4, 8, 40)]


def _chunks_of(total, size, balanced):
    """Every chunk's (items, valid) of a plan, as numpy arrays."""
    count, per_chunk = chunks.plan(tf.constant(total), size, balanced)
    out = [chunks.chunk_items(tf.constant(i), tf.constant(total), per_chunk) for i in range(int(count))]
    return [(items.numpy(), valid.numpy()) for items, valid in out]


def test_plan_known_answers():
    """Padded: ceil(total / c) chunks of c; balanced: as many chunks, of ceil(total / chunks)."""
    count, size = chunks.plan(tf.constant(10), 4, balanced=False)
    assert int(count) == 3 and size == 4 and isinstance(size, int)     # a static shape
    count, size = chunks.plan(tf.constant(10), 4, balanced=True)
    assert (int(count), int(size)) == (3, 4)
    count, size = chunks.plan(tf.constant(9), 4, balanced=True)
    assert (int(count), int(size)) == (3, 3)                           # 3 + 3 + 3, no padding
    count, size = chunks.plan(tf.constant(20), 16, balanced=True)
    assert (int(count), int(size)) == (2, 10)                          # not 16 + 16 with 12 padded


@pytest.mark.parametrize("balanced", [False, True])
def test_chunks_cover_every_item_exactly_once(balanced):
    for total, size in CASES:
        parts = _chunks_of(total, size, balanced)
        real = np.concatenate([items[valid] for items, valid in parts])
        np.testing.assert_array_equal(real, np.arange(total), err_msg=f"total {total}, chunk size {size}")


@pytest.mark.parametrize("balanced", [False, True])
def test_padding_repeats_the_last_item_and_is_marked_invalid(balanced):
    for total, size in CASES:
        for items, valid in _chunks_of(total, size, balanced):
            assert items.min() >= 0 and items.max() <= total - 1
            assert valid.any()                                # no chunk is all padding
            assert np.all(items[~valid] == total - 1)
            assert np.all(np.diff(valid.astype(int)) <= 0)    # real items first, padding after


def test_balanced_chunks_are_equal_bounded_and_pad_under_one_item_per_chunk():
    for total, size in CASES:
        padded, balanced = _chunks_of(total, size, False), _chunks_of(total, size, True)
        assert len(balanced) == len(padded) == -(-total // size)
        sizes = {len(items) for items, _ in balanced}
        assert len(sizes) == 1 and sizes.pop() <= size        # one size, never above the chunk size
        assert sum(int((~valid).sum()) for _, valid in balanced) < len(balanced)
        assert all(len(items) == size for items, _ in padded)


def test_run_folds_the_state_over_chunks_in_a_traced_loop():
    """The state after the loop: the sum and count of the real items, and the number of chunks run."""
    traces = []

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)], autograph=False)
    def fold(total):
        traces.append(1)

        def step(i, items, valid, total_sum, count, steps):
            real = tf.where(valid, items, 0)
            return total_sum + tf.reduce_sum(real), count + tf.reduce_sum(tf.cast(valid, tf.int32)), steps + 1
        return chunks.run(total, 3, step, (tf.constant(0), tf.constant(0), tf.constant(0)), balanced=True)

    for total in (1, 4, 11):
        total_sum, count, steps = (int(v) for v in fold(tf.constant(total)))
        assert (total_sum, count, steps) == (total * (total - 1) // 2, total, -(-total // 3))
    assert len(traces) == 1                 # the total is a tensor: one trace for every total


@pytest.mark.parametrize("balanced", [False, True])
def test_collect_concatenates_outputs_in_item_order_without_padding(balanced):
    """Two outputs of different dtypes and shapes, one (total, ...) tensor each."""
    def produce(items, valid):
        return tf.cast(items, tf.float32)[:, None] * tf.constant([[1.0, -1.0]]), tf.cast(valid, tf.int32)

    for total in (1, 6, 7):
        pairs, flags = chunks.collect(tf.constant(total), 4, produce, (tf.float32, tf.int32), balanced=balanced)
        expected = np.stack([np.arange(total), -np.arange(total)], axis=1)
        np.testing.assert_array_equal(pairs.numpy(), expected)
        np.testing.assert_array_equal(flags.numpy(), np.ones(total))    # padded rows are dropped
