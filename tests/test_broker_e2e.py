"""The broker end to end: a root-run broker, an unprivileged agent account, the real kubectl
against the devserver. What an agent may do works; the rest is refused, and said so."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
from broker_setup import AGENT, OTHER, Broker

from guardctl.devserver import DevServer

AGENT_SA = "system:serviceaccount:guardctl:guardctl-agent"
REPO = Path(__file__).resolve().parent.parent
CONFIGMAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: dev\n"
    "data:\n  a: b\n"
)


def write_as_agent(broker: Broker, name: str, text: str) -> Path:
    path = broker.work / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    uid = pwd.getpwnam(AGENT).pw_uid
    for item in (path, *path.relative_to(broker.work).parents):
        os.chown(broker.work / item, uid, -1)
    return path


def sessions(broker: Broker) -> list[dict[str, object]]:
    proc = broker.broker_guardctl("sessions", "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_an_agents_read_runs_as_its_service_account(
    broker: Broker, devserver: DevServer
) -> None:
    assert broker.agent("version").returncode == 0  # mints and caches the agent's token
    devserver.clear_requests()
    proc = broker.agent("get", "pods", "-n", "dev")
    assert proc.returncode == 0, proc.stderr
    assert b"web-7d4b9c8f6d-x2k9p" in proc.stdout
    assert {user for _, _, user in devserver.requests} == {AGENT_SA}


def test_the_spares_remove_what_killed_runs_left(broker: Broker) -> None:
    # a worker killed outright leaves its private kubeconfig folder; workers no longer scan
    # for those on the request's path: the spare forked after a request does, while it waits
    from guardctl.running.kubeconfig import PREFIX

    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    runtime = broker.state / "run"
    left = runtime / f"{PREFIX}{dead.pid}-0123456789abcdef"
    left.mkdir(mode=0o700)
    (left / "kubeconfig").write_text("token: left-behind")
    mine = runtime / f"{PREFIX}{os.getpid()}-0123456789abcdef"  # a live process's: kept
    mine.mkdir(mode=0o700)
    try:
        proc = broker.agent("get", "pods", "-n", "dev")
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 20
        while left.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left.exists() and mine.is_dir()
    finally:
        mine.rmdir()


def test_output_is_masked_in_the_broker(broker: Broker) -> None:
    proc = broker.agent("logs", "web-7d4b9c8f6d-x2k9p", "-n", "dev")
    assert proc.returncode == 0, proc.stderr
    assert b"DATABASE_URL=postgres://app:" in proc.stdout
    assert b"s3cr3t-p4ss" not in proc.stdout and "«masked:".encode() in proc.stdout


def test_a_denied_command_reaches_nothing(broker: Broker, devserver: DevServer) -> None:
    devserver.clear_requests()
    proc = broker.agent("delete", "ns", "prod")
    assert proc.returncode == 11
    assert b"delete-namespace" in proc.stderr
    assert devserver.requests == []
    assert broker.admin_kubectl("get", "ns", "prod").returncode == 0


def test_the_audit_log_names_the_agent_and_its_folder(broker: Broker) -> None:
    broker.agent("get", "ns", "-o", "name")
    row = [r for r in sessions(broker) if r["argv"] == ["kubectl", "get", "ns", "-o", "name"]][-1]
    assert row["user"] == AGENT and row["cwd"] == str(broker.work)
    assert row["status"] == "completed" and row["exit_code"] == 0


def test_manifests_are_read_by_the_client_and_applied_from_the_copy(broker: Broker) -> None:
    write_as_agent(broker, "cm.yaml", CONFIGMAP.format(name="from-file"))
    write_as_agent(broker, "tree/a.yaml", CONFIGMAP.format(name="from-tree-a"))
    write_as_agent(broker, "tree/deeper/b.yml", CONFIGMAP.format(name="from-tree-b"))
    proc = broker.agent("apply", "-f", "cm.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"configmap/from-file created\n"
    proc = broker.agent("apply", "-R", "-f", "tree/")
    assert proc.returncode == 0, proc.stderr
    assert b"from-tree-a created" in proc.stdout and b"from-tree-b created" in proc.stdout
    proc = broker.agent("apply", "-f", "-", stdin=CONFIGMAP.format(name="from-stdin").encode())
    assert proc.returncode == 0, proc.stderr
    for name in ("from-file", "from-tree-a", "from-tree-b", "from-stdin"):
        assert broker.admin_kubectl("get", "cm", name, "-n", "dev").returncode == 0


def test_a_file_the_agent_cannot_read_is_never_read_for_it(broker: Broker) -> None:
    secret = broker.state / "root-only.yaml"
    secret.write_text(CONFIGMAP.format(name="root-only-marker"))
    secret.chmod(0o600)
    proc = broker.agent("apply", "-f", str(secret))
    assert proc.returncode != 0
    assert b"root-only-marker" not in proc.stdout + proc.stderr
    assert broker.admin_kubectl("get", "cm", "root-only-marker", "-n", "dev").returncode != 0


def test_a_missing_file_is_kubectls_error(broker: Broker) -> None:
    proc = broker.agent("create", "configmap", "x", "-n", "dev", "--from-file=nope.txt")
    assert proc.returncode == 1
    assert b'the path "nope.txt" does not exist' in proc.stderr


def test_check_uses_the_brokers_rules_and_no_others(broker: Broker) -> None:
    proc = broker.agent("check", "kubectl delete ns prod")
    assert proc.returncode == 11 and b"delete-namespace" in proc.stdout
    loose = write_as_agent(
        broker, "loose.yaml",
        "rules:\n  - id: delete-namespace\n    disabled: true\n",
    )
    proc = broker.agent("check", "--rules", str(loose), "kubectl delete ns prod")
    assert proc.returncode == 2 and b"its own rules decide" in proc.stderr
    proc = broker.agent("check", "--json", "kubectl get pods -n dev")
    assert proc.returncode == 0 and json.loads(proc.stdout)["decision"] == "allow"


@pytest.mark.parametrize(
    "args",
    [
        ("approvals",),
        ("sessions",),
        ("creds", "status"),
        ("audit", "verify"),
        ("rules", "list"),
        ("replay", "anything"),
    ],
    ids=" ".join,
)
def test_the_approvers_commands_are_refused_to_the_agent(
    broker: Broker, args: tuple[str, ...]
) -> None:
    proc = broker.agent(*args)
    assert proc.returncode == 11
    assert f"is for the approver; the broker sees you as {AGENT}".encode() in proc.stderr
    assert proc.stdout == b""


def test_an_account_the_broker_does_not_serve_is_refused(broker: Broker) -> None:
    proc = broker.as_user(OTHER, [str(broker.shared / "bin" / "guardctl"), "get", "pods"])
    assert proc.returncode == 13
    assert b"does not let this account connect" in proc.stderr


def test_an_unreachable_broker_runs_nothing(broker: Broker) -> None:
    proc = broker.agent("get", "pods", extra={"GUARDCTL_BROKER": "/nonexistent/broker.sock"})
    assert proc.returncode == 13
    assert b"cannot be reached" in proc.stderr and b"nothing was run" in proc.stderr
    assert proc.stdout == b""


def test_broker_status_says_who_is_seen_in_which_role(broker: Broker) -> None:
    proc = broker.agent("broker", "status")
    assert proc.returncode == 0
    assert f"you: {AGENT} (uid {pwd.getpwnam(AGENT).pw_uid}, agent)".encode() in proc.stdout
    proc = broker.broker_guardctl("broker", "status", extra={"GUARDCTL_BROKER": str(broker.socket)})
    assert proc.returncode == 0 and b"(uid 0, approver)" in proc.stdout


def test_the_brokers_own_account_in_another_mount_namespace_is_an_agent(broker: Broker) -> None:
    # a sandboxed agent of the same person (bubblewrap, unshare) must not approve
    environ = {**broker.environ, "GUARDCTL_BROKER": str(broker.socket)}
    proc = subprocess.run(
        ["unshare", "--mount", sys.executable, "-m", "guardctl", "broker", "status"],
        env=environ, capture_output=True, timeout=60,
    )
    if proc.returncode != 0 and b"unshare" in proc.stderr:
        pytest.skip("cannot make a mount namespace here")
    assert b"(uid 0, agent)" in proc.stdout
    proc = subprocess.run(
        ["unshare", "--mount", sys.executable, "-m", "guardctl", "sessions"],
        env=environ, capture_output=True, timeout=60,
    )
    assert proc.returncode == 11 and b"is for the approver" in proc.stderr


def test_an_unanswered_approval_changes_nothing(broker: Broker, devserver: DevServer) -> None:
    devserver.clear_requests()
    started = time.monotonic()
    proc = broker.agent("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml")
    assert proc.returncode == 12
    assert b"waiting up to 3 s for a human" in proc.stderr and proc.stdout == b""
    assert time.monotonic() - started < 30
    assert not [r for r in devserver.requests if "secrets" in r[1]]


def test_the_approver_answers_in_guardctl_approvals(broker: Broker) -> None:
    agent = broker.agent_popen("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml")
    console = broker.approver_terminal("approvals")
    try:
        console.expect("asked by")
        console.expect(f"{AGENT} \\(uid")
        console.send("a")
        out, err = agent.communicate(timeout=60)
    finally:
        console.sendcontrol("c") if console.isalive() else None
        console.close(force=True)
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err
    assert b"approved by root" in err
    assert b"AWS_ACCESS_KEY_ID:" in out and "«masked:".encode() in out


def test_sh_runs_bash_as_the_agent_and_kubectl_through_the_broker(broker: Broker) -> None:
    proc = broker.agent("sh", "-c", "id -un; kubectl get ns -o name | head -n 2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == AGENT and lines[1].startswith("namespace/")
    proc = broker.agent("sh", "-c", "touch ran-anyway; kubectl delete ns prod")
    assert proc.returncode == 11 and not (broker.work / "ran-anyway").exists()


def test_kubectl_hidden_in_a_script_is_not_run_unapproved(
    broker: Broker, devserver: DevServer
) -> None:
    devserver.clear_requests()
    line = "python3 -c 'import os; os.system(\"touch ran-anyway; kubectl delete ns prod\")'"
    proc = broker.agent("sh", "-c", line)
    assert proc.returncode == 12, proc.stderr
    assert b"hidden-kubectl" in proc.stderr
    assert not (broker.work / "ran-anyway").exists()
    assert not [r for r in devserver.requests if r[0] == "DELETE"]


def test_an_unknown_command_through_the_broker_is_kubectls_error(broker: Broker) -> None:
    proc = broker.agent("aprovals")
    assert proc.returncode == 1
    assert b'unknown command "aprovals"' in proc.stderr and b"guardctl approvals" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["scale", "deploy", "web", "-n", "dev", "--replicas=00"],
        ["patch", "ns", "dev", "-p", '{"metadata": {"labels": null}}', "--type=merge"],
    ],
)
def test_another_spelling_of_a_flagged_change_is_not_run_unapproved(
    broker: Broker, devserver: DevServer, args: list[str]
) -> None:
    devserver.clear_requests()
    proc = broker.agent(*args)
    assert proc.returncode == 12, proc.stderr
    assert not [r for r in devserver.requests if r[0] in ("PATCH", "PUT", "DELETE")]


def test_the_hook_answers_for_the_agents_side(broker: Broker) -> None:
    payload = {
        "session_id": "s1", "hook_event_name": "PreToolUse", "tool_name": "Bash",
        "tool_input": {"command": "kubectl get pods -n dev"},
    }
    proc = broker.agent("hook", "claude-code", stdin=json.dumps(payload).encode())
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "allow"
    command = answer["updatedInput"]["command"]
    assert " sh -c " in command and broker.python in command
    payload["tool_input"] = {"command": "kubectl delete ns prod"}
    proc = broker.agent("hook", "claude-code", stdin=json.dumps(payload).encode())
    assert json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"


def test_mask_runs_in_the_broker(broker: Broker) -> None:
    text = b"password: hunter2hunter2hunter2\nplain: text\n"
    proc = broker.agent("mask", stdin=text)
    assert proc.returncode == 0
    assert b"hunter2" not in proc.stdout and b"plain: text" in proc.stdout


def test_kubectl_output_streams_before_it_ends(broker: Broker) -> None:
    agent = broker.agent_popen("get", "pods", "-n", "dev", "-w")
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline().startswith(b"NAME")
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert agent.returncode is not None


def test_garbage_on_the_socket_does_not_stop_the_broker(broker: Broker) -> None:
    for junk in (b"", b"Q\0\0\0\5hello", b"X" * 64, b"Q\xff\xff\xff\xffabc"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(broker.socket))
            conn.sendall(junk)
            conn.shutdown(socket.SHUT_WR)
            data = b""
            try:
                while chunk := conn.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass  # the worker left unread junk behind it
            assert data == b"" or data.endswith(b"X\0\0\0\x012")
    assert broker.agent("get", "ns", "-o", "name").returncode == 0


def test_the_audit_chain_verifies_after_the_agents_work(broker: Broker) -> None:
    proc = broker.broker_guardctl("audit", "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_doctor_says_which_mode_is_in_force(broker: Broker) -> None:
    proc = broker.agent("doctor")
    lines = proc.stdout.decode().splitlines()
    uid = pwd.getpwnam(AGENT).pw_uid
    assert lines[0].startswith("ok    mode: broker mode:") and f"(uid {uid}, agent)" in lines[0]
    proc = broker.agent("doctor", extra={"GUARDCTL_BROKER": "/nonexistent/broker.sock"})
    assert proc.returncode == 1
    assert proc.stdout.decode().splitlines()[0].startswith("fail  mode: broker mode, but")


def test_the_brokers_own_account_under_bubblewrap_is_an_agent(broker: Broker) -> None:
    import shutil

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed")
    sandbox = [bwrap, "--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--",
               sys.executable, "-m", "guardctl"]
    environ = {**broker.environ, "GUARDCTL_BROKER": str(broker.socket)}
    proc = subprocess.run([*sandbox, "broker", "status"], env=environ, capture_output=True,
                          timeout=60)
    if proc.returncode != 0 and b"bwrap" in proc.stderr:
        pytest.skip(f"bubblewrap cannot make a sandbox here: {proc.stderr.decode().strip()}")
    assert b"(uid 0, agent)" in proc.stdout
    proc = subprocess.run([*sandbox, "approvals"], env=environ, capture_output=True, timeout=60)
    assert proc.returncode == 11 and b"is for the approver" in proc.stderr
    proc = subprocess.run([*sandbox, "get", "ns", "-o", "name"], env=environ,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith(b"namespace/")


def test_an_approvers_own_command_is_asked_on_their_terminal(broker: Broker) -> None:
    child = broker.approver_terminal("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml")
    try:
        child.expect("read-secret-values")
        child.expect(r"Approve this command\? \[y/n\]")
        child.send("y")
        child.expect("AWS_ACCESS_KEY_ID:")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert b"hunter2" not in (child.before or b"")


def test_proxy_listens_where_the_agent_reaches_it(broker: Broker) -> None:
    # `kubectl proxy` needs a human (rule port-forward); it then listens on the broker's
    # loopback, which an agent account on the same host reaches
    proxy = broker.agent_popen("proxy", "--port=0")
    console = broker.approver_terminal("approvals")
    try:
        console.expect("port-forward")
        console.send("a")
        assert proxy.stdout is not None
        line = proxy.stdout.readline().decode()
        assert line.startswith("Starting to serve on 127.0.0.1:"), line
        port = line.rsplit(":", 1)[1].strip()
        fetch = broker.as_user(AGENT, [broker.python, "-c", (
            "import urllib.request, sys;"
            f"print(urllib.request.urlopen('http://127.0.0.1:{port}/api/v1/namespaces/dev/pods')"
            ".read().decode())")])
        assert fetch.returncode == 0, fetch.stderr
        assert "web-7d4b9c8f6d-x2k9p" in fetch.stdout.decode()
    finally:
        console.close(force=True)
        proxy.terminate()
        proxy.wait(timeout=30)


def test_a_line_approved_once_runs_its_kubectl_without_asking_again(broker: Broker) -> None:
    # sh -c: the broker decides the line and keeps the grant; bash runs on the agent's side,
    # and its kubectl comes back through the broker, which takes the grant instead of asking
    agent = broker.agent_popen(
        "sh", "-c", "kubectl get secret app-secrets -n dev -o yaml | grep -c AWS_ACCESS_KEY_ID"
    )
    console = broker.approver_terminal("approvals")
    try:
        console.expect("read-secret-values")
        console.send("a")
        out, err = agent.communicate(timeout=60)
    finally:
        console.close(force=True)
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, err
    assert out.strip() == b"1" and err.count(b"waiting up to") == 1  # asked once, for the line
    preapproved = broker.state / "home" / "preapproved"
    assert not preapproved.exists() or list(preapproved.iterdir()) == []  # revoked at the end


def test_the_readmes_bubblewrap_sandbox_keeps_the_same_account_out(broker: Broker) -> None:
    # README case 2 with the test broker's folders: the broker's own account, sandboxed,
    # is an agent that reaches the socket and nothing of the broker's
    import shutil

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed")
    sock = str(broker.socket)
    hidden = ["/tmp", *(str(broker.state / n) for n in ("home", "data", "cache", "config"))]
    # this checkout and its interpreter stay visible, wherever they are (a CI clone in /tmp)
    shown = [sock, *dict.fromkeys(str(p) for p in (REPO, Path(sys.prefix)))]
    sandbox = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
               "--share-net", *(w for h in hidden for w in ("--tmpfs", h)),
               *(w for s in shown for w in ("--ro-bind", s, s)),
               "--setenv", "GUARDCTL_BROKER", sock, "--"]
    environ = {**broker.environ, "GUARDCTL_BROKER": sock}
    probe = subprocess.run([*sandbox, "true"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"bubblewrap cannot make this sandbox here: {probe.stderr.decode().strip()}")
    guardctl = [sys.executable, "-m", "guardctl"]
    status = subprocess.run([*sandbox, *guardctl, "broker", "status"], env=environ,
                            capture_output=True, timeout=60)
    assert b"(uid 0, agent)" in status.stdout, status.stderr
    script = (
        f"{sys.executable} -m guardctl get pods -n dev -w > /dev/null 2>&1 & sleep 2;"
        f" ls {broker.state}/run /tmp; cat {broker.state}/data/python_keyring/*; ps -e; kill %1"
    )
    seen = subprocess.run([*sandbox, "/bin/sh", "-c", script], env=environ,
                          capture_output=True, timeout=60)
    out = seen.stdout + seen.stderr
    assert b"guardctl-kubeconfig" not in out and b"token" not in out.lower()
    assert b"broker serve" not in out  # its own PID namespace: the broker is not there
    proc = subprocess.run([*sandbox, *guardctl, "get", "ns", "-o", "name"], env=environ,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith(b"namespace/")


def test_the_brokers_log_says_who_ran_what_and_never_the_arguments(broker: Broker) -> None:
    broker.agent("get", "secret", "app-secrets", "-n", "dev", "--token-of-nobody=sekrit")
    broker.agent("check", "kubectl get pods")
    broker.as_user(OTHER, [str(broker.shared / "bin" / "guardctl"), "get", "pods"])
    uid = pwd.getpwnam(AGENT).pw_uid
    log = (broker.state / "broker.log").read_text()
    assert f"{AGENT} (uid {uid}, agent): kubectl get -> exit " in log
    assert f"{AGENT} (uid {uid}, agent): guardctl check -> exit 0" in log
    assert "sekrit" not in log and "app-secrets" not in log


def test_the_hook_and_sh_read_manifests_on_the_agents_side(broker: Broker) -> None:
    # a manifest that exists only on the broker's side (root's, 0600) must not be read for
    # the agent's line: the decision is that of a file the agent cannot read
    hidden = broker.state / "privileged.yaml"
    hidden.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: dev}\n"
        "spec:\n  containers: [{name: c, image: x, securityContext: {privileged: true}}]\n"
    )
    hidden.chmod(0o600)
    line = f"kubectl apply -f {hidden}"
    payload = {
        "session_id": "s1", "hook_event_name": "PreToolUse", "tool_name": "Bash",
        "tool_input": {"command": line},
    }
    proc = broker.agent("hook", "claude-code", stdin=json.dumps(payload).encode())
    answer = json.loads(proc.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny"
    assert "unseen-manifest" in answer["permissionDecisionReason"]
    assert "privileged" not in answer["permissionDecisionReason"]
    proc = broker.agent("sh", "-c", line)
    assert proc.returncode == 11 and b"unseen-manifest" in proc.stderr
