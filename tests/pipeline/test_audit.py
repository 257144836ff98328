"""The product's promise on the demo: the planted shortcut is one finding backed by interventions, a clean model
has none, audits compare against the previous run's findings, an unchanged audit does not alert again, a finding is
resolved only by a re-test that no longer finds it and is "not audited" when its class is absent, two worker
processes give the same findings as one, and `igaudit compare` agrees with the audit."""
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from igaudit.pipeline.audit import compare_runs, completed_runs
from igaudit.pipeline.exit_codes import ALERT as EXIT_FLAGGED, OK as EXIT_OK
from igaudit.pipeline.cli import main
from igaudit.pipeline.config import load_config
from igaudit.pipeline.demo import make_dataset, train_model
from igaudit.pipeline.job import run_job

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


def write_config(path, data_pattern, model, out_dir, class_names=None, **analysis):
    model_section = {"path": str(model), "input_size": [64, 64]}
    if class_names:
        model_section["class_names"] = str(class_names)
    path.write_text(yaml.safe_dump({
        "input": {"pattern": str(data_pattern)},
        "model": model_section,
        "attribution": {"steps": 16, "rule": "gauss_legendre", "batch_size": 16},
        "output": {"dir": str(out_dir), "masks": False},
        "analysis": analysis,
    }))
    return path


def skew_of(out_dir):
    return pq.read_table(Path(out_dir) / "skew.parquet").to_pylist()


def findings_of(out_dir):
    return pq.read_table(Path(out_dir) / "findings.parquet").to_pylist()


def shortcuts(findings):
    return [f for f in findings if f["outcome"] == "shortcut" and f.get("status") != "not audited"]


@pytest.fixture(scope="module")
def audits(demo_assets, tmp_path_factory):
    """Audits of the same images: with the clean model, then the shortcut model, then the shortcut model again
    (nothing changed), then the clean model again (the shortcut is gone); and one of the shortcut model on the
    data without its triangles, against the second run."""
    work = tmp_path_factory.mktemp("audits")
    pattern = demo_assets["root"] / "with" / "audit" / "*" / "*.png"
    codes = []
    for model in ("clean", "shortcut", "shortcut", "clean"):
        cfg = write_config(work / f"{model}.yaml", pattern, demo_assets[model], work / "audit-root")
        codes.append(main(["audit", "--config", str(cfg)]))
    runs = completed_runs(str(work / "audit-root"))
    no_triangles = demo_assets["root"] / "with" / "audit" / "[cs]*" / "*.png"      # circle, cross, square
    names = work / "classes.txt"                    # the model's four outputs; the data has three of them
    names.write_text("\n".join(sorted(p.name for p in (demo_assets["root"] / "with" / "audit").iterdir())) + "\n")
    cfg = write_config(work / "absent.yaml", no_triangles, demo_assets["shortcut"], work / "absent",
                       class_names=names, reference=runs[1])
    absent = main(["run", "--config", str(cfg)])
    return {"codes": codes, "runs": runs, "work": work, "pattern": pattern, "absent": (absent, work / "absent")}


@pytest.mark.slow
def test_the_shortcut_is_one_finding_with_its_evidence_and_named_first(audits):
    shortcut_run = Path(audits["runs"][1])
    found = shortcuts(findings_of(shortcut_run))
    assert [f["class_name"] for f in found] == ["triangle"]            # the other shapes are objects
    f = found[0]
    # several metrics and both groupings saw it: one finding, its rows beneath it
    assert f["rows"] >= 2 and set(f["groupings"]) == {"label", "predicted"} and len(f["metrics"]) >= 2
    rows = [r for r in skew_of(shortcut_run) if r["finding"] == f["finding"]]
    assert len(rows) == f["rows"] and all(r["outcome"] == "shortcut" for r in rows if r["group_by"] == "label")
    # the evidence: the corner is what the class stands on, the patch repeats, other classes lack it
    assert f["kind"] == "region" and f["region_cells"][0] == 0 and f["region_cells"][2] == 0
    assert "top-left" in f["region"] and f["finding"].startswith("triangle/region/r1-")
    assert f["repeating"] and f["needed"] and f["transplanted"]
    assert f["drop"] > 0.3 and f["drop"] > 3 * max(f["control_drop"], 0.02)
    assert f["stamp_repeat"] > 0.7 > f["stamp_others"] and f["transplant_flip"] > 0.5 > f["transplant_control"]
    assert "masking the top-left" in f["detail"] and "→" in f["detail"]
    html = (shortcut_run / "report.html").read_text()
    first_class = re.search(r"<div class=class><h3>([^<]+?) <span", html).group(1)
    assert first_class == "triangle"
    assert f["finding"] in html and "top-left" in html


@pytest.mark.slow
def test_clean_model_has_no_shortcut(audits):
    assert not any(f["flagged"] for f in findings_of(audits["runs"][0]))    # no reference: no drift either
    assert audits["codes"][0] == EXIT_OK


@pytest.mark.slow
def test_second_audit_compares_with_the_first_and_exit_codes_follow_findings(audits):
    first, second = (Path(r) for r in audits["runs"][:2])
    assert len(audits["runs"]) == 4
    assert audits["codes"][1] == EXIT_FLAGGED      # a new shortcut
    assert {f["status"] for f in findings_of(second) if f["flagged"]} == {"new"}
    ref_rows = [r for r in skew_of(second) if r["metric"].startswith("ref_")]
    assert ref_rows and any(r["reference"] is not None for r in ref_rows)
    # the model change moved the triangle class's evidence into the corner: one drift finding for the class
    drift = [f for f in findings_of(second) if f["kind"] == "drift"]
    assert "triangle/drift" in {f["finding"] for f in drift} and all(f["flagged"] for f in drift)
    assert "ref_grid_js" in next(f for f in drift if f["class_name"] == "triangle")["metrics"]
    assert not any(r["metric"].startswith("ref_") for r in skew_of(first))
    run = json.loads((second / "run.json").read_text())
    assert {a["finding"] for a in run["alerts"]} == {f["finding"] for f in findings_of(second) if f["flagged"]}


@pytest.mark.slow
def test_compare_gives_the_audits_own_findings(audits, tmp_path):
    first, second = audits["runs"][:2]
    found = compare_runs(second, first)
    key = lambda fs: sorted((f["finding"], f["outcome"], f["flagged"], f["status"]) for f in fs)  # noqa: E731
    assert key(found) == key(findings_of(second))
    out = tmp_path / "cmp.parquet"
    assert main(["compare", second, first, "--output", str(out)]) == EXIT_FLAGGED
    assert pq.read_table(out).num_rows == len(found)


@pytest.mark.slow
def test_run_without_reference_clean_data_clean_model_passes(demo_assets, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", demo_assets["root"] / "without" / "audit" / "*" / "*.png",
                       demo_assets["clean"], tmp_path / "root")
    assert main(["audit", "--config", str(cfg)]) == 0


@pytest.mark.slow
def test_an_unchanged_audit_does_not_alert_again(audits):
    second, third = (Path(r) for r in audits["runs"][1:3])
    assert audits["codes"][2] == EXIT_OK              # alert_on: new (the default), and nothing is new
    now = [f for f in findings_of(third) if f["flagged"]]
    assert now and {f["status"] for f in now} == {"standing"} and all(f["kind"] != "drift" for f in now)
    # the same findings, by the same ids
    assert {f["finding"] for f in now} == {f["finding"] for f in shortcuts(findings_of(second))}
    assert not any(f["status"] in ("new", "resolved", "not audited") for f in findings_of(third))
    html = (third / "report.html").read_text()
    lead = re.search(r"<p class=lead>([^<]*)</p>", html).group(1)
    assert lead.startswith(f"no change since {second.name}") and "standing" in lead
    run = json.loads((third / "run.json").read_text())
    assert run["change"] == lead and run["alerts"] == [] and run["flagged"]
    assert main(["compare", str(third), str(second)]) == EXIT_OK


@pytest.mark.slow
def test_a_finding_is_resolved_only_by_a_re_test_that_no_longer_finds_it(audits):
    """The clean model on the same images: the standing shortcut's region is tested again (a re-test row, even if
    no metric proposes it now) and no longer passes: resolved, with the figures that say so."""
    third, fourth = (Path(r) for r in audits["runs"][2:4])
    before = {f["finding"] for f in shortcuts(findings_of(third))}
    resolved = [f for f in findings_of(fourth) if f["status"] == "resolved"]
    assert {f["finding"] for f in resolved} == before
    for f in resolved:
        assert f["outcome"] in ("cleared", "review") and f["drop"] is not None and not f["flagged"]
        assert any(r["metric"] == "retest_region" and r["finding"] == f["finding"] for r in skew_of(fourth))
    alerts = json.loads((fourth / "run.json").read_text())["alerts"]
    assert not any(a["finding"] in before for a in alerts)       # a resolved finding is no alert (drift may be)


@pytest.mark.slow
def test_a_finding_whose_class_is_absent_is_not_audited_not_resolved(audits):
    code, out = audits["absent"]
    found = findings_of(out)
    assert [f["status"] for f in found if f["class_name"] == "triangle" and f["kind"] == "region"] == ["not audited"]
    assert "no 'triangle' image in this run" in next(f["evidence"] for f in found if f["status"] == "not audited")
    assert not any(f["status"] == "resolved" for f in found)
    run = json.loads((out / "run.json").read_text())
    assert run["not_audited"] and not run["resolved"]


@pytest.mark.slow
def test_two_worker_processes_give_the_same_findings(audits, demo_assets, tmp_path):
    """The interventions at Beam scale: candidates as a side input, bounded samples re-read and re-scored on
    two SDK worker processes, the same findings and figures as the in-process run."""
    cfg = write_config(tmp_path / "two.yaml", audits["pattern"], demo_assets["shortcut"], tmp_path / "two")
    run_job(load_config(str(cfg)), ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    one = {f["finding"]: f for f in findings_of(audits["runs"][1]) if f["kind"] != "drift"}
    two = {f["finding"]: f for f in findings_of(tmp_path / "two")}
    assert sorted(one) == sorted(two)
    for key, a in one.items():
        b = two[key]
        for column in ("outcome", "needed", "sufficient", "transplanted", "repeating", "region_cells", "sample",
                       "attending", "class_count"):
            assert a[column] == b[column], (key, column)
        for column in ("drop", "control_drop", "kept_class", "kept_other", "stamp_repeat", "transplant_flip"):
            assert a[column] == pytest.approx(b[column], abs=1e-4), (key, column)
    assert any(f["flagged"] for f in two.values())
