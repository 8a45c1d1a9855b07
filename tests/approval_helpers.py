"""The human's side of an approval in end-to-end tests: wait until the agent's command has
queued its request, answer it with `guardctl approvals`, wait for the command to end."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any, NamedTuple

# `guardctl ARGS` as the approver: locally, or through a broker
Approver = Callable[..., "subprocess.CompletedProcess[Any]"]


class Answered(NamedTuple):
    item: dict[str, Any]  # the request as `approvals list --json` showed it
    answer: subprocess.CompletedProcess[Any]  # `approvals VERB ID …`
    out: Any  # the waiter's stdout and stderr
    err: Any


def answered(
    waiter: subprocess.Popen[Any], approver: Approver, verb: str, *flags: str,
    stdin: str | bytes | None = None, while_queued: Callable[[dict[str, Any]], None] | None = None,
    seconds: float = 60,
) -> Answered:
    """Give `waiter` its `stdin` (if it has a pipe for it), wait (at most `seconds`) until
    its request is queued, run `while_queued` on it, answer it (`approvals VERB ID FLAGS…`,
    which must succeed) and wait for the waiter to end; it is killed if it has not. Its
    output is read once it ended (a waiter here prints little)."""
    try:
        if waiter.stdin is not None:
            if stdin:
                waiter.stdin.write(stdin)
            waiter.stdin.close()
        item = _queued(waiter, approver, seconds)
        if while_queued is not None:
            while_queued(item)
        answer = approver("approvals", verb, str(item["id"]), *flags)
        assert answer.returncode == 0, answer.stderr
        waiter.wait(timeout=seconds)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    out = waiter.stdout.read() if waiter.stdout is not None else None
    err = waiter.stderr.read() if waiter.stderr is not None else None
    return Answered(item, answer, out, err)


def _queued(waiter: subprocess.Popen[Any], approver: Approver, seconds: float) -> dict[str, Any]:
    """The first waiting request, once `approvals list --json` shows one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = approver("approvals", "list", "--json")
        assert done.returncode == 0, done.stderr
        listed = done.stdout.splitlines()
        if listed:
            found: dict[str, Any] = json.loads(listed[0])
            return found
        if waiter.poll() is not None:
            break
        time.sleep(0.1)
    ended = waiter.poll() is not None and waiter.stderr is not None
    raise AssertionError(f"nothing was queued: {waiter.stderr.read() if ended else 'no request'}")
