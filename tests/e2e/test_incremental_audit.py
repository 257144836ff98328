"""Incremental audits (audit.reuse) end to end: a second audit attributes only new and changed images, reuses the
rest with their files, and still analyses the whole dataset; a changed model or setting attributes everything."""
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from igaudit.pipeline.audit import audit
from igaudit.pipeline.config import from_dict
from tests.conftest import make_tiny_model, tiny_config

START = datetime(2026, 12, 1, tzinfo=timezone.utc)


def audit_once(assets, data: Path, out: Path, day: int, model=None, **sections):
    raw = tiny_config({**assets, "data": data, "model": model or assets["model"]}, out,
                      output={"masks": True, "overlays": True}, **sections)
    summary, _ = audit(from_dict(raw), now=START + timedelta(days=day))
    run = Path(summary.out_dir)
    rows = pq.read_table(run / "images").to_pylist()
    return json.loads((run / "run.json").read_text()), {r["image_id"]: r for r in rows}, run


def fresh(rows: dict) -> set:
    return {image_id for image_id, r in rows.items() if not r["reused_from"]}


@pytest.mark.slow
def test_a_second_audit_attributes_only_what_changed(tiny_assets, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_assets["data"], data)
    out = tmp_path / "audits"
    info1, rows1, run1 = audit_once(tiny_assets, data, out, 0)
    assert info1["counts"]["reused"] == 0 and fresh(rows1) == set(rows1)

    # one new image, one image with one pixel changed; the rest as they were
    good = sorted(Path(r["uri"]) for r in rows1.values() if r["uri"].endswith(".png"))
    shutil.copy(good[0], good[0].parent / "zz_new.png")
    pixels = np.asarray(Image.open(good[1])).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(good[1])
    info2, rows2, run2 = audit_once(tiny_assets, data, out, 1)
    changed = {image_id for image_id, r in rows2.items() if r["uri"] in (str(good[0].parent / "zz_new.png"),
                                                                         str(good[1]))}
    assert fresh(rows2) == changed and len(changed) == 2
    assert info2["counts"]["reused"] == len(rows2) - 2 and info2["reused_from"] == str(run1)
    for image_id in set(rows2) - changed:                 # reused: the reference's numbers, its files copied here
        assert rows2[image_id]["grid"] == rows1[image_id]["grid"]
        assert rows2[image_id]["cluster"] is not None          # clustered again with the whole dataset
        for column in ("mask_path", "overlay_path"):
            assert (run2 / rows2[image_id][column]).read_bytes() == (run1 / rows1[image_id][column]).read_bytes()
    classes = pq.read_table(run2 / "classes.parquet").to_pylist()
    assert sum(r["count"] for r in classes if r["group_by"] == "label") == len(rows2)   # the whole dataset

    # a setting that shapes the rows changed: everything is attributed again, and the console said why
    capsys.readouterr()
    info3, rows3, _ = audit_once(tiny_assets, data, out, 2, attribution={"steps": 6})
    assert info3["counts"]["reused"] == 0 and fresh(rows3) == set(rows3) and info3["reused_from"] is None
    assert "nothing reused from" in capsys.readouterr().err

    # another model (the same architecture, other weights): everything again
    other = make_tiny_model(tmp_path / "other.keras", seed=1)
    info4, rows4, _ = audit_once(tiny_assets, data, out, 3, attribution={"steps": 6}, model=other)
    assert info4["counts"]["reused"] == 0 and fresh(rows4) == set(rows4)

    # nothing changed since: everything reused, nothing attributed
    info5, rows5, _ = audit_once(tiny_assets, data, out, 4, attribution={"steps": 6}, model=other)
    assert fresh(rows5) == set() and info5["counts"]["reused"] == len(rows5)
