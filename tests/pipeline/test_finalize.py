"""pipeline/finalize.py: run.json's fixed part (base_info), and finish_run / Finalize reading what a job wrote: counts
one per image, status, finding lists, alerts, exit code, secrets redacted, and _SUCCESS only for an ok run, last."""
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from igaudit.pipeline import finalize, report
from igaudit.pipeline.config import from_dict
from igaudit.pipeline.preflight import Plan
from igaudit.pipeline.run_dir import FINDINGS_TABLE, REJECTED_TABLE, REPORT, SUCCESS, MissingTable, RunDir
from igaudit.transforms.attribution.targets import TargetSpec
from igaudit.transforms.imaging.decode import DecodeSpec
from igaudit.transforms.records import REJECTED_SCHEMA, findings_schema, images_schema

CLASSES = ["ant", "bee", "cat"]
FAKE_VERSIONS = {"python": "3.x"}     # finalize.versions imports TensorFlow: not what these tests are about
REAL_REPORT = report.write_report


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """No TensorFlow import, and a one-line report (the real one draws figures: one test keeps it)."""
    monkeypatch.setattr(finalize, "versions", lambda: FAKE_VERSIONS)
    monkeypatch.setattr(report, "write_report", lambda out, info, images: (Path(out) / REPORT).write_text(
        f"{info['status']} {images.num_rows} rows"))


def image(image_id, label_index, predicted, converged=True):
    row = dict.fromkeys(images_schema().names)
    row.update(image_id=image_id, uri=f"/nowhere/{CLASSES[label_index]}/{image_id}.png", label=CLASSES[label_index],
               label_index=label_index, predicted=predicted, predicted_name=CLASSES[predicted],
               correct=label_index == predicted, confidence=0.6, relative_gap=0.01, converged=converged)
    return row


def finding(name, outcome, status, flagged=None):
    row = dict.fromkeys(findings_schema().names)
    row.update(finding=f"{name}/region/r1-2c1-2", class_name=name, kind="region", region="the top-left 2x2 cells",
               outcome=outcome, flagged=outcome == "shortcut" if flagged is None else flagged, status=status,
               evidence=f"{outcome} evidence", groupings=["label"], rows=1)
    return row


# three images, one with two targets (top_k) of which one stopped short; one rejected input
IMAGES = [image("a", 0, 0), image("b", 1, 0, converged=False), image("c", 2, 2), image("c", 2, 2, converged=False)]
FINDINGS = [finding("ant", "shortcut", "new"), finding("bee", "shortcut", "standing"), finding("cat", "review", None),
            finding("dog", "cleared", "resolved"), finding("eel", "shortcut", "not audited")]


def write_run(out, images=IMAGES, rejected=1, findings=FINDINGS):
    """A run folder as the sinks leave it: one images part, rejected.parquet and findings.parquet."""
    (out / "images").mkdir(parents=True)
    part = out / "images" / "part-00000.parquet"
    pq.write_table(pa.Table.from_pylist(images, schema=images_schema()), part)
    bad = [{"uri": f"/nowhere/x{i}.png", "image_id": f"x{i}", "stage": "decode", "reason": "empty"}
           for i in range(rejected)]
    pq.write_table(pa.Table.from_pylist(bad, schema=REJECTED_SCHEMA), out / REJECTED_TABLE)
    if findings is not None:
        pq.write_table(pa.Table.from_pylist(findings, schema=findings_schema()), out / FINDINGS_TABLE)
    return [str(part)]


def plan(class_names, decode):
    """A plan as preflight.check leaves it, with only what run.json takes from it set."""
    return Plan([], None, list(class_names), decode.size + (decode.channels,), TargetSpec("predicted"), None, None,
                None, [], decode)


def base_for(out, beam_args=(), **analysis):
    cfg = from_dict({"input": {"pattern": "/nowhere/*/*.png"}, "output": {"dir": str(out)},
                     "attribution": {"steps": 8, "rule": "trapezoid"}, "analysis": analysis,
                     "beam": {"temp_location": "/tmp/t", "api_token": "hunter2"}})
    return finalize.base_info(cfg, plan(CLASSES, DecodeSpec((24, 24), "crop", 1000, 3)), list(beam_args),
                              started=time.time() - 2.0)


def test_base_info_is_what_the_graph_knows_at_submit_time():
    cfg = from_dict({"input": {"pattern": "d/*/*"}, "analysis": {"reference": "out/old", "alert_on": "any",
                                                                 "max_rejected_share": 0.25}})
    xy = plan(("x", "y"), DecodeSpec((32, 16), "stretch", 500, 1))
    before = time.time()
    base = finalize.base_info(cfg, xy, ("--runner", "DirectRunner"), launcher_succeeds=True)
    assert before <= base["started"] <= time.time()
    expected = {"config": cfg.to_dict(), "class_names": ["x", "y"], "beam_args": ["--runner", "DirectRunner"],
                "decode": {"size": [32, 16], "resize": "stretch", "max_pixels": 500, "channels": 1},
                "reference": "out/old", "max_rejected_share": 0.25, "alert_on": "any", "launcher_succeeds": True}
    assert {k: base[k] for k in expected} == expected
    assert finalize.base_info(cfg, xy, started=12.5)["started"] == 12.5


def test_a_finding_entry_keeps_what_run_json_lists():
    entry = finalize.finding_entry({**finding("ant", "shortcut", "new"), "detail": "long", "drop": 0.4})
    assert entry == {"finding": "ant/region/r1-2c1-2", "class_name": "ant", "kind": "region",
                     "region": "the top-left 2x2 cells", "outcome": "shortcut", "status": "new",
                     "evidence": "shortcut evidence"}
    assert finalize.finding_entry({"finding": "x/drift"})["status"] is None


def test_success_holds_the_creation_time_and_run_json_any_value(tmp_path):
    finalize.write_success(str(tmp_path), {"created": "2026-03-01T12:00:00+00:00"})
    assert (tmp_path / SUCCESS).read_text() == "2026-03-01T12:00:00+00:00\n"
    when = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    finalize.write_run_json(str(tmp_path), {"status": "ok", "when": when})    # what JSON lacks is written as text
    assert RunDir(str(tmp_path)).info() == {"status": "ok", "when": "2026-03-01 12:00:00+00:00"}


def test_an_ok_run_counts_each_image_once_and_ends_with_success(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "write_report", REAL_REPORT)
    files = write_run(tmp_path)
    info = finalize.finish_run(str(tmp_path), base_for(tmp_path), 4, files)
    assert (info["status"], info["reason"], info["exit_code"]) == ("ok", None, 3)      # a new shortcut alerts
    counted = {"matched": 4, "attributed": 3, "rejected": 1, "not_converged": 2}
    assert {k: info["counts"][k] for k in counted} == counted
    assert info["accuracy"] == pytest.approx(2 / 3)
    assert info["convergence"].startswith("2 of 3 images stopped at attribution.max_steps")
    assert info["timings"]["total_seconds"] >= 2.0
    assert info["versions"] == FAKE_VERSIONS and info["decode"]["resize"] == "crop"
    run = RunDir(str(tmp_path))
    assert run.info() == json.loads(json.dumps(info)) and run.complete and run.has(REPORT)
    assert (tmp_path / SUCCESS).read_text() == info["created"] + "\n"
    page = (tmp_path / REPORT).read_text()
    assert page.startswith("<!doctype html>") and "ant/region/r1-2c1-2" in page


def test_success_is_written_last(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(finalize, "write_success", lambda out, info: seen.append(sorted(os.listdir(out))))
    finalize.finish_run(str(tmp_path), base_for(tmp_path), 4, write_run(tmp_path))
    assert seen == [sorted(["images", REJECTED_TABLE, FINDINGS_TABLE, REPORT, "run.json"])]
    assert (tmp_path / REPORT).read_text() == "ok 4 rows"      # the report is given the table read here


def test_the_findings_are_listed_by_what_they_mean(tmp_path):
    info = finalize.finish_run(str(tmp_path), base_for(tmp_path), 4, write_run(tmp_path))
    assert [f["class_name"] for f in info["flagged"]] == ["ant", "bee"]         # not the one left unaudited
    assert [f["class_name"] for f in info["review"]] == ["cat"]
    assert [f["class_name"] for f in info["resolved"]] == ["dog"]
    assert [f["class_name"] for f in info["not_audited"]] == ["eel"]
    assert [f["class_name"] for f in info["alerts"]] == ["ant"]                # alert_on new
    assert info["change"] == "no reference run: 1 new finding"
    assert set(info["flagged"][0]) == set(finalize.finding_entry({}))


def test_alert_on_any_alerts_on_standing_findings_too(tmp_path):
    info = finalize.finish_run(str(tmp_path), base_for(tmp_path, alert_on="any"), 4, write_run(tmp_path))
    assert [f["class_name"] for f in info["alerts"]] == ["ant", "bee"]


def test_a_clean_run_exits_0(tmp_path):
    files = write_run(tmp_path, images=[image("a", 0, 0), image("b", 1, 1), image("c", 2, 2)], rejected=0,
                      findings=[finding("cat", "cleared", None)])
    info = finalize.finish_run(str(tmp_path), base_for(tmp_path), 3, files)
    assert (info["status"], info["exit_code"], info["alerts"], info["convergence"]) == ("ok", 0, [], None)
    assert info["counts"]["not_converged"] == 0 and info["suspect"] == [] and info["warnings"] == []


def test_counts_that_do_not_reconcile_fail_without_success(tmp_path):
    info = finalize.finish_run(str(tmp_path), base_for(tmp_path), 6, write_run(tmp_path))
    assert info["status"] == "failed" and info["exit_code"] == 1
    assert info["reason"] == "counts do not reconcile: matched 6 != attributed 3 + rejected 1"
    run = RunDir(str(tmp_path))
    assert not run.complete and run.info()["status"] == "failed" and run.has(REPORT)


def test_too_many_rejected_fails(tmp_path):
    info = finalize.finish_run(str(tmp_path), base_for(tmp_path, max_rejected_share=0.3), 5,
                               write_run(tmp_path, rejected=2))
    assert info["status"] == "failed" and "more than analysis.max_rejected_share (30%)" in info["reason"]
    assert not (tmp_path / SUCCESS).exists()


def test_a_launcher_that_waits_writes_success_itself(tmp_path):
    base = {**base_for(tmp_path), "launcher_succeeds": True}
    info = finalize.finish_run(str(tmp_path), base, 4, write_run(tmp_path))
    assert info["status"] == "ok" and RunDir(str(tmp_path)).info()["status"] == "ok"
    assert not (tmp_path / SUCCESS).exists()


def test_only_the_parts_this_job_wrote_are_counted(tmp_path):
    files = write_run(tmp_path)
    pq.write_table(pa.Table.from_pylist([image("old", 0, 1)], schema=images_schema()),
                   tmp_path / "images" / "part-stale.parquet")
    assert finalize.finish_run(str(tmp_path), base_for(tmp_path), 4, files)["counts"]["attributed"] == 3


def test_secrets_are_redacted_in_run_json(tmp_path):
    base = base_for(tmp_path, beam_args=["--aws_secret_access_key", "AKIA123", "--region=eu"])
    finalize.finish_run(str(tmp_path), base, 4, write_run(tmp_path))
    text = (tmp_path / "run.json").read_text()
    assert "hunter2" not in text and "AKIA123" not in text
    info = json.loads(text)
    assert info["beam_args"] == ["--aws_secret_access_key", "***", "--region=eu"]
    assert info["config"]["beam"] == {"temp_location": "/tmp/t", "api_token": "***"}


def test_a_run_without_findings_table_is_refused(tmp_path):
    files = write_run(tmp_path, findings=None)
    with pytest.raises(MissingTable, match="findings.parquet"):
        finalize.finish_run(str(tmp_path), base_for(tmp_path), 4, files)
    assert not (tmp_path / SUCCESS).exists() and not (tmp_path / "run.json").exists()


def test_finalize_runs_once_after_the_sinks_with_their_files(tmp_path):
    files = write_run(tmp_path)
    base = base_for(tmp_path)
    with BeamTestPipeline() as p:
        matched = p | "Matched" >> beam.Create([4])
        images_sink = p | "ImagesSink" >> beam.Create(files)
        other_sink = p | "OtherSink" >> beam.Create([str(tmp_path / REJECTED_TABLE)])
        out = p | finalize.Finalize(str(tmp_path), base, matched, [images_sink, other_sink])

        def one_ok_run(infos):
            assert len(infos) == 1 and infos[0]["status"] == "ok" and infos[0]["counts"]["attributed"] == 3
        assert_that(out, one_ok_run)
    assert RunDir(str(tmp_path)).complete
