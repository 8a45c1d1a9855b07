"""The fork server: an agent's commands run in warm workers with the results a plain run
gives, signals and the client's death reach kubectl, stale code is never served, and a
client it cannot be sure of (another namespace, a garbled request) runs its command itself.

The real kubectl runs against the devserver; `GUARDCTL_FORKSERVER=0` is the plain run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import site
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardctl.broker import forkclient, forkcontrol, forkserver

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
PACKAGE = Path(forkclient.__file__).parent.parent
REPORT_MODULES = (
    "import sys\n"
    "import guardctl.main\n"
    "guardctl.main._end = lambda code: code  # report, instead of ending at once\n"
    "status = guardctl.main.main()\n"
    "print(status, sorted(m for m in sys.modules if m.startswith('guardctl')), file=sys.stderr)\n"
)
# what a client imports when a worker runs its command
CLIENT_ONLY = (
    "['guardctl', 'guardctl.broker', 'guardctl.broker.forkclient', 'guardctl.commands',"
    " 'guardctl.main', 'guardctl.routing', 'guardctl.runtime']"
)


def server_path(
    env: dict[str, str], python: str = sys.executable, cwd: Path | None = None
) -> str:
    """The socket a client with `env` uses (computed by a client process: its package)."""
    code = (
        "import os; from guardctl.broker.forkclient import socket_path;"
        " print(socket_path(os.environ))"
    )
    return subprocess.run(
        [python, "-c", code], env=env, cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def guardctl(
    env: dict[str, str],
    *args: str,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [python, "-m", "guardctl", *args],
        env=env, input=stdin, capture_output=True, timeout=60, cwd=cwd,
    )


@pytest.fixture(scope="module")
def warm_env(agent_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The agent's environment with its fork server started and ready."""
    guardctl(agent_env, "version")  # mints the token; starts the server
    path = server_path(agent_env)
    assert forkcontrol.wait_ready(path), Path(path + ".log").read_text()
    yield agent_env


@pytest.fixture
def alone_env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "GUARDCTL_FORKSERVER": "0"}


def imported_by_client(
    env: dict[str, str], *args: str, python: str = sys.executable, cwd: Path | None = None
) -> tuple[str, str]:
    proc = subprocess.run(
        [python, "-c", REPORT_MODULES, *args], env=env, capture_output=True, timeout=60, cwd=cwd
    )
    status, _, modules = proc.stderr.decode().splitlines()[-1].partition(" ")
    return status, modules


def test_an_agents_command_runs_in_a_worker(
    warm_env: dict[str, str], alone_env: dict[str, str]
) -> None:
    # the client imports only itself; decision, kubectl and masking happened in the worker
    status, modules = imported_by_client(warm_env, "get", "pods", "-n", "dev")
    assert (status, modules) == ("0", CLIENT_ONLY)
    status, modules = imported_by_client(alone_env, "get", "pods", "-n", "dev")
    assert status == "0" and "guardctl.running.invoke" in modules


CASES = [
    ("get", "pods", "-n", "dev", "-o", "json"),
    ("get", "pod", "nope", "-n", "dev"),  # kubectl's error and exit code 1
    ("delete", "ns", "prod"),  # denied: 11
    ("get", "secret", "-n", "dev"),
    ("logs", "web-7d4b9c8f6d-x2k9p", "-n", "dev"),  # masked
    ("check", "kubectl delete ns prod"),
    ("check", "--json", "kubectl get pods -n dev | grep web && kubectl get ns"),  # bashlex
    ("check", "--bogus"),  # click's usage error
    ("kubectl", "version", "--client", "-o", "json"),
    ("--version",),  # never served: the client runs it
    ("sessions", "--json"),  # a person's command: the client runs it
]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_a_worker_gives_what_a_plain_run_gives(
    warm_env: dict[str, str], alone_env: dict[str, str], args: tuple[str, ...]
) -> None:
    warm = guardctl(warm_env, *args)
    alone = guardctl(alone_env, *args)
    assert (warm.returncode, warm.stdout, warm.stderr) == (
        alone.returncode, alone.stdout, alone.stderr
    )


def test_stdin_working_directory_and_home_are_the_clients(
    warm_env: dict[str, str], tmp_path: Path
) -> None:
    manifest = (
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: warm-cm\n  namespace: dev\n"
        b"data:\n  a: b\n"
    )
    (tmp_path / "cm.yaml").write_bytes(manifest)
    home = tmp_path / "home"
    env = {**warm_env, "GUARDCTL_HOME": str(home)}
    from_file = guardctl(env, "apply", "--dry-run=client", "-f", "cm.yaml", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout == b"configmap/warm-cm created (dry run)\n"
    from_stdin = guardctl(env, "apply", "--dry-run=client", "-f", "-", stdin=manifest)
    assert from_stdin.stdout == from_file.stdout, from_stdin.stderr
    # the audit record and cast went to this client's GUARDCTL_HOME
    records = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["started", "completed"] * 2
    assert len(list((home / "casts").glob("*.cast"))) == 2


def fake_kubectl(folder: Path) -> Path:
    """A kubectl that says it started, then waits for SIGTERM and reports it in a file."""
    script = folder / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f"trap 'echo terminated > {folder}/marker; exit 7' TERM\n"
        "echo started\n"
        "while :; do /bin/sleep 0.05; done\n"
    )
    script.chmod(0o755)
    return script


def start_waiting(env: dict[str, str], folder: Path) -> subprocess.Popen[bytes]:
    env = {**env, "GUARDCTL_KUBECTL": str(fake_kubectl(folder))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardctl", "get", "pods"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    return proc


def wait_for(path: Path, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


@pytest.mark.parametrize("mode", ["warm", "alone"])
def test_sigterm_reaches_kubectl_and_its_code_comes_back(
    warm_env: dict[str, str], alone_env: dict[str, str], tmp_path: Path, mode: str
) -> None:
    proc = start_waiting(warm_env if mode == "warm" else alone_env, tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 7
    assert (tmp_path / "marker").read_text() == "terminated\n"
    runtime = Path(warm_env["XDG_RUNTIME_DIR"])
    assert not [p for p in runtime.iterdir() if p.name.startswith("guardctl-kubeconfig")]


def test_a_killed_client_ends_its_kubectl(warm_env: dict[str, str], tmp_path: Path) -> None:
    # an agent's timeout that SIGKILLs guardctl: the worker sees its client gone
    proc = start_waiting(warm_env, tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    assert wait_for(tmp_path / "marker")


def test_a_garbled_request_is_handed_back_and_the_server_goes_on(
    warm_env: dict[str, str],
) -> None:
    for junk in (b"", b"\0\0\0\5hello", b"\0\0\0\3abc", b"x" * 10):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(server_path(warm_env))
            conn.sendall(junk)
            conn.shutdown(socket.SHUT_WR)
            assert conn.recv(64) in (b"local\n", b"")
    status, modules = imported_by_client(warm_env, "check", "kubectl get pods")
    assert (status, modules) == ("0", CLIENT_ONLY)


def test_a_client_in_another_namespace_runs_its_command_itself(
    warm_env: dict[str, str],
) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--net", "true"]).returncode != 0:
        pytest.skip("cannot make a network namespace here")
    code = (
        "from guardctl.broker.forkclient import run_warm;"
        " print(run_warm(['check', 'kubectl get ns']))"
    )
    proc = subprocess.run(
        [unshare, "--net", sys.executable, "-c", code],
        env=warm_env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
    )
    assert proc.stdout == b"None\n", proc.stderr
    # the same client outside: served
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=warm_env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
    )
    assert proc.stdout.endswith(b"0\n"), proc.stderr


def test_a_folder_others_may_enter_is_not_trusted(
    warm_env: dict[str, str], tmp_path: Path
) -> None:
    runtime = tmp_path / "run"
    (runtime / "guardctl").mkdir(parents=True)
    (runtime / "guardctl").chmod(0o755)
    env = {**warm_env, "XDG_RUNTIME_DIR": str(runtime)}
    for _ in range(2):  # a server is not started there either
        status, modules = imported_by_client(env, "check", "kubectl get pods")
        assert status == "0" and "guardctl.app" in modules
    time.sleep(0.5)
    assert [p.name for p in (runtime / "guardctl").iterdir()] == []


def python_with_a_copy_of_guardctl(root: Path) -> str:
    """A venv's python whose guardctl is a copy of this one in `root` (another installation)."""
    copy = root / "site" / "guardctl"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PACKAGE.parent / "rules", copy / "bundled_rules")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # the copy first, then this interpreter's libraries (a .pth adds folders; the editable
    # install's own .pth, which would find the checkout's guardctl, is not run)
    folders = [str(copy.parent), *site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    Path(purelib, "copy.pth").write_text("\n".join(folders) + "\n")
    return python


def test_a_changed_guardctl_is_never_served_by_the_old_server(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    python = python_with_a_copy_of_guardctl(tmp_path)
    # run from tmp_path: `python -c` would find the checkout's guardctl in its folder
    cwd = tmp_path
    path = server_path(agent_env, python=python, cwd=cwd)
    assert path != server_path(agent_env)  # another installation, another server
    served = ("0", CLIENT_ONLY)
    line = "kubectl get pods"
    try:
        guardctl(agent_env, "check", line, python=python, cwd=cwd)
        assert forkcontrol.wait_ready(path)
        assert imported_by_client(agent_env, "check", line, python=python, cwd=cwd) == served
        policy = tmp_path / "site" / "guardctl" / "firewall" / "policy.py"
        os.utime(policy, ns=(policy.stat().st_atime_ns, policy.stat().st_mtime_ns + 10**9))
        status, modules = imported_by_client(agent_env, "check", line, python=python, cwd=cwd)
        # ran here, with the new code
        assert status == "0" and "guardctl.firewall.policy" in modules
        deadline = time.monotonic() + 10
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(path)
        # the next command starts a new server
        guardctl(agent_env, "check", line, python=python, cwd=cwd)
        assert forkcontrol.wait_ready(path)
        assert imported_by_client(agent_env, "check", line, python=python, cwd=cwd) == served
    finally:
        forkcontrol.stop(path)


def test_the_socket_folder_is_private(warm_env: dict[str, str]) -> None:
    folder = Path(server_path(warm_env)).parent
    info = folder.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()


def test_a_request_carries_the_clients_words_folder_and_environment() -> None:
    body = forkclient.encode_request(["get", "pods", "caf\udce9"])[4:]
    request = forkserver.decode_request(body)
    assert request.args == ["get", "pods", "caf\udce9"]
    assert request.cwd == os.fsencode(os.getcwd())
    assert request.environ == dict(os.environb)


@given(st.binary(max_size=200))
def test_any_request_bytes_decode_or_are_refused(body: bytes) -> None:
    try:
        request = forkserver.decode_request(body)
    except forkserver.BadRequest:
        return
    assert all(isinstance(a, str) for a in request.args)


def test_a_server_whose_socket_is_removed_stops(agent_env: dict[str, str], tmp_path: Path) -> None:
    # the demo's (or a test's) runtime folder removed under it: the server does not linger
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**agent_env, "XDG_RUNTIME_DIR": str(runtime)}
    path = server_path(env)
    guardctl(env, "check", "kubectl get pods")
    assert forkcontrol.wait_ready(path)
    pid = forkcontrol.server_pid(path)
    assert pid is not None
    shutil.rmtree(runtime)
    deadline = time.monotonic() + forkserver.CHECK_SECONDS * 3
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()


def test_a_worker_runs_under_the_clients_resource_limits(
    warm_env: dict[str, str], alone_env: dict[str, str]
) -> None:
    # files of at most 1 KiB: the cast of a YAML listing cannot be written, so guardctl
    # refuses to show what it cannot record, in a worker as in a plain run
    script = 'ulimit -f 1 && exec "$0" -m guardctl get pods -n dev -o yaml'
    results = [
        subprocess.run(["bash", "-c", script, sys.executable], env=env, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=60)
        for env in (warm_env, alone_env)
    ]
    warm, alone = results
    assert alone.returncode == 13, alone.stderr
    assert (warm.returncode, warm.stdout) == (alone.returncode, alone.stdout), warm.stderr
