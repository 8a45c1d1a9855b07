"""The MCP server, driven by the SDK's own stdio client against the embedded API server.

Credentials are imported into a file keyring in a temporary folder, as in test_e2e.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters  # noqa: E402

from guardctl.agents.mcp import run_timeout
from guardctl.devserver import DevServer  # noqa: E402
from guardctl.running.child import run_guardctl

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
AGENT = "system:serviceaccount:guardctl:guardctl-agent"
REPO = Path(__file__).resolve().parent.parent
CALL_SECONDS = 60


def _session(env: dict[str, str], calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Start `python -m guardctl.agents.mcp`, make the calls in order, return the results."""

    async def talk() -> list[Any]:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "guardctl.agents.mcp"], env=env, cwd=str(REPO)
        )
        with anyio.fail_after(CALL_SECONDS * (len(calls) + 1)):
            async with Client(params, read_timeout_seconds=CALL_SECONDS) as client:
                results: list[Any] = []
                for name, arguments in calls:
                    if name == "list_tools":
                        results.append(await client.list_tools())
                    else:
                        results.append(await client.call_tool(name, arguments))
                return results

    return anyio.run(talk)


def test_lists_both_tools_and_checks_lines(agent_env: dict[str, str]) -> None:
    listing, denied, allowed, flagged = _session(
        agent_env,
        [
            ("list_tools", {}),
            ("check", {"line": "kubectl delete namespace prod"}),
            ("check", {"line": "kubectl get pods -n dev | grep web"}),
            ("check", {"line": "kubectl exec -it web -n dev -- sh"}),
        ],
    )
    tools = {tool.name: tool for tool in listing.tools}
    assert set(tools) == {"check", "kubectl"}
    schema = tools["kubectl"].input_schema
    assert schema["required"] == ["args"]
    assert schema["properties"]["args"]["items"] == {"type": "string"}
    assert tools["check"].input_schema["required"] == ["line"]
    assert not denied.is_error
    assert denied.structured_content["decision"] == "deny"
    rules = denied.structured_content["commands"][0]["rules"]
    assert [r["id"] for r in rules] == ["delete-namespace"]
    assert allowed.structured_content["decision"] == "allow"
    assert allowed.structured_content["commands"][0]["argv"] == [
        "kubectl",
        "get",
        "pods",
        "-n",
        "dev",
    ]
    assert flagged.structured_content["decision"] == "approve"


def test_check_with_broken_rules_is_a_tool_error(agent_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  action: maybe\n")
    (result,) = _session(
        {**agent_env, "GUARDCTL_RULES": str(bad)}, [("check", {"line": "kubectl get pods"})]
    )
    assert result.is_error
    assert "bad.yaml" in result.content[0].text
    assert result.structured_content is None or "decision" not in result.structured_content


@needs_kubectl
def test_kubectl_reads_are_run_and_deletes_are_denied(
    agent_env: dict[str, str], devserver: DevServer
) -> None:
    # the first run mints and caches the agent's token as admin; count requests after it
    _session(agent_env, [("kubectl", {"args": ["version"]})])
    devserver.clear_requests()
    (read,) = _session(agent_env, [("kubectl", {"args": ["get", "pods", "-n", "dev"]})])
    assert read.structured_content["exit_code"] == 0, read.structured_content["stderr"]
    assert "web-7d4b9c8f6d-x2k9p" in read.structured_content["stdout"]
    assert {user for _, _, user in devserver.requests} == {AGENT}

    devserver.clear_requests()
    (denied,) = _session(agent_env, [("kubectl", {"args": ["delete", "namespace", "prod"]})])
    assert not denied.is_error
    assert denied.structured_content["exit_code"] == 11
    assert "delete-namespace" in denied.structured_content["stderr"]
    assert denied.structured_content["stdout"] == ""
    assert devserver.requests == []


@needs_kubectl
def test_kubectl_stdin_manifest_and_masked_logs(agent_env: dict[str, str]) -> None:
    manifest = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-mcp\n"
        "  namespace: dev\ndata:\n  a: b\n"
    )
    applied, logs = _session(
        agent_env,
        [
            ("kubectl", {"args": ["apply", "-f", "-"], "stdin": manifest}),
            ("kubectl", {"args": ["logs", "web-7d4b9c8f6d-x2k9p", "-n", "dev"]}),
        ],
    )
    assert applied.structured_content["exit_code"] == 0, applied.structured_content["stderr"]
    assert "configmap/from-mcp created" in applied.structured_content["stdout"]
    assert logs.structured_content["exit_code"] == 0
    assert "DATABASE_URL=postgres://app:" in logs.structured_content["stdout"]
    assert "s3cr3t-p4ss" not in logs.structured_content["stdout"]


def _fake_kubectl(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-kube"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@needs_kubectl
@pytest.mark.parametrize(
    ("body", "limit", "timeout", "expect_code", "expect_stderr"),
    [
        ("/usr/bin/seq 1 100000", 1000, 60.0, 0, "output cut at 1000 bytes"),
        ("/bin/sleep 30", 1000, 1.0, 128 + 15, "stopped after 1 s"),
    ],
)
def test_child_runs_are_bounded(
    agent_env: dict[str, str],
    tmp_path: Path,
    body: str,
    limit: int,
    timeout: float,
    expect_code: int,
    expect_stderr: str,
) -> None:
    _session(agent_env, [("kubectl", {"args": ["version"]})])  # a fresh token is cached
    env = {**agent_env, "GUARDCTL_KUBECTL": _fake_kubectl(tmp_path, body)}
    started = time.monotonic()
    result = run_guardctl(env, ["kubectl", "get", "pods"], None, timeout, limit=limit)
    assert time.monotonic() - started < timeout + 20
    assert result.exit_code == expect_code, result.stderr
    assert expect_stderr in (result.stdout + result.stderr)
    assert len(result.stdout) <= limit + 100


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 600.0), ("30", 330.0), ("nonsense", 600.0), ("-5", 600.0)],
)
def test_run_timeout_adds_the_approval_wait(value: str | None, expected: float) -> None:
    environ = {} if value is None else {"GUARDCTL_APPROVAL_TIMEOUT": value}
    assert run_timeout(environ) == expected


ANSWERER = """
import sys, time
from pathlib import Path
from guardctl.approvals.queue import Queue, answer
from guardctl.recording.audit import Approver
home = Path(sys.argv[1])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    pending = Queue(home).pending(time.time())
    if pending:
        answer(home, pending[0].id, approved=True,
               approver=Approver(user="human", tty="/dev/pts/7", at=time.time()))
        print(pending[0].line)
        break
    time.sleep(0.1)
"""


@needs_kubectl
def test_kubectl_tool_waits_for_an_approval_from_a_second_process(
    agent_env: dict[str, str],
) -> None:
    env = {**agent_env, "GUARDCTL_APPROVAL_TIMEOUT": "60"}
    human = subprocess.Popen(
        [sys.executable, "-c", ANSWERER, env["GUARDCTL_HOME"]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        (result,) = _session(
            env,
            [("kubectl", {"args": ["get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"]})],
        )
        answered, errors = human.communicate(timeout=60)
    finally:
        human.kill()
    assert "get secret app-secrets" in answered, errors
    out = result.structured_content
    assert out["exit_code"] == 0, out
    assert "approved by human" in out["stderr"]
    assert "AWS_ACCESS_KEY_ID: «masked:" in out["stdout"]
    assert "s3cr3t-p4ss" not in out["stdout"] and "AKIA" not in out["stdout"]


@needs_kubectl
def test_both_tools_go_through_a_broker(broker: Any, tmp_path: Path) -> None:
    # the MCP server is the broker's client: its own rules variable counts for nothing
    loose = tmp_path / "loose.yaml"
    loose.write_text("rules:\n  - {id: delete-namespace, disabled: true}\n")
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GUARDCTL_BROKER": str(broker.socket),
        "GUARDCTL_RULES": str(loose), "GUARDCTL_HOME": str(tmp_path / "home"),
    }
    checked, denied, read = _session(
        env,
        [
            ("check", {"line": "kubectl delete namespace prod"}),
            ("kubectl", {"args": ["delete", "namespace", "prod"]}),
            ("kubectl", {"args": ["get", "pods", "-n", "dev", "-o", "name"]}),
        ],
    )
    assert checked.structured_content["decision"] == "deny"
    assert denied.structured_content["exit_code"] == 11
    assert read.structured_content["exit_code"] == 0
    assert read.structured_content["stdout"].startswith("pod/web-")
    assert not (tmp_path / "home").exists()  # nothing was recorded on the client's side


def _approve_the_one_request(env: dict[str, str]) -> str:
    """`guardctl approvals approve` of the one waiting request, as a person's script would
    (through the broker when `env` names one)."""
    import json

    def guardctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "guardctl", *args], env=env, text=True,
                              capture_output=True, timeout=CALL_SECONDS)

    (listed,) = guardctl("approvals", "list", "--json").stdout.splitlines()
    done = guardctl("approvals", "approve", json.loads(listed)["id"])
    assert done.returncode == 0, done.stderr
    return done.stdout


def _progress_while_waiting(
    server_env: dict[str, str], approver_env: dict[str, str]
) -> tuple[Any, str, list[tuple[float, float | None, str | None]]]:
    """A `kubectl` call that waits for a human, made with a progress callback; the human
    answers only once two notifications said the call waits for them. (result, what the
    approver was told, the notifications)."""
    progress: list[tuple[float, float | None, str | None]] = []
    args = ["get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"]

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    def waiting() -> int:
        return sum("waiting up to 60 s for a human" in (m or "") for _, _, m in progress)

    async def talk() -> tuple[Any, str]:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "guardctl.agents.mcp"], env=server_env,
            cwd=str(REPO),
        )
        found: dict[str, Any] = {}
        with anyio.fail_after(CALL_SECONDS * 3):
            async with Client(params, read_timeout_seconds=CALL_SECONDS) as client:

                async def call() -> None:
                    found["result"] = await client.call_tool(
                        "kubectl", {"args": args}, progress_callback=on_progress)

                async with anyio.create_task_group() as group:
                    group.start_soon(call)
                    for _ in range(CALL_SECONDS * 10):
                        if waiting() >= 2:
                            break
                        await anyio.sleep(0.1)
                    answered = await anyio.to_thread.run_sync(
                        lambda: _approve_the_one_request(approver_env))
        return found["result"], answered

    result, answered = anyio.run(talk)
    assert waiting() >= 2, progress
    assert "approved once: kubectl get secret app-secrets" in answered
    assert [p for p, _, _ in progress] == sorted(p for p, _, _ in progress)  # it only grows
    assert any("read-secret-values" in (m or "") for _, _, m in progress)
    return result, answered, progress


@needs_kubectl
def test_a_call_waiting_for_a_human_sends_progress(agent_env: dict[str, str]) -> None:
    env = {**agent_env, "GUARDCTL_APPROVAL_TIMEOUT": "60"}
    result, _, progress = _progress_while_waiting(env, env)
    assert all(total == run_timeout(env) for _, total, _ in progress)
    out = result.structured_content
    assert out["exit_code"] == 0 and "approved by" in out["stderr"], out


@needs_kubectl
def test_a_call_waiting_through_a_broker_sends_progress(
    patient_broker: Any, tmp_path: Path
) -> None:
    through = {"GUARDCTL_BROKER": str(patient_broker.socket)}
    server_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **through}
    result, _, _ = _progress_while_waiting(server_env, {**patient_broker.environ, **through})
    out = result.structured_content
    assert out["exit_code"] == 0 and "approved by root" in out["stderr"], out
    assert "AWS_ACCESS_KEY_ID:" in out["stdout"]
