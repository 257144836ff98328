"""The product's promise on the demo: the planted shortcut is found and backed by interventions, a clean model is
not flagged, audits compare against the previous run, an unchanged audit does not alert again, two worker
processes give the same verdicts as one, and `igaudit compare` agrees with the audit."""
import re

import pyarrow.parquet as pq
import pytest
import yaml

from igaudit.pipeline.audit import EXIT_FLAGGED, EXIT_OK, compare_runs, completed_runs
from igaudit.pipeline.cli import main
from igaudit.pipeline.config import load_config
from igaudit.pipeline.demo import make_dataset, train_model
from igaudit.pipeline.job import run_job
from igaudit.transforms.analysis.skew_rows import DATASET_METRICS

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
    """Three audits of the same images: with the clean model, then the shortcut model, then the shortcut
    model again (nothing changed)."""
    work = tmp_path_factory.mktemp("audits")
    pattern = demo_assets["root"] / "with" / "audit" / "*" / "*.png"
    codes = []
    for model in ("clean", "shortcut", "shortcut"):
        cfg = write_config(work / f"{model}.yaml", pattern, demo_assets[model], work / "audit-root")
        codes.append(main(["audit", "--config", str(cfg)]))
    runs = completed_runs(str(work / "audit-root"))
    return {"codes": codes, "runs": runs, "work": work, "pattern": pattern}


@pytest.mark.slow
def test_shortcut_class_is_flagged_and_named_first(audits):
    from pathlib import Path
    shortcut_run = Path(audits["runs"][1])
    rows = skew_of(shortcut_run)
    assert "triangle" in flagged_classes(rows)
    triangle = {r["metric"]: r for r in rows if r["class_name"] == "triangle" and r["group_by"] == "label"
                and r["cluster"] is None}
    flag = triangle["grid_js"] if triangle["grid_js"]["flagged"] else triangle["border_z"]
    assert flag["flagged"] and flag["evidence"] == "needed, sufficient, stamped"
    # the evidence: the corner is what the class stands on, the patch repeats, other classes lack it
    assert flag["region_cells"][0] == 0 and flag["region_cells"][2] == 0 and "top-left" in flag["region"]
    assert flag["drop"] > 0.3 and flag["drop"] > 3 * max(flag["control_drop"], 0.02)
    assert flag["kept_class"] - flag["kept_other"] > 0.3 and flag["stamp_repeat"] > 0.7 > flag["stamp_others"]
    assert "masking the top-left" in flag["detail"] and "→" in flag["detail"]
    verdicts = [r for r in rows if r["metric"] in DATASET_METRICS]    # drift rows compare with the clean model
    assert flagged_classes(verdicts) == {"triangle"}     # nothing else: the other shapes are objects
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
    assert not any(r["flagged"] for r in rows)


@pytest.mark.slow
def test_second_audit_compares_with_the_first_and_exit_codes_follow_flags(audits):
    from pathlib import Path
    first, second, _ = (Path(r) for r in audits["runs"])
    assert len(audits["runs"]) == 3
    assert audits["codes"][1] == EXIT_FLAGGED      # new flags
    assert {r["status"] for r in skew_of(second) if r["flagged"]} == {"new"}
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
    first, second, _ = audits["runs"]
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


@pytest.mark.slow
def test_an_unchanged_audit_does_not_alert_again(audits):
    from pathlib import Path
    second, third = (Path(r) for r in audits["runs"][1:])
    assert audits["codes"][2] == EXIT_OK              # alert_on: new (the default), and nothing is new
    rows = skew_of(third)
    flags = [r for r in rows if r["flagged"]]
    assert flags and {r["status"] for r in flags} == {"standing"}
    assert all(r["metric"] in DATASET_METRICS for r in flags)      # nothing drifted since the second run
    # the second run's verdicts stand; its drift flags (against the clean model) are not carried over
    assert {(r["group_by"], r["class_name"], r["metric"], r["cluster"]) for r in flags} == \
        {(r["group_by"], r["class_name"], r["metric"], r["cluster"]) for r in skew_of(second)
         if r["flagged"] and r["metric"] in DATASET_METRICS}
    assert not any(r["status"] in ("new", "resolved") for r in rows)
    html = (third / "report.html").read_text()
    lead = re.search(r"<p class=lead>([^<]*)</p>", html).group(1)
    assert lead.startswith(f"no change since {second.name}") and "standing" in lead
    run = __import__("json").loads((third / "run.json").read_text())
    assert run["change"] == lead and run["alerts"] == [] and run["flagged"]
    # alert_on: any alerts on the standing flags too
    assert main(["compare", str(third), str(second)]) == EXIT_OK


@pytest.mark.slow
def test_two_worker_processes_give_the_same_verdicts(audits, demo_assets, tmp_path):
    """The interventions at Beam scale: candidates as a side input, bounded samples re-read and re-scored on
    two SDK worker processes, the same verdicts and figures as the in-process run."""
    from pathlib import Path
    cfg = write_config(tmp_path / "two.yaml", audits["pattern"], demo_assets["shortcut"], tmp_path / "two")
    run_job(load_config(str(cfg)), ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    key = lambda r: (r["group_by"], r["class_name"], r["metric"], r["cluster"] if r["cluster"] is not None else -1)  # noqa: E731
    within = lambda rows: sorted((r for r in rows if r["metric"] in DATASET_METRICS), key=key)  # noqa: E731
    one, two = within(skew_of(Path(audits["runs"][1]))), within(skew_of(tmp_path / "two"))
    assert [key(r) for r in one] == [key(r) for r in two]
    for a, b in zip(one, two):
        for column in ("candidate", "flagged", "needed", "sufficient", "stamped", "region_cells", "sample",
                       "other_sample"):
            assert a[column] == b[column], (key(a), column)
        for column in ("drop", "control_drop", "kept_class", "kept_other", "stamp_repeat"):
            assert a[column] == pytest.approx(b[column], abs=1e-4), (key(a), column)
    assert any(r["flagged"] for r in two)
