"""analysis/clusters.py and cluster_rows.py: strategy clusters found when they exist, one cluster when they don't,
and cluster candidates where a cluster's evidence sits apart (no Beam)."""
import numpy as np
import pytest

from igaudit.transforms.analysis.cluster_rows import cluster_skew_rows, cluster_table
from igaudit.transforms.analysis.clusters import assign, embed, fit_clusters, silhouette

G = 8


def object_grid(rng):
    """Mass on an object somewhere around the middle (a blob at a continuous position), plus a little everywhere."""
    y, x = rng.uniform(2.5, 4.5, 2)
    yy, xx = np.mgrid[0:G, 0:G]
    g = 0.02 + np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * rng.uniform(0.8, 1.5) ** 2))
    return (g / g.sum()).ravel()


def tagged_grid(rng, corner):
    g = object_grid(rng).reshape(G, G)
    r, c = corner
    g[r, c] += 0.5
    return (g / g.sum()).ravel()


def test_one_blob_is_one_cluster():
    rng = np.random.default_rng(0)
    grids = [object_grid(rng) for _ in range(60)]
    assert fit_clusters(grids, max_clusters=4).shape == (1, G * G)


def test_planted_groups_are_found_and_numbered_by_size():
    rng = np.random.default_rng(1)
    plain = [object_grid(rng) for _ in range(40)]
    top_left = [tagged_grid(rng, (0, 0)) for _ in range(20)]
    bottom_right = [tagged_grid(rng, (G - 1, G - 1)) for _ in range(12)]
    grids = plain + top_left + bottom_right
    centres = fit_clusters(grids, max_clusters=4)
    assert len(centres) == 3
    labels = [assign(g, centres)[0] for g in grids]
    assert set(labels[:40]) == {0} and set(labels[40:60]) == {1} and set(labels[60:]) == {2}
    # the outlier score is a Hellinger distance: 0 for the centre itself, in [0, 1]
    _, d = assign(top_left[0], centres)
    assert 0 <= d <= 1
    assert silhouette(embed(grids), np.array(labels)) > 0.25


def test_too_few_images_stay_one_cluster():
    rng = np.random.default_rng(2)
    grids = [object_grid(rng) for _ in range(3)] + [tagged_grid(rng, (0, 0)) for _ in range(3)]
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
    rows = cluster_skew_rows(table, classes)
    assert {(r["class_name"], r["cluster"]) for r in rows} == {("a", 0), ("a", 1)}   # one-cluster classes: none
    tagged_row = next(r for r in rows if r["cluster"] == 1)
    plain_row = next(r for r in rows if r["cluster"] == 0)
    assert tagged_row["candidate"] and not tagged_row["flagged"]     # the interventions decide
    assert tagged_row["region_cells"] == [0, 1, 0, 1]
    assert not plain_row["candidate"], plain_row   # its mass sits where the dataset looks too
