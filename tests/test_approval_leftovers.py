"""A guardctl killed outright (SIGKILL) while it waits for a human leaves no request behind.

Its request is never shown as waiting (the waiter's process is gone), the next command
that queues a request sweeps the dead one away, and no approver can answer it. Real
processes: guardctl run alone and in a fork server's worker, the devserver, the real kubectl.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardctl.approvals.queue import Queue

TIMEOUT = 30


def _wait_queued(queue: Queue, count: int) -> list[object]:
    deadline = time.monotonic() + TIMEOUT
    while len(pending := queue.pending(time.time())) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(pending)


def _ask(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A read of a Secret's values: it waits in the queue for a human (no terminal)."""
    return subprocess.Popen(
        [sys.executable, "-m", "guardctl", "get", "secret", "app-secrets", "-n", "dev", "-o",
         "yaml"],
        env={**env, "GUARDCTL_APPROVAL_TIMEOUT": "60"}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def _files(queue: Queue) -> list[str]:
    return sorted(p.name for p in queue.requests.iterdir()) if queue.requests.exists() else []


@pytest.mark.parametrize("mode", ["alone", "warm"])
def test_a_killed_waiter_leaves_no_request(agent_env: dict[str, str], tmp_path: Path,
                                           mode: str) -> None:
    home = tmp_path / "home"
    env = {**agent_env, "GUARDCTL_HOME": str(home),
           **({"GUARDCTL_FORKSERVER": "0"} if mode == "alone" else {})}
    queue = Queue(home)
    first = _ask(env)
    second = None
    try:
        (request,) = _wait_queued(queue, 1)
        assert f"{request.id}.json" in _files(queue)  # type: ignore[attr-defined]
        # the process that waits: guardctl itself, or the worker that runs it
        os.kill(request.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        first.wait(TIMEOUT)
        assert queue.pending(time.time()) == []  # never shown as waiting
        second = _ask(env)
        (other,) = _wait_queued(queue, 1)
        assert other.id != request.id  # type: ignore[attr-defined]
        assert f"{request.id}.json" not in _files(queue)  # type: ignore[attr-defined]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(TIMEOUT)
