"""pipeline/errors.py: UserError is its own exception kind, one line and exit 2 in the CLI; NothingToAudit is one."""
import pytest

from igaudit.pipeline.errors import NothingToAudit, UserError


def test_a_user_error_is_a_plain_exception_apart_from_the_builtin_kinds():
    """The CLI tells a user's mistake (exit 2) from a crash (exit 1) by this class alone."""
    assert UserError.__mro__ == (UserError, Exception, BaseException, object)
    for other in (ValueError, LookupError, RuntimeError, OSError):
        assert not issubclass(UserError, other)


def test_nothing_to_audit_is_caught_as_a_user_error_and_keeps_its_message():
    message = "nothing to audit: input.pattern 'data/*/*.png' matches no files"
    with pytest.raises(UserError) as caught:
        raise NothingToAudit(message)
    assert type(caught.value) is NothingToAudit and str(caught.value) == message
    assert NothingToAudit.__mro__[1] is UserError


def cli_wait_raising(monkeypatch, capsys, error: Exception):
    """`igaudit wait` whose first step raises `error`: the exit code and what stderr said."""
    from igaudit.pipeline import interrupts, wait
    from igaudit.pipeline.cli import main

    def raise_it(path):
        raise error
    monkeypatch.setattr(interrupts, "install", lambda debug=False: None)   # leave pytest's signal handlers alone
    monkeypatch.setattr(wait, "run_to_wait_on", raise_it)
    code = main(["wait", "somewhere"])
    return code, capsys.readouterr().err


def test_the_cli_prints_a_user_error_as_one_line_and_exits_2(monkeypatch, capsys):
    code, err = cli_wait_raising(monkeypatch, capsys, UserError("model.path 'm.keras' does not exist: fix it"))
    assert code == 2 and err == "igaudit: error: model.path 'm.keras' does not exist: fix it\n"


def test_any_other_exception_is_a_failed_run_not_a_user_error(monkeypatch, capsys):
    code, err = cli_wait_raising(monkeypatch, capsys, ValueError("model.path 'm.keras' does not exist"))
    assert code == 1
    assert err.startswith("igaudit: run failed: ValueError: model.path 'm.keras' does not exist")
