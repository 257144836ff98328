"""transforms/progress.py: throttled progress lines and their interval from the environment."""
import re

from igaudit.transforms.progress import PROGRESS_ENV, ProgressReporter, progress_interval


def test_progress_lines_are_throttled():
    p = ProgressReporter()
    assert p.add(4, batch_started=0.0, interval=10, now=2.0) is None        # too soon after the start
    assert p.add(4, batch_started=2.0, interval=10, now=9.9) is None
    line = p.add(4, batch_started=9.9, interval=10, now=12.0)
    assert re.fullmatch(r"igaudit progress: 12 images attributed by worker pid \d+ \(1\.0 images/s\)", line)
    assert p.add(4, batch_started=12.0, interval=10, now=21.0) is None      # 9 s after the last line
    assert "20 images" in p.add(4, batch_started=21.0, interval=10, now=22.5)
    every = ProgressReporter()
    assert "1 image attributed" in every.add(1, batch_started=0.0, interval=0, now=0.5)


def test_progress_interval_from_the_environment(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_interval() == 10.0
    monkeypatch.setenv(PROGRESS_ENV, "0.5")
    assert progress_interval() == 0.5
    monkeypatch.setenv(PROGRESS_ENV, "soon")
    assert progress_interval() == 10.0
