"""Exit statuses: the contract with agents and their scripts (DESIGN.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # an internal error guardctl did not expect (rerun with --traceback)
    USAGE = 2  # bad flags, unreadable or invalid rules file
    NEEDS_APPROVAL = 10  # `check`: a human must approve before this may run
    DENIED = 11  # denied by policy; nothing reached the cluster
    DECLINED = 12  # a human declined, or nobody answered in time; nothing reached the cluster
    UNSAFE = 13  # could not run safely: no credentials, keyring locked, kubectl missing
    INTERRUPTED = 130  # Ctrl-C in guardctl itself


def exit_for_child(returncode: int) -> int:
    """Map a child's returncode (negative for a signal, as subprocess reports it) to ours.

    The child's own exit code passes through unchanged; death by signal N becomes 128+N,
    which is what a shell reports for the same child.
    """
    if returncode < 0:
        return 128 - returncode
    return returncode
