"""Reading guardctl's command line without click, and the one error boundary.

Shared by the entry point (`main`) and a broker's worker, which route the same words the
same way: a first word that is not one of guardctl's own commands is a kubectl invocation;
the plain spellings of `check` an agent or a hook uses are read here. `guarded` turns a
GuardError into its one-line message and exit status, never a traceback;
`flush_standard_streams` is the last thing a client or a worker does with its output.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy knows the name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from guardctl.app import CheckRequest

    T = TypeVar("T")


def is_kubectl(first: str) -> bool:
    from guardctl.commands import guardctl_commands

    return first == "kubectl" or first not in guardctl_commands()


def plain_check(words: list[str]) -> CheckRequest | None:
    """`check [--json] [--rules P]… (LINE | --batch)`, also as `--rules=P` and with `--`
    before LINE; None for anything else."""
    from guardctl.app import CheckRequest

    line: str | None = None
    as_json = batch = False
    rules: list[str] = []
    options = iter(words)
    for word in options:
        if word == "--json":
            as_json = True
        elif word == "--batch":
            batch = True
        elif word == "--rules":
            value = next(options, None)
            if value is None:
                return None
            rules.append(value)
        elif word.startswith("--rules="):
            rules.append(word.removeprefix("--rules="))
        elif word == "--":
            rest = list(options)
            if len(rest) != 1 or line is not None:
                return None
            line = rest[0]
        elif word.startswith("-") or line is not None:
            return None
        else:
            line = word
    if batch == (line is not None):
        return None
    return CheckRequest(line, as_json, tuple(rules))


def guarded(call: Callable[[], T], traceback: bool = False) -> T | int:
    """Run `call`; a GuardError becomes its one-line message and exit status, never a traceback."""
    try:
        return call()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the boundary
        return _failed(exc, traceback)


def _failed(exc: BaseException, traceback: bool) -> int:
    """The message and exit status for what `call` raised (imported only when needed: the
    fork client's path has nothing else to import them for)."""
    from guardctl.errors import GuardError, exit_status_for

    if isinstance(exc, GuardError):
        _error(f"guardctl: {exc}")
    elif isinstance(exc, KeyboardInterrupt):
        _error("guardctl: interrupted")
    elif not isinstance(exc, BrokenPipeError):
        if traceback:
            raise exc
        _error(f"guardctl: internal error: {type(exc).__name__}: {exc} (rerun with --traceback)")
    return exit_status_for(exc)


def flush_standard_streams() -> None:
    """Flush stdout and stderr before a process ends with `os._exit` or reports its exit
    status (a client, a fork server's or broker's worker); a closed stream is left as it is."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _error(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
