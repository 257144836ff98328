"""pipeline/audit.py: audit.keep deletes only old, complete runs igaudit wrote, and only what igaudit wrote in
them; exit codes follow analysis.alert_on; the config declares both options."""
import json

import pytest

from igaudit.pipeline import ownership
from igaudit.pipeline.audit import is_igaudit_run, prune_runs
from igaudit.pipeline.config import ConfigError, from_dict


def make_run(root, name, complete=True, ours=True, extra=None):
    run = root / name
    if ours:
        ownership.claim(str(run))         # igaudit's marker, written first by every run
    (run / "images").mkdir(parents=True, exist_ok=True)
    (run / "images" / "part-0.parquet").write_bytes(b"x")
    (run / "skew.parquet").write_bytes(b"x")
    info = {"status": "ok", "config": {}, "versions": {}, "counts": {}} if ours else {"hello": 1}
    (run / "run.json").write_text(json.dumps(info))
    if complete:
        (run / "_SUCCESS").write_text("")
    if extra:
        (run / extra).write_text("someone else's notes")
    return run


def test_keep_deletes_only_older_complete_igaudit_runs(tmp_path):
    old = make_run(tmp_path, "run=20260101T000000.000Z")
    noted = make_run(tmp_path, "run=20260102T000000.000Z", extra="notes.txt")
    incomplete = make_run(tmp_path, "run=20260103T000000.000Z", complete=False)
    foreign = make_run(tmp_path, "run=20260104T000000.000Z", ours=False)
    other = make_run(tmp_path, "mine", complete=True)
    newest = make_run(tmp_path, "run=20260105T000000.000Z")
    newer_incomplete = make_run(tmp_path, "run=20260106T000000.000Z", complete=False)   # perhaps still running
    deleted = prune_runs(str(tmp_path), keep=1)
    # older complete runs, and igaudit's incomplete run older than the newest complete one
    assert [d.rsplit("/", 1)[-1] for d in deleted] == [old.name, noted.name, incomplete.name]
    assert not old.exists() and not incomplete.exists()
    # a file igaudit did not write stays, and so does its folder; the run no longer looks complete
    assert (noted / "notes.txt").exists() and not (noted / "_SUCCESS").exists() and not (noted / "images").exists()
    for kept in (foreign, other, newest, newer_incomplete):
        assert (kept / "run.json").exists() and (kept / "images" / "part-0.parquet").exists(), kept.name
    assert not is_igaudit_run(str(foreign)) and is_igaudit_run(str(newest))
    assert prune_runs(str(tmp_path), keep=1) == []       # nothing more to do


def test_keep_larger_than_the_runs_deletes_nothing(tmp_path):
    runs = [make_run(tmp_path, f"run=2026010{i}T000000.000Z") for i in range(1, 4)]
    assert prune_runs(str(tmp_path), keep=5) == []
    assert all(r.exists() for r in runs)


def test_config_declares_alert_on_and_keep():
    cfg = from_dict({"input": {"pattern": "x/*/*.png"}})
    assert cfg.analysis.alert_on == "new" and cfg.audit.keep is None
    cfg = from_dict({"input": {"pattern": "x/*/*.png"}, "analysis": {"alert_on": "any"}, "audit": {"keep": 3}})
    assert cfg.analysis.alert_on == "any" and cfg.audit.keep == 3
    with pytest.raises(ConfigError, match="alert_on"):
        from_dict({"input": {"pattern": "x"}, "analysis": {"alert_on": "sometimes"}})
    with pytest.raises(ConfigError, match="keep"):
        from_dict({"input": {"pattern": "x"}, "audit": {"keep": 0}})


def test_an_audit_prints_every_run_keep_removes(tmp_path, monkeypatch, capsys):
    from datetime import datetime, timezone
    from pathlib import Path

    from igaudit.pipeline import audit as audit_module
    old = make_run(tmp_path, "run=20260101T000000.000Z")
    interrupted = make_run(tmp_path, "run=20260102T000000.000Z", complete=False)

    def fake_run_job(cfg, beam_args, detach=False):
        make_run(Path(cfg.output.dir).parent, Path(cfg.output.dir).name)
        return "summary"
    monkeypatch.setattr(audit_module, "run_job", fake_run_job)
    cfg = from_dict({"input": {"pattern": str(tmp_path / "in" / "*" / "*.png")}, "output": {"dir": str(tmp_path)},
                     "audit": {"keep": 1}})
    summary, reference = audit_module.audit(cfg, now=datetime(2026, 1, 3, tzinfo=timezone.utc))
    assert summary == "summary" and reference.endswith(old.name)
    out = capsys.readouterr().out
    assert f"audit.keep=1: removed {old}" in out and f"audit.keep=1: removed {interrupted}" in out
    assert not old.exists() and not interrupted.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("run=")] == ["run=20260103T000000.000Z"]
