"""analysis/skew/clusters.py: strategy clusters found when they exist, one cluster when they don't, and cluster
candidates where a cluster's evidence sits apart (no Beam)."""
import numpy as np
import pytest

from igaudit.transforms.analysis.skew.clusters import (assign, cluster_rows, cluster_table, embed, fit_clusters,
                                                       silhouette, silhouettes)

G = 8


def object_grid(rng, corner=None):
    """IG-like: mass on an object somewhere around the middle (a blob at a continuous position), a little
    everywhere, cell-wise noise; `corner`: a tag's cell that takes a large share."""
    y, x = rng.uniform(2.5, 4.5, 2)
    yy, xx = np.mgrid[0:G, 0:G]
    g = 0.05 + np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    if corner is not None:
        g[corner] += 8.0
    g = g * rng.gamma(2.0, 0.5, (G, G))
    return (g / g.sum()).ravel()


def tagged_grid(rng, corner):
    return object_grid(rng, corner)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_blob_is_one_cluster(seed):
    """An object moving around the frame spreads the grids continuously: k-means would split it with a fair
    silhouette, but nothing stands out beyond groupless data of that spread."""
    rng = np.random.default_rng(seed)
    grids = [object_grid(rng) for _ in range(60)]
    assert fit_clusters(grids, max_clusters=4).shape == (1, G * G)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_tagged_group_gets_a_cluster_of_its_own(seed):
    rng = np.random.default_rng(seed)
    plain = [object_grid(rng) for _ in range(50)]
    tagged = [tagged_grid(rng, (0, 0)) for _ in range(14)]
    grids = plain + tagged
    centres = fit_clusters(grids, max_clusters=4)
    labels = np.array([assign(g, centres)[0] for g in grids])
    group = np.bincount(labels[50:]).argmax()            # the cluster holding most tagged images
    members = labels == group
    assert group != 0 and np.bincount(labels).argmax() == 0     # numbered by size
    precision, recall = members[50:].sum() / members.sum(), members[50:].mean()
    assert precision >= 0.9 and recall >= 0.85, (precision, recall)
    # the outlier score is a Hellinger distance in [0, 1]
    assert all(0 <= assign(g, centres)[1] <= 1 for g in grids)
    assert silhouette(embed(grids), labels) > 0.1


def test_too_few_images_stay_one_cluster():
    rng = np.random.default_rng(2)
    grids = [object_grid(rng) for _ in range(5)] + [tagged_grid(rng, (0, 0)) for _ in range(3)]
    assert len(fit_clusters(grids)) == 1


def test_same_sample_same_centres():
    rng = np.random.default_rng(3)
    grids = [object_grid(rng) for _ in range(30)] + [tagged_grid(rng, (0, 0)) for _ in range(15)]
    assert np.array_equal(fit_clusters(grids), fit_clusters(list(grids)))


def summary(name, cluster, grids, group_by="label"):
    return {"group_by": group_by, "class_name": name, "cluster": cluster, "size": len(grids),
            "outlier_sum": 0.1 * len(grids), "grid_sum": np.sum(grids, axis=0).tolist(), "grid_size": G,
            "exemplars": [f"{name}-{cluster}-{i}" for i in range(6)]}


def class_row(name, grids):
    return {"group_by": "label", "class_name": name, "count": len(grids), "grid_size": G,
            "mean_grid": np.mean(grids, axis=0).tolist()}


def test_a_cluster_whose_evidence_sits_apart_is_a_candidate_with_its_region():
    rng = np.random.default_rng(4)
    plain = [object_grid(rng) for _ in range(30)]
    tagged = [tagged_grid(rng, (0, 0)) for _ in range(15)]
    others = {n: [object_grid(rng) for _ in range(45)] for n in ("b", "c")}
    classes = [class_row("a", plain + tagged)] + [class_row(n, g) for n, g in others.items()]
    summaries = [summary("a", 0, plain), summary("a", 1, tagged)] + [summary(n, 0, g) for n, g in others.items()]
    table = cluster_table(summaries, classes)
    a1 = next(r for r in table if r["class_name"] == "a" and r["cluster"] == 1)
    assert a1["size"] == 15 and a1["share"] == pytest.approx(15 / 45) and len(a1["exemplars"]) == 4
    assert a1["mean_outlier_score"] == pytest.approx(0.1) and "top-left" in a1["region"]
    rows = cluster_rows(table, classes)
    assert {(r["class_name"], r["cluster"]) for r in rows} == {("a", 0), ("a", 1)}   # one-cluster classes: none
    tagged_row = next(r for r in rows if r["cluster"] == 1)
    plain_row = next(r for r in rows if r["cluster"] == 0)
    assert tagged_row["candidate"] and not tagged_row["flagged"]     # the interventions decide
    assert tagged_row["region_cells"] == [0, 1, 0, 1]
    assert not plain_row["candidate"], plain_row   # its mass sits where the dataset looks too


def test_silhouettes_by_hand():
    """Points 0, 1 | 10, 11 | 30 on a line: a = mean distance within the own cluster, b = to the nearest
    other cluster, s = (b - a) / max(a, b); a point alone in its cluster scores 0."""
    x = np.array([[0.0], [1.0], [10.0], [11.0], [30.0]])
    s = silhouettes(x, np.array([5, 5, 2, 2, 9]))
    expected = [(10.5 - 1) / 10.5, (9.5 - 1) / 9.5, (9.5 - 1) / 9.5, (10.5 - 1) / 10.5, 0.0]
    np.testing.assert_allclose(s, expected, rtol=1e-12)
    np.testing.assert_array_equal(silhouettes(x, np.zeros(5, int)), np.zeros(5))
