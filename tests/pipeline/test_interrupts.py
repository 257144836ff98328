"""pipeline/interrupts.py: SIGINT and SIGTERM handlers that print one line and exit 130 or 143; killed workers quiet."""
import signal
import sys
import threading
from types import SimpleNamespace

import pytest

from igaudit.pipeline import exit_codes, interrupts

LINE = ("igaudit: interrupted ({}): stopped; outputs written so far are incomplete (no _SUCCESS) and the next run "
        "into the same output.dir replaces them\n")


class Exited(Exception):
    """os._exit, caught: the test process lives on."""


@pytest.fixture
def installed(monkeypatch):
    """install() as a test needs it: the previous signal handlers and thread hook are put back afterwards; the
    handler's exit, its silencing of stdout/stderr and its killing of child processes only recorded."""
    before = {signum: signal.getsignal(signum) for signum in interrupts.EXIT_CODES}
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    calls = []
    monkeypatch.setattr(interrupts, "_silence", lambda: calls.append("silence"))
    monkeypatch.setattr(interrupts, "_stop_children", lambda: calls.append("stop children"))

    def exit_(code):
        calls.append(code)
        raise Exited(code)
    monkeypatch.setattr(interrupts.os, "_exit", exit_)
    yield calls
    for signum, handler in before.items():
        signal.signal(signum, handler)


def test_the_exit_codes_are_the_documented_ones():
    assert interrupts.EXIT_CODES == {signal.SIGINT: exit_codes.INTERRUPTED, signal.SIGTERM: exit_codes.TERMINATED}
    assert (exit_codes.INTERRUPTED, exit_codes.TERMINATED) == (130, 143)


def test_install_takes_both_signals_with_one_handler(installed):
    interrupts.install()
    handlers = {signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    assert len(handlers) == 1
    handler = handlers.pop()
    assert callable(handler) and handler not in (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN)


def test_sigterm_prints_one_line_silences_the_rest_stops_children_and_exits_143(installed, capfd):
    interrupts.install()
    with pytest.raises(Exited):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert installed == ["silence", "stop children", 143]
    assert capfd.readouterr().err == LINE.format("SIGTERM")      # off a terminal: no escape codes


def test_with_debug_ctrl_c_also_prints_the_stack_and_prints_on(installed, capfd):
    interrupts.install(debug=True)

    def computing():
        signal.getsignal(signal.SIGINT)(signal.SIGINT, sys._getframe())
    with pytest.raises(Exited):
        computing()
    assert installed == ["stop children", 130]                     # nothing silenced
    err = capfd.readouterr().err
    assert err.startswith(LINE.format("SIGINT")) and "in computing" in err


def test_on_a_terminal_the_line_first_clears_the_bar_and_shows_the_cursor(installed, capfd, monkeypatch):
    interrupts.install()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with pytest.raises(Exited):
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert capfd.readouterr().err == "\r\x1b[2K\x1b[?25h" + LINE.format("SIGINT")


def test_the_thread_hook_is_wrapped_once_and_only_without_debug(installed):
    original = threading.excepthook
    interrupts.install(debug=True)
    assert threading.excepthook is original
    interrupts.install()
    hook = threading.excepthook
    assert hook is not original and hook.igaudit is True
    interrupts.install()                                           # main() may run twice
    assert threading.excepthook is hook


def test_the_hook_drops_only_workers_killed_by_a_signal():
    passed_on = []
    hook = interrupts._quiet_killed_workers(passed_on.append)
    killed = SimpleNamespace(exc_value=RuntimeError("Worker subprocess exited with return code -2"))
    crashed = SimpleNamespace(exc_value=RuntimeError("Worker subprocess exited with return code 1"))
    other = SimpleNamespace(exc_value=ValueError("Worker subprocess exited with return code -2"))
    for args in (killed, crashed, other):
        hook(args)
    assert passed_on == [crashed, other]
