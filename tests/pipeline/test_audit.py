"""The product's promise on the demo: the planted shortcut is found, a clean model is not flagged,
audits compare against the previous run, and `igaudit compare` agrees with the audit."""
import re

import pyarrow.parquet as pq
import pytest
import yaml

from igaudit.pipeline.audit import EXIT_FLAGGED, compare_runs, completed_runs
from igaudit.pipeline.cli import main
from igaudit.pipeline.demo import make_dataset, train_model

PER_CLASS = 120   # train images per class; the audit split gets half


@pytest.fixture(scope="module")
def demo_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_dataset(root / "with", n_per_class=PER_CLASS, seed=0, shortcut_class="triangle")
    make_dataset(root / "without", n_per_class=PER_CLASS, seed=0, shortcut_class=None)
    shortcut = train_model(root / "with", root / "shortcut" / "model.keras", epochs=15)
    train_model(root / "without", root / "clean" / "model.keras", epochs=15)
    assert shortcut["shortcut_flip_rate"] > 0.5      # the shortcut model really uses the patch
    return {"root": root, "shortcut": root / "shortcut" / "model.keras", "clean": root / "clean" / "model.keras"}


def write_config(path, data_pattern, model, out_dir, **analysis):
    path.write_text(yaml.safe_dump({
        "input": {"pattern": str(data_pattern)},
        "model": {"path": str(model), "input_size": [64, 64]},
        "attribution": {"steps": 16, "rule": "gauss_legendre", "batch_size": 16},
        "output": {"dir": str(out_dir), "masks": False},
        "analysis": analysis,
    }))
    return path


def skew_of(out_dir):
    return pq.read_table(out_dir / "skew.parquet").to_pylist()


def flagged_classes(rows, group_by="label"):
    return {r["class_name"] for r in rows if r["flagged"] and r["group_by"] == group_by}


@pytest.fixture(scope="module")
def audits(demo_assets, tmp_path_factory):
    """Two audits of the same images: first with the clean model, then with the shortcut model."""
    work = tmp_path_factory.mktemp("audits")
    pattern = demo_assets["root"] / "with" / "audit" / "*" / "*.png"
    codes = []
    for model in ("clean", "shortcut"):
        cfg = write_config(work / f"{model}.yaml", pattern, demo_assets[model], work / "audit-root")
        codes.append(main(["audit", "--config", str(cfg)]))
    runs = completed_runs(str(work / "audit-root"))
    return {"codes": codes, "runs": runs, "work": work}


@pytest.mark.slow
def test_shortcut_class_is_flagged_and_named_first(audits):
    from pathlib import Path
    shortcut_run = Path(audits["runs"][1])
    rows = skew_of(shortcut_run)
    assert "triangle" in flagged_classes(rows)
    triangle = {r["metric"]: r for r in rows if r["class_name"] == "triangle" and r["group_by"] == "label"}
    assert triangle["grid_js"]["flagged"] or triangle["border_z"]["flagged"]
    html = (shortcut_run / "report.html").read_text()
    first_class = re.search(r"<div class=class><h3>([^<]+?) <span", html).group(1)
    assert first_class == "triangle"
    assert "top-left" in html


@pytest.mark.slow
def test_clean_model_does_not_flag_the_shortcut_class(audits):
    from pathlib import Path
    rows = skew_of(Path(audits["runs"][0]))
    dataset_metrics = [r for r in rows if not r["metric"].startswith("ref_") and r["class_name"] == "triangle"]
    assert dataset_metrics and not any(r["flagged"] for r in dataset_metrics)


@pytest.mark.slow
def test_second_audit_compares_with_the_first_and_exit_codes_follow_flags(audits):
    from pathlib import Path
    first, second = (Path(r) for r in audits["runs"])
    assert len(audits["runs"]) == 2
    assert audits["codes"][1] == EXIT_FLAGGED
    first_flags = any(r["flagged"] for r in skew_of(first))
    assert audits["codes"][0] == (EXIT_FLAGGED if first_flags else 0)
    rows = skew_of(second)
    ref_rows = [r for r in rows if r["metric"].startswith("ref_")]
    assert ref_rows, "second run has no reference comparison"
    assert any(r["reference"] is not None for r in ref_rows)
    # the model change moved the triangle class's evidence into the corner
    assert any(r["flagged"] for r in ref_rows if r["class_name"] == "triangle" and r["metric"] == "ref_grid_js")
    assert not any(r["metric"].startswith("ref_") for r in skew_of(first))


@pytest.mark.slow
def test_compare_gives_the_audits_own_rows(audits, tmp_path):
    first, second = audits["runs"]
    rows = compare_runs(second, first)
    ref_metrics = lambda rs: sorted((r["group_by"], r["class_name"], r["metric"], r["flagged"],  # noqa: E731
                                     round(r["value"] or 0, 9)) for r in rs)
    assert ref_metrics(rows) == ref_metrics(skew_of(__import__("pathlib").Path(second)))
    out = tmp_path / "cmp.parquet"
    assert main(["compare", second, first, "--output", str(out)]) == EXIT_FLAGGED
    assert pq.read_table(out).num_rows == len(rows)


@pytest.mark.slow
def test_run_without_reference_has_no_reference_rows_and_clean_data_clean_model_passes(demo_assets, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", demo_assets["root"] / "without" / "audit" / "*" / "*.png",
                       demo_assets["clean"], tmp_path / "root")
    assert main(["audit", "--config", str(cfg)]) == 0
