"""pipeline/job.py end to end on the local runner: every output in the contract, counts that reconcile, object
boxes from a manifest."""
import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from igaudit.pipeline.config import ConfigError, from_dict
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.job import run_job
from igaudit.pipeline.run_dir import read_images_table
from tests.conftest import CLASSES, SIZE, tiny_config


@pytest.fixture(scope="module")
def tiny_run(tiny_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    cfg = from_dict(tiny_config(tiny_assets, out, output={"raw": True}))
    summary = run_job(cfg)
    return {"out": out, "summary": summary, "assets": tiny_assets, "cfg": cfg}


@pytest.mark.slow
def test_every_output_in_the_contract_exists(tiny_run):
    out = tiny_run["out"]
    for name in ("classes.parquet", "skew.parquet", "findings.parquet", "rejected.parquet", "report.html", "run.json",
                 "_SUCCESS"):
        assert (out / name).is_file(), name
    assert list((out / "images").glob("*.parquet"))


@pytest.mark.slow
def test_counts_reconcile_and_rows_match_files(tiny_run):
    assets, out = tiny_run["assets"], tiny_run["out"]
    images = read_images_table(str(out)).to_pylist()
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    files = sorted(str(p) for p in assets["data"].glob("*/*"))
    assert len(images) == assets["good"] and len(rejected) == assets["bad"]
    assert sorted([r["uri"] for r in images] + [r["uri"] for r in rejected]) == files
    assert len({r["image_id"] for r in images}) == len(images)
    run = json.loads((out / "run.json").read_text())
    assert run["counts"] == {"matched": len(files), "attributed": len(images), "rejected": len(rejected),
                             "not_converged": sum(r["converged"] is False for r in images), "reused": 0}
    assert run["status"] == "ok"
    assert {r["stage"] for r in rejected} == {"decode"} and all(r["reason"] for r in rejected)
    for r in images:
        assert r["label"] == r["uri"].split("/")[-2]
        assert r["steps"] == 8 and r["rule"] == "trapezoid"
        assert len(r["grid"]) == 16 and np.isclose(sum(r["grid"]), 1.0)
        assert np.isclose(r["completeness_gap"], r["attribution_sum"] - (r["score_input"] - r["score_baseline"]))
        assert r["predicted_name"] in CLASSES and r["target"] == r["predicted"]


@pytest.mark.slow
def test_masks_overlays_raw_are_model_sized(tiny_run):
    out = tiny_run["out"]
    images = read_images_table(str(out)).to_pylist()
    for r in images:
        mask = Image.open(out / "masks" / f"{r['image_id']}.png")
        assert mask.size == (SIZE, SIZE) and mask.mode == "L"
        overlay = Image.open(out / "overlays" / f"{r['image_id']}.png")
        assert overlay.size == (SIZE, SIZE) and overlay.mode == "RGB"
        raw = np.load(out / "raw" / f"{r['image_id']}.npy")
        assert raw.shape == (SIZE, SIZE, 3) and raw.dtype == np.float32
        # the raw array is the attribution the row summarises
        assert np.isclose(raw.sum(dtype=np.float64), r["attribution_sum"], rtol=1e-4, atol=1e-6)
        assert np.asarray(mask).max() > 0


@pytest.mark.slow
def test_per_class_rows(tiny_run):
    out = tiny_run["out"]
    classes = pq.read_table(out / "classes.parquet").to_pylist()
    by_label = {r["class_name"]: r for r in classes if r["group_by"] == "label"}
    assert set(by_label) == set(CLASSES)
    assert all(r["count"] == 4 for r in by_label.values())
    predicted_total = sum(r["count"] for r in classes if r["group_by"] == "predicted")
    assert predicted_total == 12
    for r in by_label.values():
        assert np.isclose(sum(r["mean_grid"]), 1.0) and 0 <= r["accuracy"] <= 1
        assert r["typical_images"]


@pytest.mark.slow
def test_image_ids_are_stable_across_reruns(tiny_run, tmp_path):
    cfg = from_dict(tiny_config(tiny_run["assets"], tmp_path / "again", output={"overlays": False}))
    run_job(cfg)
    first = {r["uri"]: (r["image_id"], r["attribution_sum"]) for r in read_images_table(str(tiny_run["out"])).to_pylist()}
    second = {r["uri"]: (r["image_id"], r["attribution_sum"]) for r in read_images_table(str(tmp_path / "again")).to_pylist()}
    assert first.keys() == second.keys()
    for uri in first:
        assert first[uri][0] == second[uri][0]
        assert np.isclose(first[uri][1], second[uri][1], rtol=1e-5, atol=1e-7)
    assert not (tmp_path / "again" / "overlays").exists()


@pytest.mark.slow
def test_rerun_into_same_dir_replaces_outputs(tiny_assets, tmp_path):
    out = tmp_path / "out"
    run_job(from_dict(tiny_config(tiny_assets, out, output={"raw": True})))
    assert list((out / "raw").glob("*.npy"))
    run_job(from_dict(tiny_config(tiny_assets, out)))
    assert not (out / "raw").exists()       # no stale files from the earlier run
    assert (out / "_SUCCESS").exists()


def test_user_errors_stop_before_any_work(tiny_assets, tmp_path):   # not slow: run_job stops in its checks
    with pytest.raises(UserError, match="folder .* does not exist"):
        run_job(from_dict(tiny_config(tiny_assets, tmp_path / "o", input={"pattern": str(tmp_path / "none/*.png")})))
    with pytest.raises(UserError, match="does not exist|not found"):
        run_job(from_dict(tiny_config(tiny_assets, tmp_path / "o", model={"path": str(tmp_path / "nope.keras")})))
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_render_section_changes_the_pictures(tiny_assets, tmp_path):
    cfg = from_dict({**tiny_config(tiny_assets, tmp_path / "o", output={"raw": True}),
                     "render": {"polarity": "both", "overlay": "outlines"}})
    run_job(cfg)
    row = read_images_table(str(tmp_path / "o")).to_pylist()[0]
    overlay = np.asarray(Image.open(tmp_path / "o" / row["overlay_path"]))
    mask = np.asarray(Image.open(tmp_path / "o" / row["mask_path"]))
    assert overlay.shape == (SIZE, SIZE, 3) and mask.shape == (SIZE, SIZE)
    signed = np.load(tmp_path / "o" / "raw" / f"{row['image_id']}.npy").sum(axis=-1)
    strong = 0.2 * np.percentile(np.abs(signed), 99)   # signed mask: zero at mid-grey, each sign on its side
    assert np.all(mask[signed > strong] > 128) and np.all(mask[signed < -strong] < 128)
    assert (signed > strong).any()
    with pytest.raises(ConfigError, match="render.colour"):
        from_dict({**tiny_config(tiny_assets, tmp_path / "x"), "render": {"colour": "red"}})
    with pytest.raises(ConfigError, match="render"):
        from_dict({**tiny_config(tiny_assets, tmp_path / "x"), "render": {"overlay": "sparkles"}})


@pytest.mark.slow
def test_the_default_step_policy_refines_each_image_and_says_whether_it_converged(tiny_assets, tmp_path):
    raw = tiny_config(tiny_assets, tmp_path / "out", output={"masks": False, "overlays": False})
    del raw["attribution"]["steps"], raw["attribution"]["rule"]       # the defaults: steps auto, rule adaptive
    cfg = from_dict(raw)
    assert (cfg.attribution.steps, cfg.attribution.rule) == ("auto", "adaptive")
    summary = run_job(cfg)
    rows = read_images_table(str(tmp_path / "out")).to_pylist()
    assert rows and all(r["rule"] == "adaptive" for r in rows)
    short = sum(r["converged"] is False for r in rows)
    assert summary.not_converged == short == json.loads((tmp_path / "out" / "run.json").read_text())[
        "counts"]["not_converged"]
    assert (summary.convergence is not None) == (short > 0)
    assert not any("max_steps" in w for w in summary.warnings)     # said, not a warning
    for r in rows:
        assert 8 <= r["steps"] <= cfg.attribution.max_steps and r["gradient_samples"] == r["steps"] + 1
        # short only when max_steps stopped it: what the policy controls (the per-pixel estimate)
        assert isinstance(r["converged"], bool) and (r["converged"] or r["steps"] == cfg.attribution.max_steps)
        assert r["gap_of_abs"] == pytest.approx(abs(r["completeness_gap"]) / r["abs_attribution_sum"])
    assert any(r["steps"] > 8 for r in rows)        # refined beyond the 8-interval start grid


@pytest.mark.slow
def test_images_that_end_above_their_tolerance_are_counted_and_named(tiny_assets, tmp_path):
    raw = tiny_config(tiny_assets, tmp_path / "out", output={"masks": False, "overlays": False})
    raw["attribution"].update(steps="auto", rule="adaptive", max_steps=8, tolerance=1e-6, pixel_tolerance=1e-6)
    summary = run_job(from_dict(raw))
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary.not_converged == info["counts"]["not_converged"] == summary.attributed > 0
    sentence = f"{summary.attributed} of {summary.attributed} images stopped at attribution.max_steps"
    assert info["convergence"].startswith(sentence) and summary.convergence == info["convergence"]
    assert sentence in (tmp_path / "out" / "report.html").read_text()
    assert info["status"] == "ok"                  # a short image is reported, not a failed run


@pytest.mark.slow
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
    cat = next(r for r in skew if r["class_name"] == "cat" and r["group_by"] == "label")
    # a candidate, tested on the background around its boxes; images carry their boxes for that test
    assert cat["candidate"] and cat["region"] == "the background around the object box"
    assert cat["sample"] == 4 and cat["evidence"] and cat["needed"] is not None
    assert not cat["flagged"]       # the tiny model is untrained: it has no shortcut to find
    assert all(r["bbox"] is not None and len(r["bbox"]) == 4 for r in images)


@pytest.mark.slow
def test_a_local_run_loads_traces_and_warms_the_model_once(tiny_assets, tmp_path, monkeypatch):
    """The launcher's check and the in-process worker share one load (transforms/attribution/models.py),
    and the worker's Explainer traces and warms up once."""
    from igaudit.transforms.attribution import explainer, models
    monkeypatch.setattr(models, "_LOADED", {})
    loads, warm_ups = [], []
    real_load, real_warm_up = models._load, explainer.Explainer.warm_up
    monkeypatch.setattr(models, "_load", lambda spec: loads.append(spec) or real_load(spec))
    monkeypatch.setattr(explainer.Explainer, "warm_up", lambda self: warm_ups.append(self) or real_warm_up(self))
    summary = run_job(from_dict(tiny_config(tiny_assets, tmp_path / "out", attribution={"batch_size": 2})))
    assert summary.attributed == 12
    assert len(loads) == 1 and len(warm_ups) == 1
    assert warm_ups[0].engine.trace_counts == {"forward": 1, "gradients": 1}
