"""pipeline/live.py: when the bar is drawn, what it sums and shows, the env it sets and puts back, the work's thread."""
import json
import os
import threading

import pytest

from igaudit.pipeline import live
from igaudit.pipeline.live import ProgressBar, run_in_background, wants_bar
from igaudit.transforms.progress import BOARD_ENV, PROGRESS_ENV


class Terminal:
    """A stderr that says it is a terminal."""

    def isatty(self):
        return True

    def write(self, text):
        return len(text)

    def flush(self):
        pass


def post(bar, pid, **counts):
    """One worker process's counts on the bar's board, as transforms/progress.py writes them."""
    with open(os.path.join(bar.folder, f"{pid}.json"), "w") as f:
        json.dump(counts, f)


def shown(bar):
    """The bar's task after a refresh: (completed, stage, text)."""
    bar.refresh()
    task = bar._bar.tasks[0]
    return task.completed, task.fields["stage"], task.fields["text"]


def test_the_bar_is_for_local_runs_on_a_real_terminal_only(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    assert not wants_bar(True)                                  # pytest's stderr is no terminal
    monkeypatch.setattr(live.sys, "stderr", Terminal())
    assert wants_bar(True) and not wants_bar(False)
    monkeypatch.setenv("TERM", "dumb")
    assert not wants_bar(True)


def test_the_bar_points_workers_at_its_board_and_puts_everything_back(monkeypatch):
    monkeypatch.setenv(BOARD_ENV, "/somewhere/else")
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    with ProgressBar(5) as bar:
        assert os.environ[BOARD_ENV] == bar.folder and os.path.isdir(bar.folder)
        assert os.environ[PROGRESS_ENV] == "inf"                # no periodic lines under the bar
    assert os.environ[BOARD_ENV] == "/somewhere/else" and PROGRESS_ENV not in os.environ
    assert not os.path.exists(bar.folder)


def test_the_bar_sums_every_process_board_and_stops_at_the_total():
    with ProgressBar(10) as bar:
        post(bar, 101, attributed=4, rejected=1)
        post(bar, 102, attributed=3, rejected=0)
        completed, stage, text = shown(bar)
        assert (completed, stage) == (8, "attributing")
        assert text.startswith("7 of 10 images · ") and text.endswith("/s · 1 rejected · ETA")
        post(bar, 102, attributed=7, rejected=2)                 # rejects counted twice by a retry: capped
        assert shown(bar)[:2] == (10, "analysing")


def test_without_a_total_the_bar_counts_up_and_names_no_total():
    with ProgressBar(None) as bar:
        post(bar, 7, attributed=40, rejected=2)
        completed, stage, text = shown(bar)
    assert (completed, stage) == (42, "attributing") and text.startswith("40 images · ")


def test_the_rate_stays_attributions_once_the_analysis_starts():
    with ProgressBar(100) as bar:
        bar._started -= 100                                     # 100 s into the run
        post(bar, 1, attributed=50, rejected=0)
        assert "50 of 100 images · 0.5/s ·" in shown(bar)[2]
        post(bar, 1, attributed=50, rejected=0, tests=4)       # the rest rejected later or not at all: tests say
        bar._started -= 100                                     # the analysis takes as long again
        stage, text = shown(bar)[1:]
    assert stage == "analysing (4 intervention tests)" and "· 0.5/s ·" in text


def test_attribution_finished_between_two_redraws_still_gets_a_rate():
    with ProgressBar(50) as bar:
        assert "· 0.0/s ·" in shown(bar)[2]                     # Beam still starting: nothing attributed yet
        bar._started -= 100
        post(bar, 1, attributed=50, rejected=0)                 # all of it flushed at once, 100 s in
        stage, text = shown(bar)[1:]
    assert stage == "analysing" and "· 0.0/s ·" not in text


def test_the_work_runs_on_its_own_thread_and_its_result_comes_back():
    seen = {}

    def work():
        seen["thread"] = threading.current_thread()
        return {"attributed": 3}
    assert run_in_background(work) == {"attributed": 3}
    assert seen["thread"] is not threading.current_thread()
    assert seen["thread"].name == "igaudit-pipeline" and seen["thread"].daemon


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3)])
def test_the_works_exception_is_raised_on_the_calling_thread(error):
    def work():
        raise error
    with pytest.raises(type(error)) as caught:
        run_in_background(work)
    assert caught.value is error


def test_the_bar_is_redrawn_while_the_work_runs_and_once_at_the_end(monkeypatch):
    monkeypatch.setattr(live, "REDRAW_SECONDS", 0.005)
    redrawn = threading.Event()

    class Bar:
        refreshes = 0

        def refresh(self):
            Bar.refreshes += 1
            redrawn.set()

    def work():
        assert redrawn.wait(5), "no redraw while the work ran"
        return "done"
    assert run_in_background(work, Bar()) == "done"
    assert Bar.refreshes >= 2
