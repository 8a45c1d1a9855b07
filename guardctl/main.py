"""guardctl's entry point: routing and the one error boundary.

`guardctl ARGS…` whose first word is not one of guardctl's own commands is a kubectl
invocation. It is routed here, before click is imported: an agent sends thousands of
kubectl commands, and click's import is a fifth of guardctl's start-up. guardctl's own
commands go to `cli`, the only module that imports click.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from guardctl.errors import GuardError
from guardctl.status import ExitStatus

GUARDCTL_OPTIONS = frozenset({"-h", "--help", "--version", "--traceback"})


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in args[:1]
    if args and args[0] not in GUARDCTL_OPTIONS and _is_kubectl(args[0]):
        # `guardctl kubectl ARGS` forces the kubectl reading of ARGS
        kubectl_args = args[1:] if args[0] == "kubectl" else args
        return guarded(lambda: _run_kubectl(kubectl_args), traceback)
    return guarded(lambda: _run_click(args), traceback)


def _is_kubectl(first: str) -> bool:
    from guardctl.normalize import guardctl_commands

    return first == "kubectl" or first not in guardctl_commands()


def _run_kubectl(args: list[str]) -> int:
    from guardctl.env import Environment
    from guardctl.invoke import run_kubectl

    return run_kubectl(Environment(), args)


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
