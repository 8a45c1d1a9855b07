"""Nothing outlives a guardctl killed outright (SIGKILL): not its kubectl, not its token.

The process that runs kubectl (guardctl itself, or a fork server's worker) is killed with
SIGKILL while kubectl runs; kubectl must end with it, and the short-lived token must not
be left in a file on disk. The kubectl here is a script that reads its kubeconfig the way
kubectl does (it opens the file again and again), then waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from guardctl.broker import forkcontrol
from guardctl.running.kubeconfig import PREFIX

TIMEOUT = 20


def fake_kubectl(folder: Path) -> Path:
    """A kubectl that checks it can read its kubeconfig's token twice, says its pid and its
    parent's, then waits for ever (until killed)."""
    script = folder / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        'a=$(/bin/grep -c \'"token"\' "$KUBECONFIG"); b=$(/bin/grep -c \'"token"\' "$KUBECONFIG")\n'
        'echo "pids $$ $PPID read $a$b"\n'
        "while :; do /bin/sleep 0.05; done\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture(scope="module")
def warm_env(agent_env: dict[str, str]) -> Iterator[dict[str, str]]:
    subprocess.run([sys.executable, "-m", "guardctl", "version"], env=agent_env,
                   capture_output=True, timeout=60, check=True)
    yield agent_env
    forkcontrol.stop_all(Path(agent_env["XDG_RUNTIME_DIR"]))


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (a container's first process may never)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_dead(pid: int) -> bool:
    deadline = time.monotonic() + TIMEOUT
    while not _dead(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _dead(pid)


def _tokens_on_disk(folders: list[Path]) -> list[Path]:
    """Files under guardctl's private kubeconfig folders that hold a token."""
    found = []
    for base in folders:
        for folder in base.glob(f"{PREFIX}*"):
            for path in folder.rglob("*"):
                try:
                    if b'"token"' in path.read_bytes():
                        found.append(path)
                except OSError:  # a link to nothing, a folder
                    continue
    return found


def _parse_pids(line: str) -> tuple[int, int]:
    words = line.split()
    assert words[0] == "pids" and words[4] == "11", line  # both reads saw the token
    return int(words[1]), int(words[2])


def _kill_and_check(env: dict[str, str], kubectl_pid: int, runner_pid: int) -> None:
    os.kill(runner_pid, signal.SIGKILL)
    try:
        assert _wait_dead(kubectl_pid), "kubectl outlived the guardctl that ran it"
        bases = [Path(env["XDG_RUNTIME_DIR"]), Path(tempfile.gettempdir())]
        assert _tokens_on_disk(bases) == []
    finally:
        if not _dead(kubectl_pid):
            os.kill(kubectl_pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", ["alone", "warm"])
def test_kubectl_and_its_token_end_with_a_killed_guardctl(
    warm_env: dict[str, str], tmp_path: Path, mode: str
) -> None:
    env = {**warm_env, "GUARDCTL_KUBECTL": str(fake_kubectl(tmp_path)),
           **({"GUARDCTL_FORKSERVER": "0"} if mode == "alone" else {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardctl", "get", "pods"], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        kubectl_pid, runner_pid = _parse_pids(proc.stdout.readline().decode())
        if mode == "alone":
            assert runner_pid == proc.pid
        else:  # a worker of the fork server runs kubectl, not the client
            assert runner_pid != proc.pid
        _kill_and_check(env, kubectl_pid, runner_pid)
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)


def test_kubectl_in_a_terminal_ends_with_a_killed_guardctl(
    warm_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**warm_env, "GUARDCTL_KUBECTL": str(fake_kubectl(tmp_path)),
           "GUARDCTL_FORKSERVER": "0"}
    child = pexpect.spawn(sys.executable, ["-m", "guardctl", "get", "pods"], env=env,
                          timeout=TIMEOUT)
    try:
        child.expect(r"pids \d+ \d+ read \d+")
        kubectl_pid, runner_pid = _parse_pids(child.after.decode())
        assert runner_pid == child.pid
        _kill_and_check(env, kubectl_pid, runner_pid)
    finally:
        child.close(force=True)
