"""guardctl end to end: the real kubectl against the embedded API server.

One devserver for the module; credentials are imported with `guardctl creds import` into
a file keyring in a temporary folder, exactly as a user would.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from guardctl.devserver import DevServer
from guardctl.kubeconfig import PREFIX

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
AGENT = "system:serviceaccount:guardctl:guardctl-agent"


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as dev:
        yield dev


@pytest.fixture(scope="module")
def world(server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("e2e")
    admin = server.write_kubeconfig(root / "admin.kubeconfig")
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    env = {
        **os.environ,
        "GUARDCTL_HOME": str(root / "home"),
        "GUARDCTL_CONFIG": str(root / "config.yaml"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_RUNTIME_DIR": str(runtime),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "KUBECONFIG": str(root / "nonexistent"),  # the agent's own kubeconfig is not used
        "NO_COLOR": "1",
        "GUARDCTL_APPROVAL_TIMEOUT": "2",  # nobody answers in these tests unless one says so
        "ADMIN_KUBECONFIG": str(admin),
    }
    guardctl(env, "creds", "import", "--kubeconfig", str(admin),
             "--service-account", "guardctl/guardctl-agent", "--ttl", "10m", check=True)
    return env


def guardctl(env: dict[str, str], *args: str, check: bool = False,
             stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([sys.executable, "-m", "guardctl", *args], env=env, capture_output=True,
                          input=stdin.encode() if stdin is not None else None, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def kubectl_admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    assert KUBECTL is not None
    return subprocess.run([KUBECTL, "--kubeconfig", env["ADMIN_KUBECONFIG"], *args],
                          capture_output=True, timeout=60)


def test_allowed_read_runs_as_the_agent(world: dict[str, str], server: DevServer) -> None:
    guardctl(world, "version", check=True)  # mints (as admin) and caches the agent's token
    server.clear_requests()
    proc = guardctl(world, "get", "pods", "-n", "dev")
    assert proc.returncode == 0, proc.stderr
    assert b"web-7d4b9c8f6d-x2k9p" in proc.stdout
    assert {user for _, _, user in server.requests} == {AGENT}


def test_pipes_are_byte_identical_to_kubectl(world: dict[str, str]) -> None:
    for args in (("get", "pods", "-n", "dev", "-o", "json"), ("get", "deploy", "web", "-n", "dev", "-o", "yaml"),
                 ("get", "ns")):
        ours = guardctl(world, *args)
        theirs = kubectl_admin(world, *args)
        assert ours.returncode == theirs.returncode == 0
        assert ours.stdout == theirs.stdout, args


def test_kubectl_errors_and_exit_codes_pass_through(world: dict[str, str]) -> None:
    proc = guardctl(world, "get", "pod", "nope", "-n", "dev")
    assert proc.returncode == 1
    assert b'pods "nope" not found' in proc.stderr
    assert proc.stdout == b""


def test_denied_delete_reaches_no_endpoint(world: dict[str, str], server: DevServer) -> None:
    server.clear_requests()
    proc = guardctl(world, "delete", "ns", "prod")
    assert proc.returncode == 11
    assert b"delete-namespace" in proc.stderr and b"Nothing was sent" in proc.stderr
    assert server.requests == []
    assert kubectl_admin(world, "get", "ns", "prod").returncode == 0


def test_approval_needed_is_not_run(world: dict[str, str], server: DevServer) -> None:
    server.clear_requests()
    proc = guardctl(world, "get", "secret", "app-secrets", "-n", "dev", "-o", "yaml")
    assert proc.returncode == 12
    assert server.requests == []


def test_secret_read_approved_by_a_second_process_shows_no_value(
    world: dict[str, str], server: DevServer
) -> None:
    from guardctl.approvals import Queue, answer
    from guardctl.audit import Approver

    env = {**world, "GUARDCTL_APPROVAL_TIMEOUT": "30"}
    agent = subprocess.Popen(
        [sys.executable, "-m", "guardctl", "get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: the request is queued
    )
    queue = Queue(Path(world["GUARDCTL_HOME"]))
    deadline = time.monotonic() + 20
    while not (pending := queue.pending(time.time())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(pending) == 1 and "get secret app-secrets" in pending[0].line
    answer(Path(world["GUARDCTL_HOME"]), pending[0].id, approved=True,
           approver=Approver(user="alice", tty="/dev/pts/9", at=time.time()))
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
    values = kubectl_admin(world, "get", "secret", "app-secrets", "-n", "dev", "-o",
                           "jsonpath={.data}").stdout.decode()
    for encoded in json.loads(values).values():
        assert encoded.encode() not in out
        assert base64.b64decode(encoded) not in out
    assert b"AWS_ACCESS_KEY_ID:" in out and "«masked:".encode() in out
    assert b"approved by alice" in err
    rows = [json.loads(line) for line in guardctl(world, "sessions", "--json").stdout.splitlines()]
    assert any((r.get("approver") or {}).get("user") == "alice" for r in rows)


def test_tokens_are_short_lived_reused_and_never_printed(world: dict[str, str], server: DevServer) -> None:
    guardctl(world, "get", "ns", check=True)
    server.clear_requests()
    for _ in range(2):
        guardctl(world, "get", "ns", check=True)
    minted = [r for r in server.requests if r[1].endswith("/serviceaccounts/guardctl-agent/token")]
    assert minted == []  # the cached token is reused while fresh
    status = guardctl(world, "creds", "status", check=True).stdout.decode()
    assert "agent token: expires" in status or "expires" in status
    config_text = Path(world["GUARDCTL_CONFIG"]).read_text()
    assert server.admin_token not in config_text and "token:" not in config_text
    view = guardctl(world, "config", "view", "-o", "json")
    assert view.returncode == 0
    assert b"REDACTED" in view.stdout or b"masked" in view.stdout


def test_temp_kubeconfig_is_removed(world: dict[str, str]) -> None:
    runtime = Path(world["XDG_RUNTIME_DIR"])
    guardctl(world, "get", "ns", check=True)
    guardctl(world, "get", "pod", "nope", "-n", "dev")
    assert [p for p in runtime.iterdir() if p.name.startswith(PREFIX)] == []
    assert not [p for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}*") if p.stat().st_uid == os.getuid()
                and _pid_alive(p)]


def _pid_alive(path: Path) -> bool:
    pid = int(path.name[len(PREFIX):].partition("-")[0])
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return pid != os.getpid()


def test_logs_are_masked(world: dict[str, str]) -> None:
    proc = guardctl(world, "logs", "web-7d4b9c8f6d-x2k9p", "-n", "dev")
    assert proc.returncode == 0, proc.stderr
    assert b"DATABASE_URL=postgres://app:" in proc.stdout
    assert b"s3cr3t-p4ss" not in proc.stdout
    assert "«masked:".encode() in proc.stdout


def test_stdin_manifest_is_inspected_then_applied(world: dict[str, str], server: DevServer) -> None:
    plain = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-stdin\n  namespace: dev\ndata:\n  a: b\n"
    proc = guardctl(world, "apply", "-f", "-", stdin=plain)
    assert proc.returncode == 0, proc.stderr
    assert b"configmap/from-stdin created" in proc.stdout
    risky = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: root\n  namespace: dev\nspec:\n"
             "  hostPID: true\n  containers:\n  - name: c\n    image: busybox\n")
    server.clear_requests()
    proc = guardctl(world, "apply", "-f", "-", stdin=risky)
    assert proc.returncode == 12
    assert b"privileged-workload" in proc.stderr
    assert server.requests == []


def test_every_invocation_is_recorded_and_the_chain_verifies(world: dict[str, str]) -> None:
    guardctl(world, "delete", "ns", "prod")
    rows = [json.loads(line) for line in guardctl(world, "sessions", "--json").stdout.splitlines()]
    assert {"allow", "deny", "approve"} <= {r["decision"] for r in rows}
    verify = guardctl(world, "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    casts = Path(world["GUARDCTL_HOME"]) / "casts"
    text = "".join(p.read_text() for p in casts.glob("*.cast"))
    assert "s3cr3t-p4ss" not in text and '"env"' not in text


def test_interactive_path_runs_in_a_pty(world: dict[str, str]) -> None:
    child = pexpect.spawn(sys.executable, ["-m", "guardctl", "get", "pods", "-n", "dev"],
                          env=world, timeout=30, dimensions=(30, 100))
    child.expect("web-7d4b9c8f6d-x2k9p")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_missing_credentials_is_exit_13(world: dict[str, str], tmp_path: Path) -> None:
    env = {**world, "GUARDCTL_CONFIG": str(tmp_path / "none.yaml")}
    proc = guardctl(env, "get", "pods")
    assert proc.returncode == 13
    assert b"guardctl creds import" in proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1


def test_missing_kubectl_is_exit_13(world: dict[str, str], tmp_path: Path) -> None:
    env = {**world, "GUARDCTL_KUBECTL": str(tmp_path / "no-kubectl")}
    proc = guardctl(env, "get", "pods")
    assert proc.returncode == 13
    assert b"kubectl" in proc.stderr
    assert b"Traceback" not in proc.stderr
