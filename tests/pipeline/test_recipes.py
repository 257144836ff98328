"""The README's scheduling recipes, run as written: the cron line with a stand-in igaudit that exits with each
code and a stand-in `mail` that records what it was asked to send."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cron_command() -> str:
    """The README's cron line without its five schedule fields."""
    line = next(l for l in (ROOT / "README.md").read_text().splitlines() if re.match(r"^0 3 1 \* \* ", l))
    return line.split(None, 5)[5]


@pytest.mark.parametrize("code, mailed", [(0, False), (1, True), (2, True), (3, True)])
def test_the_cron_line_mails_on_every_exit_code_but_0(tmp_path, code, mailed):
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
    command = cron_command().replace("/srv/igaudit", str(home))
    assert str(home) in command
    subprocess.run(["/bin/sh", "-c", command], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30)
    assert (tmp_path / "mail.args").exists() == mailed
    if mailed:
        assert f"exit {code}" in (tmp_path / "mail.args").read_text()
        assert "what the run said" in (tmp_path / "mail.body").read_text()
