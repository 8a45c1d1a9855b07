"""A half-written last line of the audit log (issue 13, item 7): a crash mid-write, or a disk
that filled up. `audit verify` says so in one line; the next command runs, closes the line
off, vouches for it in its own record and chains on; the line stays visible, never dropped."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from audit_helpers import invoke, ticking_log, verify_home

from guardctl.recording import audit

KUBECTL = shutil.which("kubectl")


def _guardctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardctl", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_a_torn_last_line_is_reported_and_does_not_stop_the_next_command(
    agent_env: dict[str, str],
) -> None:
    log = audit.log_path(Path(agent_env["GUARDCTL_HOME"]))
    assert _guardctl(agent_env, "get", "ns").returncode == 0
    torn = log.read_bytes().splitlines(keepends=True)[-1][:-30]  # a record cut short
    with open(log, "ab") as f:
        f.write(torn)

    reported = _guardctl(agent_env, "audit", "verify")
    assert reported.returncode == 1
    lines = reported.stderr.splitlines()
    assert len(lines) == 1 and str(log) in lines[0], reported.stderr
    assert "cut short" in lines[0] and "next guardctl command" in lines[0]
    # doctor warns, and does not tell the person to start a new log over a torn line
    doctor = _guardctl(agent_env, "doctor")
    audit_lines = [x for x in doctor.stdout.splitlines() if "cut short" in x]
    assert audit_lines and "warn" in audit_lines[0].lower(), doctor.stdout
    assert "start a new log" not in doctor.stdout

    ran = _guardctl(agent_env, "get", "ns")
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(x) for x in log.read_bytes().splitlines() if x.endswith(b"}")]
    closing = next(r for r in records if "torn" in r)
    assert closing["torn"] == hashlib.sha256(torn).hexdigest()
    assert torn + b"\n" in log.read_bytes()  # closed off, never rewritten nor dropped

    verified = _guardctl(agent_env, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "1 torn line closed off" in verified.stdout  # accepted, not hidden


def test_a_record_that_lost_only_its_newline_is_kept_in_the_chain(isolated_home: Path) -> None:
    """A write that stopped one byte short (a full disk) left a whole record: the next one
    follows it, and verify counts both."""
    log = ticking_log(isolated_home)
    invoke(isolated_home, log, "s1", b"one\n")
    path = audit.log_path(isolated_home)
    path.write_bytes(path.read_bytes()[:-1])
    torn = verify_home(isolated_home)
    assert "cut short" in torn.message and torn.torn_tail and not torn.ok
    invoke(isolated_home, log, "s1", b"two\n")
    result = verify_home(isolated_home)
    assert (result.ok, result.records) == (True, 4), result.message
    assert "torn" not in result.message
