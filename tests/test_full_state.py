"""A state folder that is full or refuses to grow: the exit status still tells the truth.

A command that cannot be recorded does not run (exit 13), but a denied one is still denied
(exit 11); a command that ran exits with kubectl's status, whatever could not be written
after; nothing is shown that the cast does not hold; and no command that never ran is
left looking as if it might have. Real processes, the real kubectl and the devserver; the
limits are real too: `ulimit -f` (files stop growing: EFBIG) and a full tmpfs (ENOSPC) in a
mount namespace of the test's own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guardctl.devserver import DevServer

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
POD = "web-7d4b9c8f6d-x2k9p"
LOG_LINES = 40_000  # about 2 MB of log


def _guardctl(env: dict[str, str], args: list[str], prefix: str) -> subprocess.CompletedProcess[
        bytes]:
    """guardctl ARGS in a bash that first runs `prefix` (a ulimit, a mount)."""
    script = f'{prefix} && exec "$0" -m guardctl "$@"'
    return subprocess.run(["bash", "-c", script, sys.executable, *args], env=env,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


def _records(home: Path) -> list[dict[str, object]]:
    path = home / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _statuses(home: Path) -> list[tuple[object, object]]:
    return [(r["status"], r.get("exit_code")) for r in _records(home)]


@pytest.fixture
def env(agent_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The agent's environment with a state folder of this test's own, run in this process
    (no fork server: the limits are this process's)."""
    return {**agent_env, "GUARDCTL_HOME": str(tmp_path / "home"), "GUARDCTL_FORKSERVER": "0"}


@pytest.fixture
def big_log(devserver: DevServer) -> None:
    devserver.api.logs[("dev", POD)] = {
        "web": [f"line {n} GET /api/items?page={n} 200 user=alice" for n in range(LOG_LINES)]
    }


def test_a_cast_that_stops_growing_stops_the_output_not_the_truth(
    env: dict[str, str], big_log: None
) -> None:
    proc = _guardctl(env, ["logs", POD, "-n", "dev"], "ulimit -f 256")
    err = proc.stderr.decode()
    # kubectl ran: the status is kubectl's (stopped when nothing more could be recorded),
    # never guardctl's "could not run" 13
    assert proc.returncode not in (0, 13), err
    assert "cannot write the cast" in err and "was not shown" in err
    assert 0 < len(proc.stdout) < 256 * 1024
    home = Path(env["GUARDCTL_HOME"])
    assert _statuses(home) == [("started", None), ("completed", proc.returncode)]
    cast = next((home / "casts").glob("*.cast")).read_bytes()
    shown = proc.stdout.decode()
    assert shown.splitlines()[-1].replace("\n", "\\r\\n")[:40] in cast.decode()


def test_a_full_state_folder_denies_what_is_denied_and_runs_nothing(
    env: dict[str, str], devserver: DevServer
) -> None:
    home = Path(env["GUARDCTL_HOME"])
    home.mkdir()
    fill = (f'mount -t tmpfs -o size=64k tmpfs "{home}"'
            f' && (head -c 1M /dev/zero > "{home}/fill" 2>/dev/null; true)')
    probe = subprocess.run(["unshare", "--mount", "bash", "-c", fill], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    script = f'{fill} && exec "$0" -m guardctl "$@"'
    denied = subprocess.run(
        ["unshare", "--mount", "bash", "-c", script, sys.executable, "delete", "ns", "prod"],
        env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
    )
    assert denied.returncode == 11, denied.stderr
    assert b"delete-namespace" in denied.stderr and b"No space left" in denied.stderr
    devserver.clear_requests()
    allowed = subprocess.run(
        ["unshare", "--mount", "bash", "-c", script, sys.executable, "get", "pods", "-n", "dev"],
        env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
    )
    assert allowed.returncode == 13, allowed.stderr
    assert b"the command was not run" in allowed.stderr and allowed.stdout == b""
    assert not [r for r in devserver.requests if "/pods" in r[1]]


def test_a_denied_command_is_denied_when_its_record_cannot_be_written(
    env: dict[str, str],
) -> None:
    # the first record of a new log and its key fit; after that nothing grows
    first = _guardctl(env, ["get", "ns"], "true")
    assert first.returncode == 0, first.stderr
    proc = _guardctl(env, ["delete", "ns", "prod"], "ulimit -f 1")
    assert proc.returncode == 11, proc.stderr
    assert b"delete-namespace" in proc.stderr and b"cannot write" in proc.stderr


def test_a_run_whose_completion_cannot_be_written_keeps_kubectls_status(
    env: dict[str, str], tmp_path: Path
) -> None:
    home = Path(env["GUARDCTL_HOME"])
    home.mkdir()
    # a kubectl that fills the state folder while it runs, after the "started" record: as a
    # real one, it reads its kubeconfig first (which a kubectl started ahead waits for)
    filler = tmp_path / "kubectl"
    filler.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *"create token"*) exec {KUBECTL} "$@";; esac\n'
        '/usr/bin/cat "$KUBECONFIG" > /dev/null\n'
        f'/usr/bin/head -c 1M /dev/zero > "{home}/fill" 2>/dev/null\n'
        "echo pod/web\n"
    )
    filler.chmod(0o755)
    mount = f'mount -t tmpfs -o size=256k tmpfs "{home}"'
    script = f'{mount} && exec "$0" -m guardctl "$@"'
    proc = subprocess.run(
        ["unshare", "--mount", "bash", "-c", script, sys.executable, "get", "pods", "-o", "name"],
        env={**env, "GUARDCTL_KUBECTL": str(filler)}, capture_output=True,
        stdin=subprocess.DEVNULL, timeout=120,
    )
    if b"mount:" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert proc.stdout == b"pod/web\n"
    assert "completion is not recorded" in err
