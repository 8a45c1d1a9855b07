"""What a broker's worker runs for one request, by the caller's role.

An agent may run kubectl (`guardctl ARGS`, `guardctl kubectl ARGS`), `check`, `mask`, the
Claude Code hook, `sh -c` (decided here, bash runs on its side) and `broker status`;
anything else is refused with exit 11, as the self-protection rules deny it in a line. An
approver may run every command but those that belong in the client's own process. Each
command takes guardctl's usual path with an Environment whose `caller` is the client: its
files are read through it, and it is recorded as the one who asked.
"""

import os
from collections.abc import Callable

from guardctl.accounts import user_name
from guardctl.broker.caller import Caller
from guardctl.broker.client import LOCAL_COMMANDS
from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.status import ExitStatus

AGENT_COMMANDS = frozenset({"check", "mask", "hook", "sh", "kubectl"})


# runs one of guardctl's own commands (click's `cli.run`), given to the server by `cli`
Commands = Callable[[list[str], Environment], int]


def run_request(
    caller: Caller, args: list[str], environ: dict[str, str], commands: Commands
) -> int:
    """Run `guardctl ARGS` for `caller` with `environ` (the broker's variables); the exit
    status (one-line errors, never a traceback)."""
    from guardctl.routing import guarded

    env = Environment(environ=environ, caller=caller)
    code = guarded(lambda: _dispatch(env, caller, args, commands))
    return int(code)


def _dispatch(env: Environment, caller: Caller, args: list[str], commands: Commands) -> int:
    from guardctl.routing import is_kubectl

    first = args[0] if args else ""
    if args[:2] == ["broker", "status"]:
        return _status(env, caller)
    # run in the client's own process; a client never sends them
    if first in LOCAL_COMMANDS or args[:2] == ["broker", "serve"]:
        raise UsageError(f"`guardctl {first}` runs in your own process, not in the broker")
    if first and first not in ("-h", "--help") and is_kubectl(first):
        from guardctl.running.invoke import run_kubectl

        return run_kubectl(env, args[1:] if first == "kubectl" else args)
    if first == "check":
        return _check(env, args[1:], commands)
    if first in AGENT_COMMANDS or caller.is_approver or not args or first in ("-h", "--help"):
        return commands(args, env)
    env.stderr.write(
        f"guardctl: `guardctl {first}` is for the approver; the broker sees you as "
        f"{caller.describe()}. Nothing was run.\n"
    )
    return ExitStatus.DENIED


def _check(env: Environment, words: list[str], commands: Commands) -> int:
    from guardctl.app import run_check
    from guardctl.routing import plain_check

    if any(w == "--rules" or w.startswith("--rules=") for w in words):
        raise UsageError("--rules cannot be given to the broker: its own rules decide")
    request = plain_check(words)
    if request is None:
        return commands(["check", *words], env)
    return run_check(env, request)


def _status(env: Environment, caller: Caller) -> int:
    env.stdout.write(
        f"broker: reachable, running as {user_name(os.getuid())} (uid {os.getuid()})\n"
        f"you: {caller.describe()}\n"
    )
    return ExitStatus.OK
