"""The scheduling recipes of the README and docs/scheduling.md, run as written: the cron line and the systemd
unit's command with a stand-in igaudit that exits with each code and a stand-in `mail` that records what it was
asked to send; the Airflow task and the Kubernetes CronJob parse."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", ROOT / "docs" / "scheduling.md")   # where the recipes are written, wherever they move


def docs_text() -> str:
    return "\n".join(path.read_text() for path in DOCS)


def cron_command() -> str:
    """The documented cron line without its five schedule fields."""
    line = next(l for l in docs_text().splitlines() if re.match(r"^0 3 1 \* \* ", l))
    return line.split(None, 5)[5]


def doc_block(language: str, containing: str) -> str:
    """The fenced block in `language` (README or docs/scheduling.md) that contains `containing`."""
    blocks = [b for path in DOCS for b in re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)]
    return next(b for b in blocks if containing in b)


def systemd_command() -> str:
    """The shell command of the documented igaudit.service (ExecStart=/bin/sh -c '...')."""
    line = next(l for l in doc_block("ini", "ExecStart=").splitlines() if l.startswith("ExecStart="))
    return re.fullmatch(r"ExecStart=/bin/sh -c '(.*)'", line).group(1)


def stand_ins(tmp_path, code: int):
    """/srv/igaudit with a .venv/bin/igaudit that exits `code`, and a bin/ with a `mail` that records."""
    home = tmp_path / "srv"
    (home / ".venv" / "bin").mkdir(parents=True)
    stub = home / ".venv" / "bin" / "igaudit"
    stub.write_text(f"#!/bin/sh\necho 'igaudit: what the run said'\nexit {code}\n")
    stub.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mail = bin_dir / "mail"
    mail.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/mail.args\ncat > {tmp_path}/mail.body\n")
    mail.chmod(0o755)
    return home, {"PATH": f"{bin_dir}:/usr/bin:/bin"}


CODES = [(0, False), (1, True), (2, True), (3, True), (4, True), (5, True)]


@pytest.mark.parametrize("code, mailed", CODES)
def test_the_cron_line_mails_on_every_exit_code_but_0(tmp_path, code, mailed):
    home, env = stand_ins(tmp_path, code)
    command = cron_command().replace("/srv/igaudit", str(home))
    assert str(home) in command
    subprocess.run(["/bin/sh", "-c", command], env=env, timeout=30)
    assert (tmp_path / "mail.args").exists() == mailed
    if mailed:
        assert f"exit {code}" in (tmp_path / "mail.args").read_text()
        assert "what the run said" in (tmp_path / "mail.body").read_text()


@pytest.mark.parametrize("code, mailed", CODES)
def test_the_systemd_unit_mails_and_fails_on_every_exit_code_but_0(tmp_path, code, mailed):
    home, env = stand_ins(tmp_path, code)
    unit = doc_block("ini", "ExecStart=")
    assert "WorkingDirectory=/srv/igaudit" in unit and "OnCalendar=" in unit
    done = subprocess.run(["/bin/sh", "-c", systemd_command()], cwd=home, env=env, timeout=30)   # as systemd does
    assert done.returncode == code                    # the unit fails with the audit's own code
    assert (tmp_path / "mail.args").exists() == mailed
    if mailed:
        assert f"exit {code}" in (tmp_path / "mail.args").read_text()
        assert "what the run said" in (tmp_path / "mail.body").read_text()


def test_the_airflow_task_and_the_kubernetes_cronjob_parse():
    import ast

    import yaml
    task = doc_block("python", "BashOperator(")
    ast.parse(task)
    assert ".venv/bin/igaudit audit --config configs/audit.yaml" in task
    job = yaml.safe_load(doc_block("yaml", "kind: CronJob"))
    spec = job["spec"]["jobTemplate"]["spec"]
    container = spec["template"]["spec"]["containers"][0]
    assert job["spec"]["schedule"] == "0 3 1 * *" and spec["backoffLimit"] == 0
    assert container["command"][:2] == ["igaudit", "audit"]
