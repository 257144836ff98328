"""pipeline/wait.py: which run is waited on, when a run counts as finished, and the poll loop on an injected clock."""
import json

import pytest

from igaudit.pipeline.errors import UserError
from igaudit.pipeline.run_dir import MARKER
from igaudit.pipeline.wait import finished, run_to_wait_on, wait_for


def run_folder(folder, *, marker=True, info=None, success=False):
    """A run folder as a job leaves it: igaudit's marker, run.json (dict or raw text), _SUCCESS."""
    folder.mkdir(parents=True)
    if marker:
        (folder / MARKER).parent.mkdir()
        (folder / MARKER).write_text("{}")
    if info is not None:
        (folder / "run.json").write_text(info if isinstance(info, str) else json.dumps(info))
    if success:
        (folder / "_SUCCESS").write_text("x\n")
    return folder


class Clock:
    """A monotonic clock that only moves when the waiter sleeps."""

    def __init__(self):
        self.now, self.slept = 100.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_a_run_folder_is_waited_on_itself_with_or_without_its_marker(tmp_path):
    marked = run_folder(tmp_path / "marked")
    assert run_to_wait_on(str(marked)) == str(marked)
    assert run_to_wait_on(f"{marked}//") == str(marked)                  # trailing slashes dropped
    unmarked = run_folder(tmp_path / "unmarked", marker=False, info={"status": "ok"})
    assert run_to_wait_on(str(unmarked)) == str(unmarked)


def test_an_audit_folder_is_waited_on_through_its_newest_run_igaudit_started(tmp_path):
    audit = tmp_path / "audit"
    older = run_folder(audit / "run=20250101T000000.000Z", info={"status": "ok"}, success=True)
    run_folder(audit / "run=20990101T000000.000Z", marker=False)          # not igaudit's: no marker
    (audit / "notes").mkdir()
    assert run_to_wait_on(f"{audit}/") == str(older)


def test_a_folder_that_is_neither_is_a_user_error_naming_it_absolute(tmp_path, monkeypatch):
    (tmp_path / "plain" / "run=x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as e:
        run_to_wait_on("plain")
    assert str(e.value).startswith(f"'{tmp_path / 'plain'}' is neither an igaudit run folder nor an audit folder")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("info, success, done", [
    ({"status": "ok"}, True, True),            # complete
    ({"status": "failed"}, False, True),       # failed: finished without _SUCCESS
    ({"status": "ok"}, False, False),          # run.json written, the last steps still to come
    (None, False, False),                      # started, nothing written yet
    ('{"status": "fai', False, False),         # run.json being written right now
    (None, True, False)])                      # _SUCCESS without run.json: nothing to report
def test_a_run_is_finished_with_success_or_a_failed_run_json(tmp_path, info, success, done):
    run = run_folder(tmp_path / "run", info=info, success=success)
    got = finished(str(run))
    assert (got == info) if done else got is None


def test_the_waiter_sleeps_one_poll_at_a_time_and_never_past_the_timeout(tmp_path):
    run = run_folder(tmp_path / "run", info={"status": "ok"})
    clock = Clock()
    assert wait_for(str(run), timeout=2.5, poll=1, sleep=clock.sleep, clock=clock) is None
    assert clock.slept == [1, 1, 0.5] and clock.now == 102.5


def test_a_finished_run_is_returned_without_sleeping_even_with_no_time_left(tmp_path):
    run = run_folder(tmp_path / "run", info={"status": "failed", "reason": "boom"})
    clock = Clock()
    assert wait_for(str(run), timeout=0, poll=5, sleep=clock.sleep, clock=clock) == {"status": "failed",
                                                                                    "reason": "boom"}
    unfinished = run_folder(tmp_path / "other")
    assert wait_for(str(unfinished), timeout=0, poll=5, sleep=clock.sleep, clock=clock) is None
    assert clock.slept == []
