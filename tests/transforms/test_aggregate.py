"""transforms/aggregate.py: the per-class CombineFn is order/partition independent and computes the right numbers."""
import math
import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that

from igaudit.transforms.aggregate import TYPICAL_IMAGES, AggregateClasses, ClassStatsFn, class_keys

CLASSES = ["ant", "bee", "cat"]
GRID = 4


def make_rows(n=30, seed=0):
    """images.parquet-like rows (the keys of transforms/write.py:summary_row that aggregation reads)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        unlabelled = i % 7 == 3
        label_index = -1 if unlabelled else int(rng.integers(0, 3))
        predicted = int(rng.integers(0, 3))
        grid = rng.random(GRID * GRID)
        grid /= grid.sum()
        channels = rng.random(3)
        channels /= channels.sum()
        gap = float(rng.normal(scale=0.05))
        rows.append({
            "image_id": f"img{i:03d}",
            "uri": f"data/{'x' if unlabelled else CLASSES[label_index]}/{i}.png",
            "label": None if unlabelled else CLASSES[label_index],
            "label_index": label_index,
            "predicted": predicted,
            "predicted_name": CLASSES[predicted],
            # a few exact ties so the typical-image choice has to break them the same way every time
            "confidence": 0.99 if i % 5 == 0 else float(rng.uniform(0.3, 0.98)),
            "correct": label_index >= 0 and label_index == predicted,
            "completeness_gap": gap,
            "relative_gap": abs(gap) / 0.5,
            "border_mass": float(rng.uniform(0.05, 0.6)),
            "concentration": float(rng.uniform(0.05, 1.0)),
            "entropy": float(rng.uniform(0.0, 1.0)),
            "positive_share": float(rng.uniform(0, 1)),
            "channel_shares": [float(v) for v in channels],
            "grid_size": GRID,
            "grid": [float(v) for v in grid],
            # quality metrics are optional: some rows lack them (None) and must not count
            "deletion_auc": float(rng.uniform(0, 1)) if len(rows) % 3 else None,
            "insertion_auc": float(rng.uniform(0, 1)) if len(rows) % 3 else None,
            "infidelity": float(rng.uniform(0, 0.1)) if len(rows) % 2 else None,
        })
    return rows


ROWS = make_rows()


def expected_stats(rows):
    """The classes row body computed directly with numpy."""
    def col(k):
        return np.array([r[k] for r in rows], np.float64)
    labelled = [r for r in rows if r["label_index"] >= 0]
    predicted = {}
    for r in rows:
        predicted[r["predicted_name"]] = predicted.get(r["predicted_name"], 0) + 1
    typical = sorted(rows, key=lambda r: (-r["confidence"], r["image_id"]))[:TYPICAL_IMAGES]
    return {
        "count": len(rows),
        "accuracy": (sum(bool(r["correct"]) for r in labelled) / len(labelled)) if labelled else float("nan"),
        "mean_confidence": col("confidence").mean(),
        "mean_completeness_gap": col("completeness_gap").mean(),
        "mean_abs_completeness_gap": np.abs(col("completeness_gap")).mean(),
        "mean_relative_gap": col("relative_gap").mean(),
        "mean_border_mass": col("border_mass").mean(),
        "std_border_mass": col("border_mass").std(),
        "mean_concentration": col("concentration").mean(),
        "mean_entropy": col("entropy").mean(),
        "mean_channel_shares": list(np.mean([r["channel_shares"] for r in rows], axis=0)),
        "grid_size": GRID,
        "mean_grid": list(np.mean([r["grid"] for r in rows], axis=0)),
        # each image's top tenth of cells (ties to the first), counted
        "peak_share": list(np.mean([np.isin(np.arange(GRID * GRID), np.argsort(-np.asarray(r["grid"]),
                                                                                kind="stable")[:-(-GRID * GRID // 10)])
                                    for r in rows], axis=0).astype(float)),
        "predicted_counts": sorted(predicted.items()),
        "typical_images": [r["image_id"] for r in typical],
        **{f"mean_{k}": (float(np.mean(present)) if (present := [r[k] for r in rows if r.get(k) is not None])
                         else None) for k in ("deletion_auc", "insertion_auc", "infidelity", "in_box",
                                              "pointing_hit")},
    }


def assert_stats_close(actual, expected):
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        if want is None:
            assert got is None, key
        elif key in ("count", "grid_size", "predicted_counts", "typical_images", "group_by", "class_name"):
            assert got == want, key
        elif isinstance(want, list):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=key)
        elif isinstance(want, float) and math.isnan(want):
            assert math.isnan(got), key
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), key


def one_pass(fn, rows):
    acc = fn.create_accumulator()
    for r in rows:
        acc = fn.add_input(acc, r)
    return acc


# -- numbers --------------------------------------------------------------------------------------------
def test_single_pass_matches_numpy():
    fn = ClassStatsFn()
    assert_stats_close(fn.extract_output(one_pass(fn, ROWS)), expected_stats(ROWS))


@pytest.mark.parametrize("label", CLASSES)
def test_per_class_values_match_numpy(label):
    rows = [r for r in ROWS if r["label"] == label]
    assert rows
    fn = ClassStatsFn()
    out = fn.extract_output(one_pass(fn, rows))
    assert_stats_close(out, expected_stats(rows))
    assert out["accuracy"] == pytest.approx(np.mean([r["label_index"] == r["predicted"] for r in rows]))


def test_hand_computed_small_case():
    rows = make_rows(3, seed=5)
    for r, (b, conf, ok) in zip(rows, [(0.1, 0.5, True), (0.3, 0.7, False), (0.5, 0.6, True)]):
        r.update(border_mass=b, confidence=conf, correct=ok, label_index=0, label="ant",
                 predicted=0 if ok else 1, predicted_name="ant" if ok else "bee")
    fn = ClassStatsFn()
    out = fn.extract_output(one_pass(fn, rows))
    assert out["count"] == 3
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["mean_border_mass"] == pytest.approx(0.3)
    assert out["std_border_mass"] == pytest.approx(math.sqrt(((0.2 ** 2) * 2) / 3))
    assert out["mean_confidence"] == pytest.approx(0.6)
    assert out["predicted_counts"] == [("ant", 2), ("bee", 1)]
    assert out["typical_images"] == [rows[1]["image_id"], rows[2]["image_id"], rows[0]["image_id"]]


def test_constant_border_mass_has_zero_std_not_nan():
    rows = make_rows(10, seed=3)
    for r in rows:
        r["border_mass"] = 0.37
    fn = ClassStatsFn()
    out = fn.extract_output(one_pass(fn, rows))
    assert out["std_border_mass"] == pytest.approx(0.0, abs=1e-7)
    assert not math.isnan(out["std_border_mass"])


def test_unlabelled_rows_do_not_count_towards_accuracy():
    rows = make_rows(6, seed=4)
    for i, r in enumerate(rows):
        r.update(label=None, label_index=-1, correct=False) if i < 4 else r.update(
            label="ant", label_index=0, predicted=0, predicted_name="ant", correct=True)
    fn = ClassStatsFn()
    out = fn.extract_output(one_pass(fn, rows))
    assert out["count"] == 6
    assert out["accuracy"] == 1.0
    only_unlabelled = fn.extract_output(one_pass(fn, rows[:4]))
    assert math.isnan(only_unlabelled["accuracy"])


def test_typical_images_are_the_most_confident_with_id_tie_break():
    rows = make_rows(8, seed=6)
    for r, conf in zip(rows, [0.5, 0.9, 0.9, 0.1, 0.95, 0.9, 0.2, 0.3]):
        r["confidence"] = conf
    rows[1]["image_id"], rows[2]["image_id"], rows[5]["image_id"] = "c", "a", "b"
    fn = ClassStatsFn()
    assert fn.extract_output(one_pass(fn, rows))["typical_images"] == [rows[4]["image_id"], "a", "b", "c"]


def test_empty_accumulator_extracts_without_error():
    fn = ClassStatsFn()
    out = fn.extract_output(fn.create_accumulator())
    assert out["count"] == 0
    assert math.isnan(out["accuracy"])
    assert out["mean_grid"] == [] and out["mean_channel_shares"] == [] and out["typical_images"] == []
    assert fn.extract_output(fn.merge_accumulators([fn.create_accumulator(), fn.create_accumulator()])) \
        ["count"] == 0


# -- mergeability -------------------------------------------------------------------------------------
def random_partition(rows, rng, parts):
    buckets = [[] for _ in range(parts)]
    for r in rows:
        buckets[rng.randrange(parts)].append(r)
    buckets.append([])                 # always at least one empty accumulator
    rng.shuffle(buckets)
    return buckets


@pytest.mark.parametrize("seed", range(8))
def test_merge_in_any_order_and_partition_equals_one_pass(seed):
    rng = random.Random(seed)
    fn = ClassStatsFn()
    rows = ROWS[:]
    rng.shuffle(rows)                  # input order within a bundle does not matter either
    reference = fn.extract_output(one_pass(fn, ROWS))
    buckets = random_partition(rows, rng, rng.randint(2, 9))
    accs = [one_pass(fn, b) for b in buckets]
    if seed % 2:
        # merge in a random tree: merges of merges, as combiner lifting + final merge would
        while len(accs) > 1:
            k = rng.randint(2, len(accs))
            picked = [accs.pop(rng.randrange(len(accs))) for _ in range(k)]
            accs.append(fn.merge_accumulators(picked))
        merged = accs[0]
    else:
        merged = fn.merge_accumulators(accs)
    out = fn.extract_output(merged)
    assert out["typical_images"] == reference["typical_images"]
    assert out["predicted_counts"] == reference["predicted_counts"]
    assert_stats_close(out, reference)


def test_merge_does_not_alias_inputs():
    fn = ClassStatsFn()
    a, b = one_pass(fn, ROWS[:10]), one_pass(fn, ROWS[10:])
    before = fn.extract_output(a)
    merged = fn.merge_accumulators([a, b])
    merged = fn.add_input(merged, ROWS[0])
    fn.merge_accumulators([merged, b])
    assert_stats_close(fn.extract_output(a), before)   # merging/adding later never changes a's sums


def test_add_input_does_not_keep_references_to_rows():
    fn = ClassStatsFn()
    rows = make_rows(2, seed=9)
    acc = one_pass(fn, rows)
    before = fn.extract_output(acc)
    rows[0]["grid"][0] = 1e6
    rows[0]["channel_shares"][0] = 1e6
    assert_stats_close(fn.extract_output(acc), before)


# -- keys and the Beam wiring ---------------------------------------------------------------------------
def test_class_keys():
    labelled = next(r for r in ROWS if r["label"] is not None)
    assert [k for k, _ in class_keys(labelled)] == [("label", labelled["label"]),
                                                    ("predicted", labelled["predicted_name"])]
    unlabelled = next(r for r in ROWS if r["label"] is None)
    assert [k for k, _ in class_keys(unlabelled)] == [("predicted", unlabelled["predicted_name"])]


def expected_class_rows(rows):
    groups = {}
    for r in rows:
        if r["label"] is not None:
            groups.setdefault(("label", r["label"]), []).append(r)
        groups.setdefault(("predicted", r["predicted_name"]), []).append(r)
    return {key: {"group_by": key[0], "class_name": key[1], **expected_stats(members)}
            for key, members in groups.items()}


def matches_class_rows(expected):
    def check(actual):
        try:
            keyed = {(r["group_by"], r["class_name"]): r for r in actual}
            assert len(keyed) == len(actual), "duplicate (group_by, class_name) rows"
            assert set(keyed) == set(expected)
            for key, want in expected.items():
                assert_stats_close(keyed[key], want)
        except AssertionError as e:
            raise BeamAssertException(str(e)) from e
    return check


def test_aggregate_classes_pipeline():
    expected = expected_class_rows(ROWS)
    assert {k[0] for k in expected} == {"label", "predicted"}
    # every image counts once per grouping
    assert sum(v["count"] for k, v in expected.items() if k[0] == "predicted") == len(ROWS)
    assert sum(v["count"] for k, v in expected.items() if k[0] == "label") == \
        sum(r["label"] is not None for r in ROWS)
    with BeamTestPipeline() as p:
        out = p | beam.Create(ROWS, reshuffle=False) | AggregateClasses()
        assert_that(out, matches_class_rows(expected))
