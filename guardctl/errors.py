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
