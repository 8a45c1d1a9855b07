"""guardctl's entry point: which process runs a command, and how.

`guardctl ARGS…` whose first word is not one of guardctl's own commands is a kubectl
invocation. It is routed here, before click is imported: an agent sends thousands of
kubectl commands, and click's import is a fifth of guardctl's start-up. So is
`guardctl check` in the plain spellings an agent or a hook uses; any other spelling
(`--help`, an unknown option, a missing LINE) goes to click, which owns the messages.
guardctl's own commands go to `cli`, the only module that imports click.

Before all that: with a broker configured, the command goes to the broker (`broker.client`)
and nothing runs here; without one, a command from an agent (no terminal) is offered to the
fork server (`forkclient`), whose warm worker runs this same `main`. Those paths import
nothing but this module and the clients: not even `typing`, which costs a tenth of a warm
run. The words are read (`routing`) without click, and errors end in `routing.guarded`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy knows the name
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

    from guardctl.app import CheckRequest


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = _run_brokered(args)
    if code is not None:
        return _end(code) if argv is None else code
    from guardctl.broker.forkclient import OWN_OPTIONS
    from guardctl.routing import guarded, is_kubectl, plain_check

    traceback = "--traceback" in args[:1]
    if argv is None:
        code = guarded(lambda: _run_warm(args))
        if code is not None:
            return _end(code)
    if args and args[0] not in OWN_OPTIONS and is_kubectl(args[0]):
        # `guardctl kubectl ARGS` forces the kubectl reading of ARGS
        kubectl_args = args[1:] if args[0] == "kubectl" else args
        return guarded(lambda: _run_kubectl(kubectl_args), traceback)
    request = plain_check(args[1:]) if args[:1] == ["check"] else None
    if request is not None:
        return guarded(lambda: _run_check(request), traceback)
    return guarded(lambda: _run_click(args), traceback)


def _end(code: int) -> NoReturn:
    """End this process with `code` at once, once a broker's or fork server's worker ran the
    command: a client holds nothing to clean up, and the interpreter's own shutdown would
    cost as much as the client's whole work. Never returns."""
    import os

    from guardctl.routing import flush_standard_streams

    flush_standard_streams()
    os._exit(code)


def _run_brokered(args: list[str]) -> int | None:
    """The exit status of `args` run by the configured broker; None: no broker is
    configured, or this command runs in this process all the same. Imports nothing but
    the client: the broker does the rest."""
    import os

    from guardctl.runtime import broker_path

    path = broker_path(os.environ)
    if path is None:
        return None
    from guardctl.broker import client

    if client.runs_here(args):
        return None
    return client.run(args, path)


def _run_warm(args: list[str]) -> int | None:
    """The exit status of a fork server's worker that ran `args`; None: run them here."""
    from guardctl.broker.forkclient import run_warm

    return run_warm(args)


def _run_kubectl(args: list[str]) -> int:
    from guardctl.env import Environment
    from guardctl.running.invoke import run_kubectl

    return run_kubectl(Environment(), args)


def _run_check(request: CheckRequest) -> int:
    from guardctl.app import run_check
    from guardctl.env import Environment

    return run_check(Environment(), request)


def _run_click(args: list[str]) -> int:
    from guardctl.cli import run

    return run(args)
