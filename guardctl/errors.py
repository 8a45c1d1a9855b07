"""Domain errors. Each carries the exit status the CLI's one error boundary returns."""

from __future__ import annotations

from guardctl.status import ExitStatus


class GuardError(Exception):
    """An error with a one-line message for the user and an exit status."""

    exit_status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, exit_status: ExitStatus | None = None) -> None:
        super().__init__(message)
        if exit_status is not None:
            self.exit_status = exit_status


class UsageError(GuardError):
    exit_status = ExitStatus.USAGE


class RuleError(UsageError):
    """A rules file that cannot be loaded; the message names file, line or rule id, and key."""


class UnsafeError(GuardError):
    """guardctl cannot run the command safely (credentials, keyring, kubectl missing)."""

    exit_status = ExitStatus.UNSAFE


class DeadlineExceeded(BaseException):
    """Raised inside a `deadline` block when its time is up.

    A BaseException, like KeyboardInterrupt: the code being bounded may well catch
    Exception, and must not swallow its own deadline.
    """


def exit_status_for(exc: BaseException) -> int:
    """The exit status a process ends with when `exc` ends it (the CLI's error boundary, and
    the audit record of a run that `exc` ended)."""
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else ExitStatus.ERROR
    if isinstance(exc, GuardError):
        return exc.exit_status
    if isinstance(exc, KeyboardInterrupt):
        return ExitStatus.INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return ExitStatus.OK
    return ExitStatus.ERROR
