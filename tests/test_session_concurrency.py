"""Many guardctl processes recording one session at once (issue 13, item 2): separate
processes, the real kubectl, the devserver. Every invocation is recorded intact, none is
refused for bookkeeping, and `audit verify` run while they write never cries tampering."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guardctl.recording import audit, recorder, sessions, verify

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

# more writers than a session once had cast files for (8), on a 2-core machine
WRITERS = 24
TRIALS = 2
# the log is verified at most this many times while the writers run
VERIFY_ROUNDS = 400
COMMANDS = (
    ("get", "pods", "-n", "dev"),
    ("delete", "ns", "prod"),  # denied: recorded, nothing sent
    ("get", "ns"),
    ("get", "deploy", "-n", "dev", "-o", "yaml"),
)


def _guardctl(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "guardctl", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardctl", "audit", "verify"],
        env=env, capture_output=True, text=True, timeout=120,
    )


def _run_trial(env: dict[str, str]) -> tuple[list[tuple[int, bytes]], list[str]]:
    """Start the writers, verify while they run (in this process, to verify often), wait
    for all; (exit, stderr) per writer and every failed verification's message."""
    home = Path(env["GUARDCTL_HOME"])
    writers = [_guardctl(env, *COMMANDS[n % len(COMMANDS)]) for n in range(WRITERS)]
    failures: list[str] = []
    try:
        for _ in range(VERIFY_ROUNDS):
            if all(w.poll() is not None for w in writers):
                break
            checked = verify.verify(audit.log_path(home), recorder.cast_dir(home))
            if not checked.ok:
                failures.append(checked.message)
        results = [(w.wait(timeout=300), w.communicate()[1]) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    return results, failures


def test_concurrent_invocations_of_one_session_are_each_recorded(
    agent_env: dict[str, str],
) -> None:
    home = Path(agent_env["GUARDCTL_HOME"])
    for trial in range(TRIALS):
        session = f"shared-{trial}"
        results, failures = _run_trial({**agent_env, "GUARDCTL_SESSION": session})
        refused = [err.decode() for code, err in results if code not in (0, 11)]
        assert refused == [], refused[:3]
        assert failures == [], failures[:3]
        final = _verify(agent_env)
        assert final.returncode == 0 and "incomplete" not in final.stdout, final.stderr
        rows = sessions.sessions(audit.log_path(home), session=session)
        assert len(rows) == WRITERS
        assert all(r["status"] == "completed" and r["cast"]["sha256"] for r in rows)
