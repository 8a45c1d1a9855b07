"""The Claude Code PreToolUse hook, fed recorded payloads (tests/data/hooks/*.json)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from guardctl.agents.hook import SETTINGS_SNIPPET, claude_code, routed_command
from guardctl.agents.shim import PINNED, pinned
from guardctl.env import Environment
from guardctl.runtime import launcher

PAYLOADS = Path(__file__).parent / "data" / "hooks"
SESSION = "GUARDCTL_SESSION=claude-9b1f6c1e-3a5d-4c2b-8f7e-1d2c3b4a5e6f"


def _env(**extra: str) -> Environment:
    return Environment(environ={**os.environ, **extra})


def _payload(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return payload


def _answer(text: str, env: Environment | None = None) -> dict[str, Any] | None:
    """The hook's hookSpecificOutput, or None for no opinion; the exit code is always 0."""
    out, code = claude_code(env or _env(), text)
    assert code == 0
    if not out:
        return None
    answer: dict[str, Any] = json.loads(out)["hookSpecificOutput"]
    assert answer["hookEventName"] == "PreToolUse"
    return answer


def _routed_line(command: str, pin: dict[str, str] | None = None) -> str:
    """The original line inside a rewritten `env [PINS] GUARDCTL_SESSION=… guardctl sh -c LINE`
    (`pin`: the settings the hook saw, given to the line whatever its shell has)."""
    words = shlex.split(command)
    prefix = [*(pinned(pin) if pin is not None else ["env"]), SESSION]
    assert words[: len(prefix)] == prefix
    assert words[len(prefix) : -1] == [*launcher(), "sh", "-c"]
    return words[-1]


@pytest.mark.parametrize(
    ("name", "permission", "reason_has"),
    [
        ("bash_get_pods.json", "allow", "masks and records"),
        ("bash_get_pods_then_build.json", "ask", "yours to judge"),
        ("bash_secret_yaml.json", "allow", "read-secret-values"),  # guardctl asks the human
        ("bash_delete_namespace.json", "deny", "denied by rule delete-namespace"),
        ("bash_kubectl_by_path.json", "deny", "call kubectl by name"),
    ],
)
def test_recorded_payloads(name: str, permission: str, reason_has: str) -> None:
    payload = _payload(name)
    answer = _answer(json.dumps(payload))
    assert answer is not None
    assert answer["permissionDecision"] == permission
    assert reason_has in answer["permissionDecisionReason"]
    if permission == "deny":
        assert "updatedInput" not in answer
        return
    updated = answer["updatedInput"]
    assert _routed_line(updated["command"], dict(os.environ)) == payload["tool_input"]["command"]
    assert updated["description"] == payload["tool_input"]["description"]


def test_flagged_line_gets_the_longest_tool_timeout() -> None:
    answer = _answer((PAYLOADS / "bash_secret_yaml.json").read_text())
    assert answer is not None and answer["updatedInput"]["timeout"] == 600000
    allowed = _answer((PAYLOADS / "bash_get_pods.json").read_text())
    assert allowed is not None and "timeout" not in allowed["updatedInput"]


@pytest.mark.parametrize("name", ["bash_no_kubectl.json", "read_tool.json"])
def test_no_opinion(name: str) -> None:
    assert _answer((PAYLOADS / name).read_text()) is None


@pytest.mark.parametrize(
    "line",
    [
        "python3 -c 'import os; os.system(\"kubectl delete ns prod\")'",
        "ssh bastion <<EOF\nkubectl delete ns prod\nEOF",
        "kubectl-foo delete everything",
    ],
)
def test_a_line_that_hides_kubectl_gets_an_opinion(line: str) -> None:
    # no `kubectl` word of its own, yet it reaches kubectl: guardctl runs it and asks a human
    payload = {**_payload("bash_no_kubectl.json")}
    payload["tool_input"] = {**payload["tool_input"], "command": line}
    answer = _answer(json.dumps(payload))
    assert answer is not None
    assert "hidden-kubectl" in answer["permissionDecisionReason"]
    assert _routed_line(answer["updatedInput"]["command"], dict(os.environ)) == line


def test_other_events_get_no_opinion() -> None:
    payload = {**_payload("bash_delete_namespace.json"), "hook_event_name": "PostToolUse"}
    assert _answer(json.dumps(payload)) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not JSON"),
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"tool_name": "Bash", "tool_input": {"command": "ls"}}', "hook_event_name"),
        ('{"hook_event_name": "PreToolUse", "tool_name": 3}', "tool_name"),
        ('{"hook_event_name": "PreToolUse", "tool_name": "Bash"}', "tool_input.command"),
        ('{"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": 1}}',
         "tool_input.command"),
    ],
)
def test_malformed_input_is_denied(text: str, says: str) -> None:
    answer = _answer(text)
    assert answer is not None and answer["permissionDecision"] == "deny"
    assert says in answer["permissionDecisionReason"]


def test_broken_rules_deny_instead_of_crashing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [ {id: x, action: maybe}")
    text = (PAYLOADS / "bash_get_pods.json").read_text()
    answer = _answer(text, _env(GUARDCTL_RULES=str(broken)))
    assert answer is not None and answer["permissionDecision"] == "deny"
    assert "could not check" in answer["permissionDecisionReason"]


@pytest.mark.parametrize(
    "line",
    ["kubectl get pods -l 'app=it'\"'\"'s'", 'kubectl get cm -o jsonpath="{.data}" | grep "$X"',
     "kubectl get pods\nkubectl get svc"],
)
def test_routed_command_quotes_any_line(line: str) -> None:
    assert _routed_line(routed_command(line, "9b1f6c1e-3a5d-4c2b-8f7e-1d2c3b4a5e6f")) == line


@pytest.mark.parametrize("session_id", [None, "", "../../etc", "x" * 200, 42])
def test_unusable_session_ids_are_left_out(session_id: object) -> None:
    words = shlex.split(routed_command("kubectl get pods", session_id))
    assert words == [*launcher(), "sh", "-c", "kubectl get pods"]


def test_settings_snippet_registers_the_hook_for_bash() -> None:
    (entry,) = json.loads(SETTINGS_SNIPPET)["hooks"]["PreToolUse"]
    assert entry["matcher"] == "Bash"
    assert entry["hooks"][0]["command"] == "guardctl hook claude-code"


def test_the_rewritten_line_keeps_the_hooks_settings_whatever_the_shell_exports(
    tmp_path: Path,
) -> None:
    # an agent's earlier `export GUARDCTL_RULES=…` must not loosen the line it runs next
    loose = tmp_path / "loose.yaml"
    loose.write_text("rules:\n  - {id: delete-namespace, disabled: true}\n")
    command = routed_command("kubectl delete ns prod", "s1", pin=dict(os.environ))
    words = shlex.split(command)
    assert all(f"-u {name}" in command or f"{name}=" in command for name in PINNED)
    assert words[0].endswith("/env")
    import subprocess

    proc = subprocess.run(
        ["bash", "-c", f"export GUARDCTL_RULES={loose} HOME={tmp_path}; {command}"],
        capture_output=True, timeout=60,
    )
    assert proc.returncode == 11 and b"delete-namespace" in proc.stderr
