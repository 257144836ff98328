"""Object boxes from the manifest: mapped through the resize, in-box share and pointing game, in_box skew."""
import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import from_dict
from pipeline.job import read_images_table, run_job
from tests.conftest import tiny_config
from transforms.decode import box_to_model
from transforms.read import parse_bbox
from transforms.summarize import box_stats


@pytest.mark.parametrize("resize, expected", [
    ("stretch", (8.0, 8.0, 16.0, 24.0)),        # x halved, y kept
    ("pad", (8.0, 12.0, 16.0, 20.0)),           # scale 0.5, then centred vertically: +8 on y
    ("crop", (0.0, 8.0, 16.0, 24.0)),           # scale 1, the centre 32 columns (16..48) kept
])
def test_box_follows_the_resize(resize, expected):
    # a 64 x 32 (w x h) image with a box x 16..32, y 8..24, into a 32 x 32 model input
    assert box_to_model((16, 8, 32, 24), (64, 32), (32, 32), resize) == pytest.approx(expected)


def test_box_stats_share_and_pointing_game():
    a = np.zeros((10, 10, 3))
    a[2, 3, 0] = 3.0      # the peak, inside the box
    a[8, 8, 1] = -1.0     # outside
    share, hit = box_stats(a, (2, 1, 5, 4))
    assert share == pytest.approx(0.75) and hit == 1.0
    share, hit = box_stats(a, (6, 6, 10, 10))
    assert share == pytest.approx(0.25) and hit == 0.0


def test_parse_bbox():
    assert parse_bbox("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    assert parse_bbox([0, 0, 5, 5]) == (0.0, 0.0, 5.0, 5.0)
    assert parse_bbox("") is None
    for bad in ("1,2,3", "3,2,1,4", "a,b,c,d"):
        with pytest.raises(ValueError, match="bbox"):
            parse_bbox(bad)


def test_manifest_boxes_reach_rows_classes_and_skew(tiny_assets, tmp_path):
    rows = []
    for p in sorted(tiny_assets["data"].glob("*/img*")):
        w, h = Image.open(p).size
        # the class-coloured square of the conftest images, and a wrong box for 'cat'
        box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4) if p.parent.name != "cat" else (0, 0, 3, 3)
        rows.append({"uri": str(p), "label": p.parent.name, "bbox": ",".join(map(str, box))})
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["uri", "label", "bbox"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    run_job(from_dict(tiny_config(tiny_assets, out, input={"pattern": None, "manifest": str(manifest)})))
    images = read_images_table(str(out)).to_pylist()
    assert all(0.0 <= r["in_box"] <= 1.0 and r["pointing_hit"] in (0.0, 1.0) for r in images)
    classes = {c["class_name"]: c for c in pq.read_table(out / "classes.parquet").to_pylist()
               if c["group_by"] == "label"}
    assert classes["cat"]["mean_in_box"] < classes["ant"]["mean_in_box"]
    skew = [r for r in pq.read_table(out / "skew.parquet").to_pylist() if r["metric"] == "in_box"]
    assert {r["class_name"] for r in skew if r["group_by"] == "label"} == {"ant", "bee", "cat"}
    assert next(r for r in skew if r["class_name"] == "cat" and r["group_by"] == "label")["flagged"]
