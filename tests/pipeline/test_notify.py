"""pipeline/notify.py: the alert JSON, the command's environment, the webhook's headers and answers, redacted URLs."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from igaudit.pipeline import notify

KEYS = {"igaudit", "exit_code", "meaning", "run", "report", "status", "reason", "suspect", "change", "alerts",
        "accuracy", "counts"}


def settings(command=None, url=None, on=(1, 3, 4), timeout=5.0):
    """What `send` reads of analysis.notify."""
    return SimpleNamespace(command=command, url=url, on=on, timeout=timeout)


class Answer(BaseHTTPRequestHandler):
    """Answers every POST with `status`, keeping its headers and body."""
    status, got = 204, []

    def do_POST(self):  # noqa: N802 - the http.server API
        length = int(self.headers["Content-Length"])
        self.got.append((dict(self.headers), self.rfile.read(length)))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):     # no access lines on stderr
        return None


@pytest.fixture
def server():
    Answer.status, Answer.got = 204, []
    with HTTPServer(("127.0.0.1", 0), Answer) as httpd:
        threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
        yield f"http://127.0.0.1:{httpd.server_port}/hook/TOKEN", Answer
        httpd.shutdown()


def test_a_run_that_stopped_before_run_json_sends_the_console_line_as_reason():
    payload = notify.alert(1, command="run", message="RunFailed: no image was attributed")
    assert set(payload) == KEYS
    assert payload["meaning"] == "failed" and payload["reason"] == "RunFailed: no image was attributed"
    assert payload["run"] is payload["report"] is payload["status"] is None
    assert payload["suspect"] == [] and payload["alerts"] == []


def test_only_a_finished_ok_run_has_a_report_and_run_json_wins_over_the_message():
    failed = notify.alert(1, command="audit", run="gs://b/run=1", run_info={"status": "failed", "reason": "rejects"},
                          message="console line")
    assert failed["report"] is None and failed["reason"] == "rejects" and failed["run"] == "gs://b/run=1"
    suspect = notify.alert(4, command="audit", run="gs://b/run=2",
                           run_info={"status": "ok", "suspect": ["accuracy 0.3 is near chance"], "accuracy": 0.3,
                                     "counts": {"matched": 9}})
    assert suspect["report"] == "gs://b/run=2/report.html" and suspect["meaning"] == "complete but suspect"
    assert suspect["suspect"] == ["accuracy 0.3 is near chance"] and suspect["reason"] is None
    assert (suspect["accuracy"], suspect["counts"]) == (0.3, {"matched": 9})
    assert notify.alert(143, command="run")["meaning"] == "terminated"


def test_the_command_gets_the_report_variable_empty_without_a_report(tmp_path):
    env = tmp_path / "env"
    command = f'printf "%s|%s|%s" "$IGAUDIT_EXIT_CODE" "$IGAUDIT_RUN" "$IGAUDIT_REPORT" > {env}'
    assert notify.send(settings(command=command), notify.alert(1, command="run", message="boom")) == []
    assert env.read_text() == "1||"
    ok = notify.alert(3, command="audit", run=str(tmp_path / "run"), run_info={"status": "ok"})
    assert notify.send(settings(command=command), ok) == []
    assert env.read_text() == f"3|{tmp_path}/run|{tmp_path}/run/report.html"


def test_a_failing_command_reports_its_last_stderr_line_cut_to_300_characters():
    payload = notify.alert(4, command="audit", message="suspect")
    noisy = settings(command=f"echo first >&2; echo {'x' * 400} >&2; exit 9")
    assert notify.send(noisy, payload) == [f"analysis.notify.command exited 9: {'x' * 300}"]
    assert notify.send(settings(command="exit 3"), payload) == ["analysis.notify.command exited 3"]
    missing = notify.send(settings(command="igaudit-no-such-command-here"), payload)
    assert len(missing) == 1 and missing[0].startswith("analysis.notify.command exited 127: ")


def test_the_webhook_gets_indented_json_with_its_headers_and_any_2xx_is_success(server):
    url, answer = server
    payload = notify.alert(3, command="audit", run_info={"status": "ok", "counts": {"matched": 3}})
    assert notify.send(settings(url=url), payload) == []
    (headers, body), = answer.got
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"] == "igaudit"
    assert body.decode() == json.dumps(payload, indent=2)


def test_values_json_cannot_hold_are_sent_as_text(server):
    url, answer = server
    payload = dict(notify.alert(1, command="run", message="boom"), counts={"started": complex(1, 2)})
    assert notify.send(settings(url=url), payload) == []
    assert json.loads(answer.got[0][1])["counts"] == {"started": "(1+2j)"}


def test_a_webhook_that_answers_too_late_is_one_line_naming_only_its_host():
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(1)                                   # accepts the connection, never answers
    try:
        port = quiet.getsockname()[1]
        failures = notify.send(settings(url=f"http://127.0.0.1:{port}/hook/TOKEN", timeout=0.2),
                               notify.alert(1, command="run", message="boom"))
    finally:
        quiet.close()
    assert len(failures) == 1
    assert failures[0].startswith(f"analysis.notify.url: 127.0.0.1:{port} could not be reached (")
    assert "timed out" in failures[0] and "TOKEN" not in failures[0]


def test_nothing_is_sent_for_a_code_outside_on(server):
    url, answer = server
    assert notify.send(settings(url=url, on=(1,)), notify.alert(0, command="run", run_info={"status": "ok"})) == []
    assert answer.got == []


def test_a_url_is_shown_as_its_scheme_and_host_only():
    assert notify.url_host("https://hooks.example.com:8443/services/T0/SECRET?x=1") == "hooks.example.com:8443"
    assert notify.redacted_url("https://hooks.example.com/services/T0/SECRET") == "https://hooks.example.com/***"
    assert notify.redacted_url("http://127.0.0.1:9000/") == "http://127.0.0.1:9000/***"


def test_a_password_in_the_url_is_not_shown():
    assert notify.redacted_url("https://bot:hunter2@hooks.example.com/T0") == "https://hooks.example.com/***"
