"""transforms/quiet_import.py: TensorFlow's start-up chatter on fd 2 is dropped and fd 2 restored; worker checks; Ctrl-C."""
import os
import sys
import types

import pytest

from igaudit.transforms.quiet_import import (DEBUG_ENV, import_tensorflow_quietly, in_local_worker_process,
                                             quiet_keyboard_interrupt)

# A stand-in for tensorflow: it prints to fd 2 (as TensorFlow's C++ code does) on import and on device probing.
NOISY_MODULE = '''
import os
os.write(2, b"noisy import\\n")
if os.environ.get("FAKE_TF_FAILS"):
    raise ImportError("fake tensorflow is broken")


class config:
    @staticmethod
    def list_physical_devices():
        os.write(2, b"noisy probe\\n")
        return []
'''


@pytest.fixture
def fake_tensorflow(tmp_path, monkeypatch):
    """`import tensorflow` finds the noisy stand-in (the real module comes back after the test)."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(NOISY_MODULE)
    real = sys.modules.pop("tensorflow", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("tensorflow", None)
    if real is not None:
        sys.modules["tensorflow"] = real


def test_start_up_output_is_dropped_and_stderr_works_after(fake_tensorflow, capfd, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    os.write(2, b"before\n")
    import_tensorflow_quietly()
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "noisy" not in err
    assert "before" in err and "after" in err
    assert sys.modules["tensorflow"].__file__.startswith(str(fake_tensorflow))
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"


def test_stderr_comes_back_when_the_import_fails(fake_tensorflow, capfd, monkeypatch):
    monkeypatch.setenv("FAKE_TF_FAILS", "1")
    with pytest.raises(ImportError, match="fake tensorflow is broken"):
        import_tensorflow_quietly()
    os.write(2, b"still here\n")
    err = capfd.readouterr().err
    assert "still here" in err and "noisy" not in err


def test_an_imported_tensorflow_is_left_alone_and_a_set_log_level_kept(monkeypatch):
    """TensorFlow already imported: nothing is re-imported and fd 2 is never redirected."""
    already = types.ModuleType("tensorflow")
    monkeypatch.setitem(sys.modules, "tensorflow", already)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    redirects, dup2 = [], os.dup2
    monkeypatch.setattr(os, "dup2", lambda *a: redirects.append(a) or dup2(*a))
    import_tensorflow_quietly()
    assert redirects == []
    assert sys.modules["tensorflow"] is already
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


@pytest.mark.parametrize("control, debug, expected", [
    ("localhost:5000", None, True),
    ("localhost:5000", "1", False),       # igaudit --debug: a worker keeps its output
    ("", None, False),
    (None, None, False),
])
def test_in_local_worker_process(monkeypatch, control, debug, expected):
    for name, value in (("CONTROL_API_SERVICE_DESCRIPTOR", control), (DEBUG_ENV, debug)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert in_local_worker_process() is expected


def test_keyboard_interrupt_dies_quietly_other_errors_still_print(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen.append(kind))
    quiet_keyboard_interrupt()
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert seen == []
    sys.excepthook(ValueError, ValueError("shown"), None)
    assert seen == [ValueError]
