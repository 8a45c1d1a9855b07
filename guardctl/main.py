"""guardctl's entry point: routing and the one error boundary.

`guardctl ARGS…` whose first word is not one of guardctl's own commands is a kubectl
invocation. It is routed here, before click is imported: an agent sends thousands of
kubectl commands, and click's import is a fifth of guardctl's start-up. So is
`guardctl check` in the plain spellings an agent or a hook uses; any other spelling
(`--help`, an unknown option, a missing LINE) goes to click, which owns the messages.
guardctl's own commands go to `cli`, the only module that imports click.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from guardctl.errors import GuardError
from guardctl.status import ExitStatus

if TYPE_CHECKING:
    from guardctl.app import CheckRequest

GUARDCTL_OPTIONS = frozenset({"-h", "--help", "--version", "--traceback"})


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in args[:1]
    if args and args[0] not in GUARDCTL_OPTIONS and _is_kubectl(args[0]):
        # `guardctl kubectl ARGS` forces the kubectl reading of ARGS
        kubectl_args = args[1:] if args[0] == "kubectl" else args
        return guarded(lambda: _run_kubectl(kubectl_args), traceback)
    request = _plain_check(args[1:]) if args[:1] == ["check"] else None
    if request is not None:
        return guarded(lambda: _run_check(request), traceback)
    return guarded(lambda: _run_click(args), traceback)


def _is_kubectl(first: str) -> bool:
    from guardctl.normalize import guardctl_commands

    return first == "kubectl" or first not in guardctl_commands()


def _run_kubectl(args: list[str]) -> int:
    from guardctl.env import Environment
    from guardctl.invoke import run_kubectl

    return run_kubectl(Environment(), args)


def _plain_check(words: list[str]) -> CheckRequest | None:
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


def _run_check(request: CheckRequest) -> int:
    from guardctl.app import run_check
    from guardctl.env import Environment

    return run_check(Environment(), request)


def _run_click(args: list[str]) -> int:
    from guardctl.cli import run

    return run(args)


def guarded(call: Callable[[], int], traceback: bool = False) -> int:
    """Run `call`; a GuardError becomes its one-line message and exit status, never a traceback."""
    try:
        return call()
    except GuardError as exc:
        _error(f"guardctl: {exc}")
        return exc.exit_status
    except KeyboardInterrupt:
        _error("guardctl: interrupted")
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        return ExitStatus.OK
    except Exception as exc:  # noqa: BLE001 - the boundary: never a traceback for the user
        if traceback:
            raise
        _error(f"guardctl: internal error: {type(exc).__name__}: {exc} (rerun with --traceback)")
        return ExitStatus.ERROR


def _error(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
