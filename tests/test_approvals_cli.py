"""`guardctl approvals list|approve|deny`: the queue for scripts, as separate processes.

Waiters are the approval driver (the real queue path; no terminal, as an agent's shell tool
runs guardctl), or requests this test process queues itself (its pid keeps them alive), so
that "answered already" can be seen before a waiter takes the answer away. Through a broker:
the agent is refused, the approver answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from approval_helpers import answered
from broker_setup import Broker

from guardctl.app import Checker
from guardctl.approvals.queue import Queue, Request, build_request
from guardctl.env import Environment

DATA = Path(__file__).resolve().parent / "data"
DRIVER = str(DATA / "approval_driver.py")
REPO = str(Path(__file__).resolve().parent.parent)
EXEC_DEV = "kubectl exec -it web -n dev -- sh"
READ_SECRET = ["get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"]
WAIT = 30


def _environ(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO, **extra}


def guardctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guardctl", *args], env=_environ(),
                          capture_output=True, text=True, timeout=WAIT,
                          stdin=subprocess.DEVNULL)


def _queue_here(home: Path, line: str = EXEC_DEV, *, expires_in: float = 300) -> Request:
    """A request whose waiter is this test process (alive for the whole test)."""
    decision = Checker.load(Environment()).check(line)
    now = time.time()
    request = build_request(decision, line, cluster="", context="", default_namespace="",
                            diff=None, now=now, timeout=expires_in)
    Queue(home).put(request)
    return request


def _waiter(line: str = EXEC_DEV) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, DRIVER, line], env=_environ(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _listed(count: int) -> list[dict[str, object]]:
    """`list --json` once it shows `count` requests (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        done = guardctl("approvals", "list", "--json")
        assert done.returncode == 0, done.stderr
        found = [json.loads(line) for line in done.stdout.splitlines()]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"expected {count} waiting requests")


def test_list_is_empty_without_requests() -> None:
    done = guardctl("approvals", "list")
    assert done.returncode == 0 and done.stdout == "no requests are waiting\n"
    done = guardctl("approvals", "list", "--json")
    assert done.returncode == 0 and done.stdout == ""


def test_list_shows_what_a_human_needs_and_never_the_nonce(isolated_home: Path) -> None:
    request = _queue_here(isolated_home)
    (item,) = _listed(1)
    assert item["id"] == request.id and item["line"] == EXEC_DEV
    assert item["namespaces"] == ["dev"]
    assert item["rules"] == [{"id": "exec-into-container", "reason": request.rules[0][1]}]
    assert item["window_scopes"] == [{"rule": "exec-into-container", "namespace": "dev"}]
    assert 290 <= int(item["waits_seconds"]) <= 300  # type: ignore[call-overload]
    text = guardctl("approvals", "list", "--json").stdout
    assert request.nonce not in text and request.key not in text
    table = guardctl("approvals", "list").stdout
    assert table.startswith(request.id[:12]) and "exec-into-container  [dev]  kubectl exec" in table


def test_approve_by_prefix_reaches_the_waiter_and_a_window_covers_the_next(
    isolated_home: Path,
) -> None:
    waiter = _waiter()
    try:
        (item,) = _listed(1)
        done = guardctl("approvals", "approve", str(item["id"])[:6], "--window", "10m")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("window until ") and EXEC_DEV in done.stdout
        out, _ = waiter.communicate(timeout=WAIT)
    finally:
        waiter.kill()
        waiter.wait()
    assert waiter.returncode == 0 and "approved=True how=queue" in out
    # the window: same rule and namespace, another pod, nobody asked
    nxt = _waiter("kubectl exec -it api -n dev -- ls")
    out, _ = nxt.communicate(timeout=WAIT)
    assert nxt.returncode == 0 and "how=window" in out


def test_deny_with_a_reason_reaches_the_waiter(isolated_home: Path) -> None:
    waiter = _waiter()
    try:
        (item,) = _listed(1)
        done = guardctl("approvals", "deny", str(item["id"]), "--reason", "use logs instead")
        assert done.returncode == 0 and done.stdout.startswith("declined: use logs instead")
        out, err = waiter.communicate(timeout=WAIT)
    finally:
        waiter.kill()
        waiter.wait()
    assert waiter.returncode == 12 and "reason=use logs instead\n" in out
    assert "declined by" in err


def test_the_first_answer_is_final(isolated_home: Path) -> None:
    request = _queue_here(isolated_home)
    assert guardctl("approvals", "deny", request.id, "--reason", "no").returncode == 0
    for args in (["approve", request.id], ["deny", request.id, "--reason", "x"]):
        done = guardctl("approvals", *args)
        assert done.returncode == 13
        assert done.stderr.count("\n") == 1 and "already declined by" in done.stderr
    assert Queue(isolated_home).take_answer(request).reason == "no"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["approve", "0123456789abcdef0123456789abcdef"], 13, "no request 0123456789abcdef"),
        (["approve", "../etc"], 2, "is not a request id"),
        (["approve", "ID", "--window", "10x"], 2, "--window '10x'"),
        (["approve", "ID", "--window", "9h"], 2, "--window '9h'"),
        (["deny", "ID", "--reason", "  "], 2, "deny needs --reason"),
        (["deny", "ID"], 2, "Missing option '--reason'"),
    ],
)
def test_refusals_are_one_line_with_their_exit_status(
    isolated_home: Path, args: list[str], status: int, message: str
) -> None:
    request = _queue_here(isolated_home)
    done = guardctl("approvals", *[request.id if a == "ID" else a for a in args])
    assert done.returncode == status and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert Queue(isolated_home).take_answer(request) is None  # nothing was answered


def test_expired_and_unwindowable_requests_are_refused(isolated_home: Path) -> None:
    expired = _queue_here(isolated_home, expires_in=-60)
    done = guardctl("approvals", "approve", expired.id)
    assert done.returncode == 13 and "no request" in done.stderr
    vague = _queue_here(isolated_home, "kubectl $VERB pods -n dev")
    done = guardctl("approvals", "approve", vague.id, "--window", "1h")
    assert done.returncode == 13 and "no window can cover it" in done.stderr
    assert Queue(isolated_home).take_answer(vague) is None


def test_a_prefix_must_name_one_request(isolated_home: Path) -> None:
    queue = Queue(isolated_home)
    requests = [_queue_here(isolated_home)._replace(id=f"abcd{n}" + "0" * 27) for n in (1, 2)]
    for request in requests:
        queue.put(request)
    done = guardctl("approvals", "approve", "abcd")
    assert done.returncode == 2 and "names 2 waiting requests" in done.stderr
    done = guardctl("approvals", "approve", "abc")  # shorter than any prefix may be
    assert done.returncode == 13 and "no request abc is waiting" in done.stderr
    done = guardctl("approvals", "approve", "abcd1")
    assert done.returncode == 0, done.stderr
    answers = [queue.take_answer(r) for r in requests]
    assert answers[0] is not None and answers[0].approved and answers[1] is None


# --------------------------------------------------------------------------- broker


def test_through_the_broker_only_the_approver_answers(patient_broker: Broker) -> None:
    broker = patient_broker
    through = {"GUARDCTL_BROKER": str(broker.socket)}
    agent = broker.agent_popen(*READ_SECRET)
    approver = partial(broker.broker_guardctl, extra=through)

    def while_queued(item: dict[str, Any]) -> None:
        table = broker.broker_guardctl("approvals", "list", extra=through).stdout.decode()
        assert "[dev]  gctest-agent (uid " in table and "agent): kubectl get secret" in table
        for args in (["approvals", "list"], ["approvals", "approve", str(item["id"])]):
            refused = broker.agent(*args)
            assert refused.returncode == 11 and b"is for the approver" in refused.stderr

    _, done, out, err = answered(agent, approver, "approve", while_queued=while_queued,
                                 seconds=WAIT)
    assert done.stdout.startswith(b"approved once: kubectl get")
    assert agent.returncode == 0 and b"approved by root" in err and b"AWS_ACCESS_KEY_ID:" in out
