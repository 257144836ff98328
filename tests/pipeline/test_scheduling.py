"""Unattended audits: `igaudit wait` on finished, failed, running and missing runs; analysis.notify's command
and webhook (a local HTTP server), failures that never change the exit code; an empty input is suspect.

Runs are made by hand here (a marker, run.json, _SUCCESS: what a job leaves), but for one real suspect run
(the untrained tiny model) with its notifications; the real detached job that `wait` follows is
tests/pipeline/test_detach.py."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from igaudit.pipeline import notify
from igaudit.pipeline.cli import main
from igaudit.pipeline.config import NotifyConfig
from igaudit.pipeline.run_dir import MARKER
from igaudit.pipeline.wait import run_to_wait_on, wait_for


def make_run(folder: Path, *, status: str = "ok", alerts=(), suspect=(), success: bool = True) -> Path:
    (folder / MARKER).parent.mkdir(parents=True)
    (folder / MARKER).write_text("{}")
    info = {"status": status, "reason": None if status == "ok" else "no image was attributed",
            "alerts": list(alerts), "suspect": list(suspect), "fail_on_suspect": True, "change": "no change",
            "class_names": ["a", "b"], "flagged": list(alerts), "review": [], "resolved": [], "not_audited": [],
            "accuracy": 0.9, "warnings": [], "counts": {"matched": 10, "attributed": 10, "rejected": 0},
            "timings": {"total_seconds": 12.5, "pipeline_seconds": 10.0}}
    (folder / "run.json").write_text(json.dumps(info))
    if success and status == "ok":
        (folder / "_SUCCESS").write_text("x\n")
    return folder


ALERT = {"finding": "a/region/r1-2c1-2", "class_name": "a", "kind": "region", "region": "the top-left 2x2 cells",
         "outcome": "shortcut", "status": "new", "evidence": "needed, sufficient, repeating"}


@pytest.mark.parametrize("kwargs, code", [
    ({}, 0), ({"alerts": [ALERT]}, 3), ({"suspect": ["accuracy 0.2 is near chance"]}, 4),
    ({"status": "failed"}, 1)])
def test_wait_exits_with_the_code_the_run_would_have_had(tmp_path, capsys, kwargs, code):
    run = make_run(tmp_path / "out", **kwargs)
    assert main(["wait", str(run), "--timeout", "5", "--poll", "0.01"]) == code
    out, err = capsys.readouterr()
    if code != 1:
        assert "igaudit: attributed 10 of 10 images (0 rejected) in 12.5 s; 1.0 images/s" in out
        assert f"igaudit: report: {run}/report.html" in out
    if code == 3:
        assert "igaudit: shortcut a/region/r1-2c1-2 (new)" in out
    if code == 4:
        assert "igaudit: suspect: accuracy 0.2 is near chance" in err
    if code == 1:
        assert "run failed: no image was attributed" in err


def test_wait_on_an_audit_folder_follows_its_newest_run_and_gives_up_with_5(tmp_path, capsys):
    root = tmp_path / "audits"
    make_run(root / "run=20260101T000000.000Z")
    newest = make_run(root / "run=20260201T000000.000Z", success=False)      # started, not finished
    assert run_to_wait_on(str(root)) == str(newest)
    assert main(["wait", str(root), "--timeout", "0.2", "--poll", "0.05"]) == 5
    assert "has not finished after 0.2 s" in capsys.readouterr().err
    # it finishes while being waited on
    ticks = []

    def sleep(seconds):
        ticks.append(seconds)
        if len(ticks) == 3:
            (newest / "_SUCCESS").write_text("x\n")
    assert wait_for(str(newest), timeout=100, poll=1, sleep=sleep, clock=lambda: len(ticks))["status"] == "ok"
    assert ticks == [1, 1, 1]


def test_wait_on_something_that_is_not_a_run_is_a_user_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["wait", str(tmp_path / "empty"), "--timeout", "1"]) == 2
    assert "is neither an igaudit run folder nor an audit folder" in capsys.readouterr().err
    assert main(["wait"]) == 2
    assert "igaudit wait needs the run to wait on" in capsys.readouterr().err


class Hook(BaseHTTPRequestHandler):
    received: list = []
    answer = 200

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(Hook.answer)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.received, Hook.answer = [], 200
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/T0/secret", Hook
    server.shutdown()
    server.server_close()


def test_the_command_and_the_webhook_get_the_alert_on_the_chosen_codes(tmp_path, webhook):
    url, hook = webhook
    run = make_run(tmp_path / "out", alerts=[ALERT])
    info = json.loads((run / "run.json").read_text())
    payload = notify.alert(3, command="audit", run=str(run), run_info=info)
    assert payload["alerts"] == [ALERT] and payload["report"] == f"{run}/report.html"
    assert payload["meaning"] == "complete, with an alert"
    got = tmp_path / "got"
    cfg = NotifyConfig(command=f'cat > {got}.json; echo "$IGAUDIT_EXIT_CODE $IGAUDIT_RUN" > {got}.env', url=url)
    assert notify.send(cfg, payload) == []
    assert json.loads(Path(f"{got}.json").read_text()) == json.loads(json.dumps(payload))
    assert Path(f"{got}.env").read_text().split() == ["3", str(run)]
    assert hook.received == [("/hooks/T0/secret", "application/json", json.loads(json.dumps(payload)))]
    # a code not in `on` notifies nobody
    assert notify.send(NotifyConfig(command=f"touch {tmp_path}/no", url=url, on=(1,)), payload) == []
    assert not (tmp_path / "no").exists() and len(hook.received) == 1


def test_failed_notifications_are_one_line_each_and_never_raise(tmp_path, webhook):
    url, hook = webhook
    payload = notify.alert(1, command="run", message="boom")
    hook.answer = 500
    failures = notify.send(NotifyConfig(command="echo nope >&2; exit 7", url=url), payload)
    assert failures == ["analysis.notify.command exited 7: nope", "analysis.notify.url: 127.0.0.1:"
                        f"{url.split(':')[2].split('/')[0]} answered 500 Internal Server Error"]
    assert "secret" not in " ".join(failures)                    # a webhook's path is not printed
    dead = notify.send(NotifyConfig(url="http://127.0.0.1:9/x", timeout=2), payload)
    assert len(dead) == 1 and "could not be reached" in dead[0]
    slow = notify.send(NotifyConfig(command="sleep 5", timeout=1), payload)
    assert slow == ["analysis.notify.command did not finish within 1 s (notify.timeout)"]


def test_an_empty_input_is_nothing_to_audit_suspect_and_notified(tmp_path, capsys, webhook):
    url, hook = webhook
    (tmp_path / "data").mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"input": {"pattern": str(tmp_path / "data" / "*" / "*.png")},
                                      "model": {"path": str(tmp_path / "m.keras")},
                                      "output": {"dir": str(tmp_path / "out")},
                                      "analysis": {"notify": {"url": url}}}))
    assert main(["audit", "--config", str(config)]) == 4
    err = capsys.readouterr().err
    assert "igaudit: suspect: nothing to audit: input.pattern" in err and "matches no files" in err
    assert not (tmp_path / "out").exists()                     # nothing touched
    assert [r[2]["exit_code"] for r in hook.received] == [4]
    assert "nothing to audit" in hook.received[0][2]["reason"]
    assert main(["run", "--config", str(config), "--set", "analysis.fail_on_suspect=false"]) == 0
    assert "igaudit: warning: nothing to audit" in capsys.readouterr().err
    assert len(hook.received) == 1                              # 0 is not in notify.on


def test_a_failing_webhook_leaves_the_exit_code_alone(tmp_path, capsys):
    run = make_run(tmp_path / "out", alerts=[ALERT])
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"input": {"pattern": "x/*/*.png"}, "output": {"dir": str(run)},
                                      "analysis": {"notify": {"url": "http://127.0.0.1:9/x", "timeout": 2}}}))
    assert main(["wait", "--config", str(config), "--timeout", "1"]) == 3
    assert "igaudit: warning: notification failed: analysis.notify.url: 127.0.0.1:9 could not be reached" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_a_real_suspect_run_exits_4_says_why_everywhere_and_notifies(tiny_assets, tmp_path, capsys, webhook):
    """The untrained tiny model predicts one class for every image: complete (_SUCCESS), suspect, exit 4."""
    from tests.conftest import tiny_config
    url, hook = webhook
    raw = tiny_config(tiny_assets, tmp_path / "out")
    raw["analysis"].update(fail_on_suspect=True, notify={"url": url, "command": f"cat > {tmp_path}/alert.json"})
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["run", "--config", str(config)]) == 4
    out, err = capsys.readouterr()
    assert "igaudit: suspect: 100% of images are predicted" in err and "model.input_range" in err
    assert "the run is complete but suspect (exit 4" in err
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (tmp_path / "out" / "_SUCCESS").exists() and info["status"] == "ok"
    assert info["exit_code"] == 4 and info["suspect"] and info["fail_on_suspect"] is True
    assert info["config"]["analysis"]["notify"]["url"] == f"{url.split('/hooks')[0]}/***"     # no secret kept
    assert "Suspect run (exit 4):" in (tmp_path / "out" / "report.html").read_text()
    sent = json.loads((tmp_path / "alert.json").read_text())
    assert sent["exit_code"] == 4 and sent["suspect"] == info["suspect"] and sent["run"] == str(tmp_path / "out")
    assert [r[2] for r in hook.received] == [sent]
    # the same run, fail_on_suspect off: the same lines, exit 0 or 3, no notification for 0
    assert main(["run", "--config", str(config), "--set", "analysis.fail_on_suspect=false"]) in (0, 3)
    assert "igaudit: suspect: 100% of images are predicted" in capsys.readouterr().err


def test_wait_refuses_a_poll_or_timeout_that_is_not_positive(capsys):
    for flag in ("--poll", "--timeout"):
        with pytest.raises(SystemExit) as stop:
            main(["wait", "somewhere", flag, "0"])
        assert stop.value.code == 2
        assert f"argument {flag}: invalid positive number of seconds value: '0'" in capsys.readouterr().err
