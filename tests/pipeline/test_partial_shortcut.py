"""A shortcut carried by part of a class (SpRAy's case): a tag on 35% of one class's images, in one of two corners,
on images whose object is faint. The class-level metrics dilute it; the strategy clusters isolate the tagged
images, and the interventions flag their cluster. Precision and recall of the flagged cluster against the
tagged images are printed (pytest -s) and checked."""
import json
import os

import pytest

from benchmarks.skew import partial_scores
from benchmarks.skew_data import write_dataset
from igaudit.pipeline.config import from_dict
from igaudit.pipeline.demo import train_model
from igaudit.pipeline.job import run_job
from igaudit.pipeline.run_dir import read_images_table, read_table


@pytest.mark.slow
def test_the_flagged_cluster_holds_the_tagged_images(tmp_path):
    planted = write_dataset(tmp_path, "partial_tag", seed=0, per_class=150)
    train_model(tmp_path, tmp_path / "model.keras", epochs=15, seed=0)
    out = tmp_path / "out"
    run_job(from_dict({
        "input": {"pattern": str(tmp_path / "audit" / "*" / "*.png")},
        "model": {"path": str(tmp_path / "model.keras"), "input_size": [64, 64]},
        "attribution": {"steps": 16, "rule": "gauss_legendre", "batch_size": 16},
        "output": {"dir": str(out), "masks": False, "overlays": False}}))
    skew = read_table(str(out / "skew.parquet")).to_pylist()
    images = read_images_table(str(out), columns=["uri", "label", "cluster"]).to_pylist()
    flags = [r for r in skew if r["flagged"]]
    scores = partial_scores(flags, images, planted)
    print(f"\npartial shortcut: {scores['tagged']} tagged images, {scores['cluster_images']} in the flagged "
          f"clusters {scores['flagged_clusters']}: precision {scores['precision']:.2f}, recall {scores['recall']:.2f}")
    assert scores["flagged_clusters"], json.dumps([r["detail"] for r in skew if r["candidate"]], indent=1)
    assert scores["precision"] >= 0.8 and scores["recall"] >= 0.6
    cluster_flags = [r for r in flags if r["cluster"] is not None and r["group_by"] == "label"]
    assert all(r["class_name"] == planted["class"] and r["evidence"] == "needed, sufficient, stamped"
               for r in cluster_flags)
    # nothing else in this data is a shortcut
    assert {r["class_name"] for r in flags} == {planted["class"]}
    assert all(os.path.isabs(u) for u in planted["images"])
