"""`igaudit demo` (what `make demo` runs) from an empty folder: builds the data and model offline,
runs the audit, prints where report.html is, and flags the planted shortcut class first."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def test_demo_from_scratch(tmp_path):
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "local.yaml", tmp_path / "configs" / "local.yaml")
    env_path = {"PYTHONPATH": str(ROOT)}
    import os
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900, env={**os.environ, **env_path})
    assert done.returncode == 0, done.stderr[-2000:]
    report = re.search(r"igaudit: report: (\S+report\.html)", done.stdout)
    assert report, done.stdout
    assert Path(report.group(1)) == tmp_path / "out" / "demo" / "report.html"
    assert Path(report.group(1)).is_file()
    assert (tmp_path / "models" / "demo.keras").stat().st_size < 2_000_000
    flagged = {r["class_name"] for r in pq.read_table(tmp_path / "out" / "demo" / "skew.parquet").to_pylist()
               if r["flagged"] and r["group_by"] == "label"}
    assert flagged == {"triangle"}
    html = Path(report.group(1)).read_text()
    assert re.search(r"<div class=class><h3>([^<]+?) <span", html).group(1) == "triangle"
    assert "flagged: triangle" in done.stdout
