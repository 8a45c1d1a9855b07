"""guardctl end to end: the real kubectl against the embedded API server.

One devserver for the module; credentials are imported with `guardctl creds import` into
a file keyring in a temporary folder, exactly as a user would.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import pytest

from guardctl.devserver import DevServer
from guardctl.running.kubeconfig import PREFIX

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
AGENT = "system:serviceaccount:guardctl:guardctl-agent"


def guardctl(
    env: dict[str, str], *args: str, check: bool = False, stdin: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", *args],
        env=env,
        capture_output=True,
        input=stdin.encode() if stdin is not None else None,
        timeout=60,
    )
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def kubectl_admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--kubeconfig", env["ADMIN_KUBECONFIG"], *args], capture_output=True, timeout=60
    )


def test_allowed_read_runs_as_the_agent(agent_env: dict[str, str], devserver: DevServer) -> None:
    guardctl(agent_env, "version", check=True)  # mints (as admin) and caches the agent's token
    devserver.clear_requests()
    proc = guardctl(agent_env, "get", "pods", "-n", "dev")
    assert proc.returncode == 0, proc.stderr
    assert b"web-7d4b9c8f6d-x2k9p" in proc.stdout
    assert {user for _, _, user in devserver.requests} == {AGENT}


def _kubectl_waiting_ahead(runtime: str) -> list[int]:
    """Pids of kubectl processes whose kubeconfig is a guardctl run's private one under
    `runtime` (as root, a process's environment can be read)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        kubeconfig = next((e for e in environ if e.startswith(b"KUBECONFIG=")), b"")
        if argv[0].endswith(b"kubectl") and f"{runtime}/{PREFIX}".encode() in kubeconfig:
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="reads another process's environment")
def test_kubectl_started_ahead_reaches_the_cluster_only_after_its_record(
    agent_env: dict[str, str], devserver: DevServer
) -> None:
    # kubectl starts while guardctl writes the command's record, so that its own start-up
    # overlaps it; it must not reach the cluster before that record is written. The audit
    # log's lock, held here, keeps the record from being written.
    guardctl(agent_env, "version", check=True)  # the agent's token is minted and cached
    log = Path(agent_env["GUARDCTL_HOME"]) / "audit.jsonl"
    log.touch()
    runtime = agent_env["XDG_RUNTIME_DIR"]
    with open(log, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        devserver.clear_requests()
        proc = subprocess.Popen(
            [sys.executable, "-m", "guardctl", "get", "pods", "-n", "dev"], env=agent_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while not _kubectl_waiting_ahead(runtime) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _kubectl_waiting_ahead(runtime), "no kubectl was started ahead of its record"
            time.sleep(1.0)  # time enough for a kubectl that is not held to reach the server
            assert devserver.requests == []
            assert proc.poll() is None
        finally:
            fcntl.flock(holder, fcntl.LOCK_UN)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"web-7d4b9c8f6d-x2k9p" in out
    assert ("GET", "/api/v1/namespaces/dev/pods", AGENT) in devserver.requests
    assert _kubectl_waiting_ahead(runtime) == []


def test_a_kubectl_started_ahead_whose_record_fails_reaches_nothing(
    agent_env: dict[str, str], devserver: DevServer
) -> None:
    # the record cannot be written (the log is a folder): nothing runs, nothing is shown
    # of what kubectl might have printed, and the kubectl started ahead is gone
    guardctl(agent_env, "version", check=True)
    home = Path(agent_env["GUARDCTL_HOME"])
    saved = home / "audit.saved"
    (home / "audit.jsonl").rename(saved)
    (home / "audit.jsonl").mkdir()
    try:
        devserver.clear_requests()
        proc = guardctl(agent_env, "get", "pods", "-n", "dev")
    finally:
        (home / "audit.jsonl").rmdir()
        saved.rename(home / "audit.jsonl")
    assert proc.returncode == 13, proc.stderr
    assert proc.stdout == b""
    assert b"audit log" in proc.stderr
    assert devserver.requests == []
    assert _kubectl_waiting_ahead(agent_env["XDG_RUNTIME_DIR"]) == []


def test_pipes_are_byte_identical_to_kubectl(agent_env: dict[str, str]) -> None:
    for args in (
        ("get", "pods", "-n", "dev", "-o", "json"),
        ("get", "deploy", "web", "-n", "dev", "-o", "yaml"),
        ("get", "ns"),
    ):
        ours = guardctl(agent_env, *args)
        theirs = kubectl_admin(agent_env, *args)
        assert ours.returncode == theirs.returncode == 0
        assert ours.stdout == theirs.stdout, args


def test_kubectl_errors_and_exit_codes_pass_through(agent_env: dict[str, str]) -> None:
    proc = guardctl(agent_env, "get", "pod", "nope", "-n", "dev")
    assert proc.returncode == 1
    assert b'pods "nope" not found' in proc.stderr
    assert proc.stdout == b""


def test_denied_delete_reaches_no_endpoint(agent_env: dict[str, str], devserver: DevServer) -> None:
    devserver.clear_requests()
    proc = guardctl(agent_env, "delete", "ns", "prod")
    assert proc.returncode == 11
    assert b"delete-namespace" in proc.stderr and b"Nothing was sent" in proc.stderr
    assert devserver.requests == []
    assert kubectl_admin(agent_env, "get", "ns", "prod").returncode == 0


@pytest.mark.parametrize(
    "line",
    [
        "python3 -c 'import os; os.system(\"kubectl delete ns prod\")'",
        "python3 - <<'EOF'\nimport subprocess\n"
        "subprocess.run(['kubectl', 'delete', 'ns', 'prod'])\nEOF",
        "script -qc 'kubectl delete ns prod' /dev/null",
    ],
)
def test_kubectl_hidden_in_another_program_waits_for_a_human(
    agent_env: dict[str, str], devserver: DevServer, line: str
) -> None:
    devserver.clear_requests()
    proc = guardctl(agent_env, "sh", "-c", line)
    assert proc.returncode in (11, 12), proc.stderr  # denied, or nobody approved
    assert devserver.requests == []
    assert kubectl_admin(agent_env, "get", "ns", "prod").returncode == 0


def test_an_unknown_command_is_kubectls_error_at_once(
    agent_env: dict[str, str], devserver: DevServer
) -> None:
    # kubectl would only look for a plugin, and the kubectl guardctl runs has none: no human
    # is asked, nothing is sent
    devserver.clear_requests()
    proc = guardctl(agent_env, "aprovals")
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [
        'error: unknown command "aprovals" for "kubectl"',
        "guardctl: did you mean `guardctl approvals`?",
    ]
    proc = guardctl(agent_env, "frobnicate", "pods", "-n", "dev")
    assert proc.returncode == 1
    assert proc.stderr == b'error: unknown command "frobnicate" for "kubectl"\n'
    assert devserver.requests == []


@pytest.mark.parametrize(
    "args",
    [
        ["scale", "deploy", "web", "-n", "dev", "--replicas=0x0"],
        ["patch", "deploy", "web", "-n", "dev", "--type=json",
         "-p", '[{"op": "replace", "path": "/spec/replicas", "value": 0}]'],
        ["patch", "ns", "dev", "--type=json",
         "-p", '[{"op": "remove",'
               ' "path": "/metadata/labels/pod-security.kubernetes.io~1enforce"}]'],
        ["patch", "node", "node-1", "-p", '{"spec": {"unschedulable": true}}'],
        ["set", "serviceaccount", "deploy/web", "default", "-n", "dev"],
    ],
)
def test_another_spelling_of_a_flagged_change_waits_for_a_human(
    agent_env: dict[str, str], devserver: DevServer, args: list[str]
) -> None:
    devserver.clear_requests()
    proc = guardctl(agent_env, *args)
    assert proc.returncode == 12, proc.stderr
    assert devserver.requests == []


def test_approval_needed_is_not_run(agent_env: dict[str, str], devserver: DevServer) -> None:
    devserver.clear_requests()
    proc = guardctl(agent_env, "get", "secret", "app-secrets", "-n", "dev", "-o", "yaml")
    assert proc.returncode == 12
    assert devserver.requests == []


def test_secret_read_approved_by_a_second_process_shows_no_value(
    agent_env: dict[str, str], devserver: DevServer
) -> None:
    from guardctl.approvals.queue import Queue, answer
    from guardctl.recording.audit import Approver

    env = {**agent_env, "GUARDCTL_APPROVAL_TIMEOUT": "30"}
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "guardctl",
            "get",
            "secret",
            "app-secrets",
            "-n",
            "dev",
            "-o",
            "yaml",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: the request is queued
    )
    queue = Queue(Path(agent_env["GUARDCTL_HOME"]))
    deadline = time.monotonic() + 20
    while not (pending := queue.pending(time.time())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(pending) == 1 and "get secret app-secrets" in pending[0].line
    answer(
        Path(agent_env["GUARDCTL_HOME"]),
        pending[0].id,
        approved=True,
        approver=Approver(user="alice", tty="/dev/pts/9", at=time.time()),
    )
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
    values = kubectl_admin(
        agent_env, "get", "secret", "app-secrets", "-n", "dev", "-o", "jsonpath={.data}"
    ).stdout.decode()
    for encoded in json.loads(values).values():
        assert encoded.encode() not in out
        assert base64.b64decode(encoded) not in out
    assert b"AWS_ACCESS_KEY_ID:" in out and "«masked:".encode() in out
    assert b"approved by alice" in err
    rows = [
        json.loads(line) for line in guardctl(agent_env, "sessions", "--json").stdout.splitlines()
    ]
    assert any((r.get("approver") or {}).get("user") == "alice" for r in rows)


def test_tokens_are_short_lived_reused_and_never_printed(
    agent_env: dict[str, str], devserver: DevServer
) -> None:
    guardctl(agent_env, "get", "ns", check=True)
    devserver.clear_requests()
    for _ in range(2):
        guardctl(agent_env, "get", "ns", check=True)
    minted = [
        r for r in devserver.requests if r[1].endswith("/serviceaccounts/guardctl-agent/token")
    ]
    assert minted == []  # the cached token is reused while fresh
    status = guardctl(agent_env, "creds", "status", check=True).stdout.decode()
    assert "agent token: expires" in status or "expires" in status
    config_text = Path(agent_env["GUARDCTL_CONFIG"]).read_text()
    assert devserver.admin_token not in config_text and "token:" not in config_text
    view = guardctl(agent_env, "config", "view", "-o", "json")
    assert view.returncode == 0
    assert b"REDACTED" in view.stdout or b"masked" in view.stdout


def test_temp_kubeconfig_is_removed(agent_env: dict[str, str]) -> None:
    runtime = Path(agent_env["XDG_RUNTIME_DIR"])
    guardctl(agent_env, "get", "ns", check=True)
    guardctl(agent_env, "get", "pod", "nope", "-n", "dev")
    assert [p for p in runtime.iterdir() if p.name.startswith(PREFIX)] == []
    assert not [
        p
        for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}*")
        if p.stat().st_uid == os.getuid() and _pid_alive(p)
    ]


def test_a_killed_runs_folder_is_swept_by_the_next_run(agent_env: dict[str, str]) -> None:
    ended = subprocess.Popen(["true"])  # a pid whose process has ended
    ended.wait()
    dead = ended.pid
    runtime = Path(agent_env["XDG_RUNTIME_DIR"])
    stale = runtime / f"{PREFIX}{dead}-abc123"
    stale.mkdir(mode=0o700)
    (stale / "kubeconfig").write_text("token: left-by-a-killed-run\n")
    proc = guardctl(agent_env, "get", "ns")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()


def _pid_alive(path: Path) -> bool:
    pid = int(path.name[len(PREFIX) :].partition("-")[0])
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return pid != os.getpid()


def test_logs_are_masked(agent_env: dict[str, str]) -> None:
    proc = guardctl(agent_env, "logs", "web-7d4b9c8f6d-x2k9p", "-n", "dev")
    assert proc.returncode == 0, proc.stderr
    assert b"DATABASE_URL=postgres://app:" in proc.stdout
    assert b"s3cr3t-p4ss" not in proc.stdout
    assert "«masked:".encode() in proc.stdout


def test_stdin_manifest_is_inspected_then_applied(
    agent_env: dict[str, str], devserver: DevServer
) -> None:
    plain = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-stdin\n  namespace: dev\n"
        "data:\n  a: b\n"
    )
    proc = guardctl(agent_env, "apply", "-f", "-", stdin=plain)
    assert proc.returncode == 0, proc.stderr
    assert b"configmap/from-stdin created" in proc.stdout
    risky = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: root\n  namespace: dev\nspec:\n"
        "  hostPID: true\n  containers:\n  - name: c\n    image: busybox\n"
    )
    devserver.clear_requests()
    proc = guardctl(agent_env, "apply", "-f", "-", stdin=risky)
    assert proc.returncode == 12
    assert b"privileged-workload" in proc.stderr
    # only the server-side diff shown to the human (reads and a dry run) reached the cluster
    assert {m for m, _, _ in devserver.requests} <= {"GET", "POST", "PATCH"}
    admin = subprocess.run(["kubectl", "--kubeconfig", agent_env["ADMIN_KUBECONFIG"], "get",
                            "pod", "root", "-n", "dev"], capture_output=True, timeout=60)
    assert admin.returncode != 0 and b"NotFound" in admin.stderr


def test_every_invocation_is_recorded_and_the_chain_verifies(agent_env: dict[str, str]) -> None:
    guardctl(agent_env, "delete", "ns", "prod")
    rows = [
        json.loads(line) for line in guardctl(agent_env, "sessions", "--json").stdout.splitlines()
    ]
    assert {"allow", "deny", "approve"} <= {r["decision"] for r in rows}
    verify = guardctl(agent_env, "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    casts = Path(agent_env["GUARDCTL_HOME"]) / "casts"
    text = "".join(p.read_text() for p in casts.glob("*.cast"))
    assert "s3cr3t-p4ss" not in text and '"env"' not in text


def test_interactive_path_runs_in_a_pty(agent_env: dict[str, str]) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "guardctl", "get", "pods", "-n", "dev"],
        env=agent_env,
        timeout=30,
        dimensions=(30, 100),
    )
    child.expect("web-7d4b9c8f6d-x2k9p")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_missing_credentials_is_exit_13(agent_env: dict[str, str], tmp_path: Path) -> None:
    env = {**agent_env, "GUARDCTL_CONFIG": str(tmp_path / "none.yaml")}
    proc = guardctl(env, "get", "pods")
    assert proc.returncode == 13
    assert b"guardctl creds import" in proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1


def test_missing_kubectl_is_exit_13(agent_env: dict[str, str], tmp_path: Path) -> None:
    env = {**agent_env, "GUARDCTL_KUBECTL": str(tmp_path / "no-kubectl")}
    proc = guardctl(env, "get", "pods")
    assert proc.returncode == 13
    assert b"kubectl" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_a_run_with_a_cached_token_imports_nothing_it_does_not_need(
    agent_env: dict[str, str],
) -> None:
    # the agent's everyday command: once a token is cached (and the rules and config are),
    # no keyring, yaml, click, rich or dataclasses is imported on the way to kubectl
    guardctl(agent_env, "get", "pods", "-n", "dev", check=True)
    code = (
        "import sys\n"
        "from guardctl.main import main\n"
        "status = main(['get', 'pods', '-n', 'dev'])\n"
        "heavy = {'keyring', 'yaml', 'click', 'rich', 'dataclasses', 'pexpect'}\n"
        "print(status, sorted(heavy & set(sys.modules)), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=agent_env, capture_output=True, timeout=60
    )
    assert proc.stderr.decode().splitlines()[-1] == "0 []", proc.stderr.decode()
    assert b"web-" in proc.stdout
