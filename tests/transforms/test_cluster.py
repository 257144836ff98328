"""transforms/cluster.py: ClusterStrategies on TestPipeline: a bounded sample per class fits the clusters, every row
is assigned, cluster statistics add up; the sample is the same whatever the order of arrival."""
import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from igaudit.transforms.cluster import ClusterStrategies, assign_row

G = 8


def grid(corner: bool, i: int) -> list:
    """IG-like grids: an object around the middle, cell-wise noise, and for `corner` a tag taking a large share."""
    rng = np.random.default_rng(i)
    y, x = rng.uniform(2.5, 4.5, 2)
    yy, xx = np.mgrid[0:G, 0:G]
    g = 0.05 + np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    if corner:
        g[0, 0] += 8.0
    g = g * rng.gamma(2.0, 0.5, (G, G))
    return (g / g.sum()).ravel().tolist()


def row(i: int, label: str, corner: bool = False) -> dict:
    return {"image_id": f"{label}-{i}", "label": label, "predicted_name": label, "target": 0, "predicted": 0,
            "grid": grid(corner, i), "grid_size": G, "cluster": None, "outlier_score": None,
            "predicted_cluster": None, "predicted_outlier_score": None}


ROWS = ([row(i, "a") for i in range(40)] + [row(100 + i, "a", corner=True) for i in range(10)]
        + [row(200 + i, "b") for i in range(30)])


def run(rows, check_rows, check_summaries, sample=500):
    """Run ClusterStrategies; the checks get all assigned rows and all summaries (asserting inside Beam)."""
    with TestPipeline() as p:
        assigned, summaries = p | beam.Create(rows) | ClusterStrategies(max_clusters=3, sample=sample)
        assert_that(assigned | "RowsToList" >> beam.combiners.ToList(), lambda got: check_rows(got[0]),
                    label="CheckRows")
        assert_that(summaries | "SumToList" >> beam.combiners.ToList(), lambda got: check_summaries(got[0]),
                    label="CheckSummaries")


def check_tagged_rows(rows):
    by_id = {r["image_id"]: r for r in rows}
    assert len(by_id) == len(ROWS)
    tagged = {by_id[f"a-{100 + i}"]["cluster"] for i in range(10)}
    plain = {by_id[f"a-{i}"]["cluster"] for i in range(40)}
    assert len(tagged) == 1 and not tagged & plain and 0 in plain, (tagged, plain)   # 0: the largest
    assert {by_id[f"b-{200 + i}"]["cluster"] for i in range(30)} == {0}
    assert all(r["predicted_cluster"] == r["cluster"] and 0 <= r["outlier_score"] <= 1 for r in rows)


def check_tagged_summaries(summaries):
    sizes = {(s["group_by"], s["class_name"], s["cluster"]): s["size"] for s in summaries}
    for group_by in ("label", "predicted"):
        assert sum(n for (g, c, _), n in sizes.items() if (g, c) == (group_by, "a")) == 50
        assert sizes[(group_by, "b", 0)] == 30 and (group_by, "b", 1) not in sizes
    tagged = next(s for s in summaries if s["size"] == 10 and s["group_by"] == "label")
    assert len(tagged["exemplars"]) == 4 and all(e.startswith("a-1") for e in tagged["exemplars"])
    assert np.isclose(sum(tagged["grid_sum"]), 10.0)


def test_tagged_images_get_their_own_cluster_and_the_statistics_add_up():
    run(ROWS, check_tagged_rows, check_tagged_summaries)


def test_the_bounded_sample_does_not_depend_on_the_order_of_arrival():
    """With a sample of 20 of a's 45 images the fit may differ from the full one, but never with the order."""
    from igaudit.transforms.cluster import _fit, sample_key
    items = [(sample_key(r["image_id"]), r["grid"]) for r in ROWS if r["label"] == "a"]
    chosen = sorted(items)[:20]     # Top.PerKey(reverse=True) keeps the smallest keys
    _, forward = _fit((("label", "a"), chosen), 3, 0)
    _, backward = _fit((("label", "a"), list(reversed(chosen))), 3, 0)
    assert np.array_equal(forward, backward)

    def same_as_expected(rows):
        expected = {r["image_id"]: assign_row(r, {("label", "a"): forward})["cluster"] for r in ROWS
                    if r["label"] == "a"}
        assert {r["image_id"]: r["cluster"] for r in rows if r["label"] == "a"} == expected

    run(list(reversed(ROWS)), same_as_expected, lambda summaries: None, sample=20)


def test_unlabelled_rows_get_only_a_predicted_cluster():
    r = dict(row(1, "a"), label=None)
    out = assign_row(r, {("predicted", "a"): np.asarray([np.sqrt(np.asarray(r["grid"]))])})
    assert out["cluster"] is None and out["predicted_cluster"] == 0 and out["predicted_outlier_score"] < 1e-6
