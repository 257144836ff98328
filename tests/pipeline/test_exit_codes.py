"""pipeline/exit_codes.py: a finished run's code, from its run.json (failed, then suspect, then alert)."""
import pytest

from igaudit.pipeline import exit_codes


@pytest.mark.parametrize("run_info, code", [
    ({"status": "ok", "alerts": [], "suspect": []}, 0),
    ({"status": "ok", "alerts": [{"finding": "x"}], "suspect": []}, 3),
    ({"status": "failed", "alerts": [{"finding": "x"}], "suspect": ["accuracy"]}, 1),
    ({"status": "ok", "alerts": [], "suspect": ["accuracy 0.2"], "fail_on_suspect": True}, 4),
    ({"status": "ok", "alerts": [{"finding": "x"}], "suspect": ["accuracy 0.2"]}, 4),    # default: fail on it
    ({"status": "ok", "alerts": [], "suspect": ["accuracy 0.2"], "fail_on_suspect": False}, 0),
    ({"status": "ok", "alerts": [{"finding": "x"}], "suspect": ["x"], "fail_on_suspect": False}, 3),
    ({"status": "ok", "alerts": []}, 0),                                     # an older run.json: no suspect key
])
def test_a_runs_code_from_its_run_json(run_info, code):
    assert exit_codes.for_run(run_info) == code


def test_compare_alerts_only():
    assert exit_codes.for_alerts([]) == 0 and exit_codes.for_alerts([{"class_name": "a"}]) == 3


def test_the_codes_are_distinct_and_documented_in_the_readme():
    from pathlib import Path
    codes = [exit_codes.OK, exit_codes.FAILED, exit_codes.USER_ERROR, exit_codes.ALERT, exit_codes.SUSPECT,
             exit_codes.WAIT_TIMED_OUT, exit_codes.INTERRUPTED, exit_codes.TERMINATED]
    assert len(set(codes)) == len(codes)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme[readme.index("| exit code |"):]
    for code in codes:
        assert f"| {code} |" in table, code
