"""guardctl's entry point: routing and the one error boundary.

`guardctl ARGS…` whose first word is not one of guardctl's own commands is a kubectl
invocation. It is routed here, before click is imported: an agent sends thousands of
kubectl commands, and click's import is a fifth of guardctl's start-up. So is
`guardctl check` in the plain spellings an agent or a hook uses; any other spelling
(`--help`, an unknown option, a missing LINE) goes to click, which owns the messages.
guardctl's own commands go to `cli`, the only module that imports click.

Before all that, a command from an agent (no terminal) is offered to the fork server
(`forkclient`), whose warm worker runs this same `main`. That path imports nothing but
this module and the client: not even `typing`, which costs a tenth of a warm run.
"""

from __future__ import annotations

import sys

from guardctl.broker.forkclient import OWN_OPTIONS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy knows the name
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeVar

    from guardctl.app import CheckRequest

    T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in args[:1]
    code = guarded(lambda: _run_brokered(args))
    if code is not None:
        return code
    if argv is None:
        code = guarded(lambda: _run_warm(args))
        if code is not None:
            return code
    if args and args[0] not in OWN_OPTIONS and is_kubectl(args[0]):
        # `guardctl kubectl ARGS` forces the kubectl reading of ARGS
        kubectl_args = args[1:] if args[0] == "kubectl" else args
        return guarded(lambda: _run_kubectl(kubectl_args), traceback)
    request = plain_check(args[1:]) if args[:1] == ["check"] else None
    if request is not None:
        return guarded(lambda: _run_check(request), traceback)
    return guarded(lambda: _run_click(args), traceback)


def _run_brokered(args: list[str]) -> int | None:
    """The exit status of `args` run by the configured broker; None: no broker is
    configured, or this command runs in this process all the same."""
    import os

    from guardctl.broker import client

    path = client.broker_path(os.environ)
    if path is None or client.runs_here(args):
        return None
    return client.run(args, path)


def _run_warm(args: list[str]) -> int | None:
    """The exit status of a fork server's worker that ran `args`; None: run them here."""
    from guardctl.broker.forkclient import run_warm

    return run_warm(args)


def is_kubectl(first: str) -> bool:
    from guardctl.commands import guardctl_commands

    return first == "kubectl" or first not in guardctl_commands()


def _run_kubectl(args: list[str]) -> int:
    from guardctl.env import Environment
    from guardctl.running.invoke import run_kubectl

    return run_kubectl(Environment(), args)


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


def _run_check(request: CheckRequest) -> int:
    from guardctl.app import run_check
    from guardctl.env import Environment

    return run_check(Environment(), request)


def _run_click(args: list[str]) -> int:
    from guardctl.cli import run

    return run(args)


def guarded(call: Callable[[], T], traceback: bool = False) -> T | int:
    """Run `call`; a GuardError becomes its one-line message and exit status, never a traceback."""
    try:
        return call()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the boundary
        return _failed(exc, traceback)


def _failed(exc: BaseException, traceback: bool) -> int:
    """The message and exit status for what `call` raised (imported only when needed: the
    fork client's path has nothing else to import them for)."""
    from guardctl.errors import GuardError
    from guardctl.status import ExitStatus

    if isinstance(exc, GuardError):
        _error(f"guardctl: {exc}")
        return exc.exit_status
    if isinstance(exc, KeyboardInterrupt):
        _error("guardctl: interrupted")
        return ExitStatus.INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return ExitStatus.OK
    if traceback:
        raise exc
    _error(f"guardctl: internal error: {type(exc).__name__}: {exc} (rerun with --traceback)")
    return ExitStatus.ERROR


def _error(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
