"""`guardctl hook claude-code`: a Claude Code PreToolUse hook for the Bash tool.

Claude Code runs the hook before each Bash command, with a JSON payload on stdin
(`session_id`, `transcript_path`, `cwd`, `hook_event_name`, `tool_name`, `tool_input`
with `command`), and reads a JSON answer on stdout (exit 0):
`{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": …,
"permissionDecisionReason": …, "updatedInput": …}}`. Empty output means no opinion.

What guardctl answers:

* denied lines: `deny`, with the rule and reason (Claude Code shows it to the model);
* lines with kubectl that guardctl allows, and every flagged line: the command is rewritten
  (`updatedInput`) to `guardctl sh -c '<the line>'`, so each kubectl in it is checked again
  at run time with its real words, its output masked and recorded, in one guardctl session
  per Claude Code session. The answer is `allow` when the line is only kubectl and text
  filters (`grep`, `head`, `jq`, …; table `data/claude_hook.json`), `ask` when it also runs
  other programs, so the human still judges those in Claude Code's own prompt;
* lines without kubectl that guardctl allows, and other tools: no opinion;
* input that is not a PreToolUse payload guardctl can read: `deny` (a crashing hook would
  let the command run, so every error becomes a denial).

Why a flagged line goes to guardctl's approval flow and not to Claude Code's `ask`: the
approval must be guardctl's to count. guardctl's request shows the rules that fired, the
namespace and a server-side diff, honours approval windows, times out, and the audit log
records who approved; Claude Code's prompt leaves no trace in guardctl's records. And the
rewritten line is decided again when it runs: after an `ask` the human would be asked a
second time by guardctl, while after guardctl's own approval `sh` hands the run-time check
a one-time grant (`preapproved.py`) and nobody is asked twice. The cost: the human answers
in `guardctl approvals` (or guardctl's terminal prompt), not in Claude Code's window, so
the hook raises the Bash tool's timeout to its maximum (10 minutes) for flagged lines.

Known limit: the line runs in a child bash, so a `cd` or `export` in a routed line does
not carry over to Claude Code's next command.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from guardctl.bundled import data_text
from guardctl.env import Environment
from guardctl.errors import GuardError
from guardctl.model import Action, Decision, ParsedLine

EVENT = "PreToolUse"
TOOL = "Bash"
SESSION_PREFIX = "claude-"
ALLOWED_REASON = "guardctl: allowed; it runs through guardctl, which masks and records its output."
MIXED_REASON = (
    "guardctl allows the kubectl part and runs the line through guardctl; "
    "the other programs in it are yours to judge."
)

SETTINGS_SNIPPET = """\
{
  "hooks": {
    "PreToolUse": [
      {
        "matcher": "Bash",
        "hooks": [
          {"type": "command", "command": "guardctl hook claude-code", "timeout": 30}
        ]
      }
    ]
  }
}
"""


class _Malformed(Exception):
    """The payload is not one guardctl can read; the message says what is wrong."""


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads(data_text("claude_hook.json"))
    return table


def claude_code(env: Environment, stdin_text: str) -> tuple[str, int]:
    """The hook's answer (stdout text, exit code) for one PreToolUse payload."""
    try:
        return _answer(env, stdin_text), 0
    except _Malformed as exc:
        return _decision("deny", f"guardctl: unreadable hook input ({exc}); not run."), 0
    except GuardError as exc:
        return _decision("deny", f"guardctl could not check this command: {exc}; not run."), 0
    except Exception as exc:  # noqa: BLE001 - a failing hook lets the command run: deny instead
        reason = f"guardctl could not check this command ({type(exc).__name__}: {exc}); not run."
        return _decision("deny", reason), 0


def _answer(env: Environment, text: str) -> str:
    payload = _payload(text)
    if payload["hook_event_name"] != EVENT or payload["tool_name"] != TOOL:
        return ""
    tool_input = payload.get("tool_input")
    if not isinstance(tool_input, dict) or not isinstance(tool_input.get("command"), str):
        raise _Malformed("tool_input.command is not a string")
    line: str = tool_input["command"]
    parsed, decision = _decide(env, line)
    if decision.action is Action.ALLOW and not _runs_kubectl(decision):
        return ""
    from guardctl.agents.shell import with_routes

    decision = with_routes(parsed, decision)
    if decision.action is Action.DENY:
        return _decision("deny", f"guardctl: {decision.reason}")
    # through a broker, the rewritten line runs on the agent's side with its own guardctl,
    # and the broker holds the settings; here, the line runs with Claude Code's settings
    # (this hook's), whatever the agent exported since
    if env.caller is not None:
        words, pin = (list(env.caller.launcher) or None), None
    else:
        words, pin = None, env.environ
    command = routed_command(line, payload.get("session_id"), words, pin)
    routed = {**tool_input, "command": command}
    if decision.action is Action.APPROVE:
        routed["timeout"] = _table()["bash_tool_max_timeout_ms"]
        reason = f"guardctl: {decision.reason} guardctl asks a human before it runs."
        return _decision("allow", reason, routed)
    if _only_kubectl_and_filters(parsed):
        return _decision("allow", ALLOWED_REASON, routed)
    return _decision("ask", MIXED_REASON, routed)


def _payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise _Malformed(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise _Malformed("not a JSON object")
    for key in ("hook_event_name", "tool_name"):
        if not isinstance(payload.get(key), str):
            raise _Malformed(f"{key} is missing or not a string")
    return payload


def _decide(env: Environment, line: str) -> tuple[ParsedLine, Decision]:
    from guardctl.app import Checker
    from guardctl.firewall.parse import parse

    parsed = parse(line)
    return parsed, Checker.load(env).decide(parsed)


def _runs_kubectl(decision: Decision) -> bool:
    return any(command.call is not None for command in decision.commands)


def _only_kubectl_and_filters(parsed: ParsedLine) -> bool:
    """Every command is kubectl or a text filter, and none writes a file."""
    filters = frozenset(_table()["text_filters"])
    return all(
        (c.program == "kubectl" or c.program in filters) and not c.writes
        for c in parsed.commands
    )


def routed_command(
    line: str, session_id: object = None, launcher_words: list[str] | None = None,
    pin: Mapping[str, str] | None = None,
) -> str:
    """`guardctl sh -c LINE`, quoted for bash, in the Claude Code session's guardctl session.

    `launcher_words` start guardctl where the line runs (default: this guardctl); `pin`
    gives it those settings (shim.PINNED) whatever the shell it runs in has."""
    from guardctl.agents.shim import pinned
    from guardctl.runtime import launcher

    session = _session(session_id)
    prefix = pinned(pin) if pin is not None else []
    words = [*(launcher_words or launcher()), "sh", "-c", line]
    if session:
        prefix = prefix or ["env"]
        prefix.append(f"GUARDCTL_SESSION={session}")
    return shlex.join([*prefix, *words])


def _session(session_id: object) -> str:
    """`claude-<session_id>` when that is a valid guardctl session id, else ""."""
    from guardctl.recording.recorder import check_session_id

    if not isinstance(session_id, str) or not session_id:
        return ""
    try:
        return check_session_id(SESSION_PREFIX + session_id)
    except GuardError:
        return ""


def _decision(permission: str, reason: str, updated_input: dict[str, Any] | None = None) -> str:
    output: dict[str, Any] = {
        "hookEventName": EVENT,
        "permissionDecision": permission,
        "permissionDecisionReason": reason,
    }
    if updated_input is not None:
        output["updatedInput"] = updated_input
    return json.dumps({"hookSpecificOutput": output})
