"""pipeline/report.py: the report's size is bounded by its exemplars, not by the run's number of images.

The run folder is synthetic (Parquet tables, inputs and overlays written here), so the test measures the
report alone: 400 and 4,000 images of the same four classes give reports of about the same size."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from igaudit.pipeline.config import from_dict
from igaudit.pipeline.report import render_report
from igaudit.transforms.records import (REJECTED_SCHEMA, classes_schema, clusters_schema, images_schema,
                                        skew_schema)

CLASSES = ("circle", "cross", "square", "triangle")
SIZE, GRID = 64, 8


def synthetic_run(root, n: int, seed: int = 0, names=CLASSES, size: int = SIZE) -> dict:
    """A run folder with n images (inputs 5:4, so `resize: pad` pads them), overlays and the tables."""
    rng = np.random.default_rng(seed)
    k = len(names)
    for folder in ("inputs", "overlays", "images"):
        (root / folder).mkdir(parents=True)
    rows = []
    for i in range(n):
        label = names[i % k]
        predicted = label if rng.random() < 0.8 else names[rng.integers(k)]
        image_id = f"img{i:05d}"
        Image.fromarray(rng.integers(0, 255, (size, size * 5 // 4, 3), dtype=np.uint8)).save(
            root / "inputs" / f"{image_id}.png")
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "overlays" / f"{image_id}.png")
        grid = rng.random(GRID * GRID)
        rows.append({"image_id": image_id, "uri": str(root / "inputs" / f"{image_id}.png"), "label": label,
                     "label_index": names.index(label), "predicted": names.index(predicted),
                     "predicted_name": predicted, "confidence": float(rng.uniform(0.3, 1.0)),
                     "correct": predicted == label, "relative_gap": float(rng.normal(0, 0.01)), "grid_size": GRID,
                     "grid": list(grid / grid.sum()), "overlay_path": f"overlays/{image_id}.png", "cluster": i % 2,
                     "outlier_score": float(rng.random()), "predicted_cluster": 0,
                     "predicted_outlier_score": float(rng.random())})
    schema = images_schema()
    pq.write_table(pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema),
                   root / "images" / "part-00000.parquet")
    classes, clusters = [], []
    for group_by, key in (("label", "label"), ("predicted", "predicted_name")):
        for name in names:
            members = [r for r in rows if r[key] == name]
            if not members:
                continue
            counts = {c: sum(1 for r in members if r["predicted_name"] == c) for c in names}
            mean = np.mean([r["grid"] for r in members], axis=0)
            classes.append({"group_by": group_by, "class_name": name, "count": len(members),
                            "accuracy": float(np.mean([r["correct"] for r in members])),
                            "mean_confidence": float(np.mean([r["confidence"] for r in members])),
                            "grid_size": GRID, "mean_grid": list(mean), "predicted_counts": list(counts.items()),
                            "typical_images": [r["image_id"] for r in members[:4]]})
            for k in (0, 1):
                part = [r for r in members if r["cluster"] == k]
                clusters.append({"group_by": group_by, "class_name": name, "cluster": k, "size": len(part),
                                 "share": len(part) / len(members), "grid_size": GRID, "mean_grid": list(mean),
                                 "region": "the centre", "exemplars": [r["image_id"] for r in part[:5]]})
    for name, table, schema in (("classes", classes, classes_schema()), ("clusters", clusters, clusters_schema()),
                                ("skew", [], skew_schema()), ("rejected", [], REJECTED_SCHEMA)):
        pq.write_table(pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in table], schema),
                       root / f"{name}.parquet")
    cfg = from_dict({"input": {"pattern": str(root / "inputs" / "*.png")}, "model": {"input_size": [size, size]},
                     "output": {"dir": str(root)}}).to_dict()
    return {"status": "ok", "reason": None, "warnings": [], "accuracy": 0.8, "config": cfg,
            "class_names": list(names), "beam_args": [], "versions": {}, "reference": None,
            "change": "no reference run: no flags", "counts": {"matched": n, "attributed": n, "rejected": 0},
            "timings": {"total_seconds": 1.0}}


@pytest.mark.slow
def test_report_size_does_not_grow_with_the_number_of_images(tmp_path):
    sizes = {}
    for n in (400, 4000):
        root = tmp_path / f"run{n}"
        html = render_report(str(root), synthetic_run(root, n))
        sizes[n] = len(html.encode("utf-8"))
        assert 'data-label="square" data-predicted="circle"' in html
        assert "padding 20% (hatched)" in html          # 80 x 64 inputs in a 64 x 64 frame: pad bars
        assert 'id="label-square-c1"' in html and "cluster 1: " in html    # each cluster with its exemplars
    print(f"report bytes: 400 images {sizes[400]}, 4000 images {sizes[4000]}")
    assert sizes[4000] < 1.1 * sizes[400]
    assert sizes[4000] < 5_000_000


@pytest.mark.slow
def test_many_classes_of_big_noisy_images_stay_a_few_mb(tmp_path):
    """The worst case for compression: 100 classes of 224 x 224 noise. The picture budget shrinks every picture
    alike, the confusion table becomes a list, and the report stays under 5 MB."""
    names = tuple(f"class{i:03d}" for i in range(100))
    html = render_report(str(tmp_path), synthetic_run(tmp_path, 600, names=names, size=224))
    size = len(html.encode("utf-8"))
    print(f"report bytes: 600 images of 100 classes at 224 px: {size}")
    assert size < 5_000_000
    assert "too many for a matrix" in html and 'class=confusion-pairs' in html
    assert html.count('<section class=class-section') == 2 * 24     # pictures for the 24 most skewed per grouping


def test_every_link_in_the_report_leads_somewhere(tmp_path):
    """In-page links (#...) all have their target; a finding of a class absent from this run (not audited)
    names its class without a link to a section that does not exist."""
    import re

    from igaudit.transforms.records import findings_schema
    info = synthetic_run(tmp_path, 40)
    rows = [{"finding": "hexagon/region/r1-2c1-2", "class_name": "hexagon", "group_by": "label", "kind": "region",
             "outcome": "shortcut", "flagged": True, "status": "not audited", "evidence": "no 'hexagon' image"},
            {"finding": "circle/region/r1-2c1-2", "class_name": "circle", "group_by": "label", "kind": "region",
             "outcome": "shortcut", "flagged": True, "status": "new", "evidence": "needed"}]
    pq.write_table(pa.Table.from_pylist([{f.name: r.get(f.name) for f in findings_schema()} for r in rows],
                                        findings_schema()), tmp_path / "findings.parquet")
    html = render_report(str(tmp_path), info)
    targets = set(re.findall(r'href="#([^"]+)"', html))
    ids = set(re.findall(r'id="?([^" >]+)', html))
    assert "label-circle" in targets and not targets - ids, targets - ids
    assert "hexagon" in html and "label-hexagon" not in targets
