"""A cast holds what the terminal showed (issue 14): real guardctl runs at a real pty and
through pipes, one session, then the cast played with the real `asciinema cat` (2.4) and
compared byte for byte with what the terminal (or the pipe) received.

A bare "\\n" in a cast is a staircase in asciinema and asciinema-player: the next line
starts where the last one ended. A terminal's output processing (onlcr) turns guardctl's
own "\\n" into "\\r\\n", so the cast must hold that too.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from test_cast import asciinema_cat

from guardctl.recording import recorder

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
SESSION = "term-1"
SECRET = ["get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"]  # waits for a human

RUNS = [
    ["get", "pods", "-n", "dev"],  # allowed: kubectl's table
    ["delete", "ns", "prod"],  # denied: guardctl's own line only
    ["get", "pods", "no-such-pod", "-n", "dev"],  # kubectl's error on its stderr
]


def _environ(agent_env: dict[str, str], session: str) -> dict[str, str]:
    return {**agent_env, "GUARDCTL_SESSION": session}


def _at_terminal(environ: dict[str, str], args: list[str], stdin_null: bool) -> bytes:
    """Everything the terminal received from one guardctl run in a fresh pty.

    `stdin_null`: stdin is /dev/null, so kubectl runs with pipes and guardctl writes its
    output to the terminal."""
    line = shlex.join([sys.executable, "-m", "guardctl", *args])
    child = pexpect.spawn(
        "bash", ["-c", f"exec {line}" + (" </dev/null" if stdin_null else "")],
        env=environ, timeout=60, dimensions=(40, 120),
    )
    try:
        child.expect(pexpect.EOF)
        shown = child.before
        child.close()
    finally:
        child.close(force=True)
    assert isinstance(shown, bytes)
    return shown


def _cast(environ: dict[str, str], session: str) -> Path:
    path = recorder.session_cast(Path(environ["GUARDCTL_HOME"]), session)
    assert path.is_file()
    return path


@pytest.mark.parametrize("stdin_null", [False, True], ids=["pty", "pipes-to-terminal"])
def test_the_cast_plays_what_the_terminal_showed(
    agent_env: dict[str, str], stdin_null: bool
) -> None:
    session = f"{SESSION}-{'pipes' if stdin_null else 'pty'}"
    environ = _environ(agent_env, session)
    shown = b"".join(_at_terminal(environ, args, stdin_null) for args in RUNS)
    assert b"web-7d4b9c8f6d-x2k9p" in shown and b"Nothing was sent" in shown
    played = asciinema_cat(_cast(environ, session)).encode("utf-8")
    assert played == shown
    assert b"\n" not in played.replace(b"\r\n", b"")  # no line starts mid-screen


def test_a_piped_run_casts_what_a_terminal_would_show(agent_env: dict[str, str]) -> None:
    """Output to a pipe (an agent): the cast shows it as a terminal would, each "\\n" as
    "\\r\\n", in the order guardctl wrote it."""
    session = f"{SESSION}-piped"
    environ = _environ(agent_env, session)
    written = b""
    for args in RUNS:
        done = subprocess.run(
            [sys.executable, "-m", "guardctl", *args], env=environ, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False,
        )
        written += done.stdout
    played = asciinema_cat(_cast(environ, session)).encode("utf-8")
    assert played == written.replace(b"\n", b"\r\n")


def test_a_replay_shows_each_command_and_who_approved(agent_env: dict[str, str]) -> None:
    """Issue 14: the cast marks each command and the approver; `guardctl replay` shows the
    commands as prompt lines before their output."""
    import time

    from guardctl.approvals.queue import Queue, answer
    from guardctl.recording.audit import Approver

    session = f"{SESSION}-replay"
    environ = {**_environ(agent_env, session), "GUARDCTL_APPROVAL_TIMEOUT": "30"}
    for args in RUNS[:2]:
        subprocess.run([sys.executable, "-m", "guardctl", *args], env=environ,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
    agent = subprocess.Popen(
        [sys.executable, "-m", "guardctl", *SECRET],
        env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: the request is queued
    )
    try:
        queue = Queue(Path(environ["GUARDCTL_HOME"]))
        deadline = time.monotonic() + 20
        while not (pending := queue.pending(time.time())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pending) == 1
        answer(Path(environ["GUARDCTL_HOME"]), pending[0].id, approved=True,
               approver=Approver(user="alice", tty="/dev/pts/9", at=time.time()))
        assert agent.wait(timeout=60) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.communicate(timeout=60)
    played = subprocess.run(
        [sys.executable, "-m", "guardctl", "replay", session, "--speed", "100"], env=environ,
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
    )
    assert played.returncode == 0, played.stderr
    text = played.stdout.decode()
    get = text.index("$ kubectl get pods -n dev\r\n")
    delete = text.index("$ kubectl delete ns prod\r\n")
    assert get < text.index("web-7d4b9c8f6d-x2k9p") < delete < text.index("Nothing was sent")
    assert "$ kubectl get secret app-secrets -n dev -o yaml\r\n" in text
    markers = [line for line in _cast(environ, session).read_text().splitlines() if '"m"' in line]
    assert any("approval: approved by alice with guardctl approvals" in m for m in markers)
