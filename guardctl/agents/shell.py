"""`guardctl sh -c LINE`: the shell firewall an agent's shell tool can be pointed at.

The whole line is decided first, with the same rules as `guardctl check`; a denied line runs
none of its parts, and a flagged one needs ONE approval for the whole line. Then bash runs
it with a private folder first on PATH that holds a `kubectl` shim, so every kubectl the
line actually starts (also one built from variables, loops or `eval`) comes back through
guardctl with its real words: decided again, masked and recorded, all in one session.

A static check can only see what the text says; the run-time check sees what really runs.
The shim only catches a kubectl that bash looks up on PATH, so a line that could start
kubectl another way is denied here (table `guardctl/data/shell_routes.json`): kubectl
called by a path (`/usr/bin/kubectl`, `./kubectl`, `K=/usr/bin/kubectl`), PATH changes,
`command -p`, `env -i`, `hash`, and wrappers such as sudo that bring their own PATH.
Denying rather than rewriting the path to guardctl: a rewrite has to find every spelling
of a path (quotes, variables, nested strings) to be right, a denial only has to notice
one, and its reason tells the agent the one-word fix (call kubectl by name).

What the shim cannot see: a program that runs kubectl by path itself (a script file, a
Python subprocess). Such a kubectl runs without guardctl's short-lived credentials, which
only guardctl hands out, so it has nothing to reach the cluster with.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, Any, Protocol

from guardctl.agents.bash import run_bash
from guardctl.app import Checker
from guardctl.approvals import grants
from guardctl.bundled import data_text
from guardctl.env import Environment
from guardctl.firewall.parse import parse
from guardctl.model import Action, Decision, ParsedLine, RuleHit, SimpleCommand
from guardctl.status import ExitStatus


class Outcome(Protocol):
    """What an approval request answers (guardctl.approvals.queue.Outcome)."""

    @property
    def approved(self) -> bool: ...

    @property
    def reason(self) -> str: ...


Approver = Callable[[Environment, Decision, str], Outcome]


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class _Routes:
    """The table of ways a kubectl could miss the shim (shell_routes.json)."""

    kubectl: str
    by_path: RuleHit
    by_path_regex: re.Pattern[str]
    patterns: tuple[tuple[re.Pattern[str], RuleHit], ...]
    programs: dict[str, RuleHit]
    wrappers: frozenset[str]
    wrapper_hit: RuleHit


def _hit(entry: dict[str, Any]) -> RuleHit:
    return RuleHit(id=entry["id"], action=Action.DENY, reason=entry["reason"])


@lru_cache(maxsize=1)
def _routes() -> _Routes:
    table = json.loads(data_text("shell_routes.json"))
    wrappers = table["path_resetting_wrappers"]
    return _Routes(
        kubectl=table["kubectl"],
        by_path=_hit(table["kubectl_by_path"]),
        by_path_regex=re.compile(table["kubectl_by_path"]["regex"]),
        patterns=tuple((re.compile(p["regex"]), _hit(p)) for p in table["patterns"]),
        programs={name: _hit(entry) for name, entry in table["programs"].items()},
        wrappers=frozenset(wrappers["names"]),
        wrapper_hit=_hit(wrappers),
    )


def decide_line(checker: Checker, line: str) -> Decision:
    """The policy's decision for LINE, made stricter where a kubectl could miss the shim."""
    parsed = parse(line)
    return with_routes(parsed, checker.decide(parsed))


def with_routes(parsed: ParsedLine, decision: Decision) -> Decision:
    """`decision`, or a denial when a kubectl in the line could start without the shim."""
    if decision.action is Action.DENY:
        return decision
    hit = routing_hit(parsed)
    if hit is None:
        return decision
    return Decision(
        action=Action.DENY,
        reason=f"denied by rule {hit.id}: {hit.reason}",
        commands=decision.commands,
        problems=(*decision.problems, hit.reason),
    )


def routing_hit(parsed: ParsedLine) -> RuleHit | None:
    """Why a kubectl in this line could start without passing the shim; None when none can."""
    routes = _routes()
    for command in parsed.commands:
        found = _command_hit(routes, command)
        if found is not None:
            return found
    if routes.by_path_regex.search(parsed.line):
        return routes.by_path
    return next((hit for regex, hit in routes.patterns if regex.search(parsed.line)), None)


def _command_hit(routes: _Routes, command: SimpleCommand) -> RuleHit | None:
    words = (*command.argv, *(value for _, value in command.assignments))
    if _program_by_path(routes.kubectl, command) or any(
        routes.by_path_regex.search(word) for word in words
    ):
        return routes.by_path
    if command.program in routes.programs:
        return routes.programs[command.program]
    if command.program == routes.kubectl and any(
        wrapper.split(" ", 1)[0] in routes.wrappers for wrapper in command.via
    ):
        return routes.wrapper_hit
    return None


def _program_by_path(kubectl: str, command: SimpleCommand) -> bool:
    """A program word with a slash that is, or (as a glob) may expand to, kubectl."""
    if not command.argv or "/" not in command.argv[0]:
        return False
    if 0 in command.dynamic:
        return fnmatch.fnmatchcase(kubectl, command.program)
    return command.program == kubectl


def approved_commands(decision: Decision) -> list[grants.Approved]:
    """The kubectl commands a human approves with the line, as the run path will see them.

    Only commands fully known statically: one with a problem (a `$verb`) has no words the
    run-time argv could be compared with, so it is asked about again when it runs.
    """
    return [
        grants.Approved(argv=c.argv[1:], rule_ids=frozenset(h.id for h in c.hits))
        for c in decision.commands
        if c.action is Action.APPROVE and c.call is not None and not c.problems and c.hits
    ]


# --------------------------------------------------------------------------- running


def run_shell(env: Environment, line: str, *, approve: Approver | None = None) -> int:
    """Decide LINE, ask once when flagged, run it with bash; returns bash's exit status.

    11 when denied, 12 when the approval was declined or timed out; nothing of the line
    runs in either case. `approve` defaults to `guardctl.approvals.flow.request_approval`.
    """
    decision = decide_line(Checker.load(env), line)
    env.stdout.flush()
    if decision.action is Action.DENY:
        _say(env, f"guardctl: {decision.reason} Nothing was run.")
        return ExitStatus.DENIED
    token = ""
    if decision.action is Action.APPROVE:
        refusal = _ask(env, decision, line, approve)
        if refusal is not None:
            _say(env, f"guardctl: {refusal} Nothing was run.")
            return ExitStatus.DECLINED
        token = grants.grant(env, approved_commands(decision))
    try:
        if env.caller is not None:
            # through a broker: bash runs on the client's side, as the agent
            env.caller.grant(token, line)
            status = env.caller.wait_bash()
            return ExitStatus.UNSAFE if status is None else status
        return run_bash(env.environ, line, token, (_fd(env.stdin, 0), _fd(env.stdout, 1),
                                                  _fd(env.stderr, 2)))
    finally:
        if token:
            grants.revoke(env, token)


def _fd(stream: IO[str], default: int) -> int:
    """The descriptor under a stream; the process's own when the stream has none."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return default


def _ask(env: Environment, decision: Decision, line: str, approve: Approver | None) -> str | None:
    """None when a human approved the line; otherwise what to tell the agent."""
    outcome = (approve or _request_approval)(env, decision, line)
    if outcome.approved:
        return None
    return f"approval declined: {outcome.reason or 'no reason given'}."


def _request_approval(env: Environment, decision: Decision, line: str) -> Outcome:
    """guardctl's approval flow for the whole line, on the configured cluster."""
    from guardctl.approvals.flow import request_approval
    from guardctl.config import load_config

    config = load_config(env.config_path)
    return request_approval(env, decision, line, cluster=config.server if config else "")


def _say(env: Environment, message: str) -> None:
    env.stderr.write(message + "\n")
    env.stderr.flush()
