"""The error a user can fix: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """A problem the user can fix; the message names the thing and the fix."""


class NothingToAudit(UserError):
    """The inputs matched nothing: a scheduled audit of an empty folder or manifest is suspect (exit 4 under
    analysis.fail_on_suspect), not a success; nothing was touched."""
