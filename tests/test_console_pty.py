"""Approvals through real terminals: the inline prompt on a pexpect pty, queued requests
answered with the console's keys, windows, many waiters, and a waiter killed outright.

Queued waiters run with `start_new_session=True` and pipes, as an agent's shell tool runs
guardctl: no terminal on stdin and no controlling terminal, so /dev/tty cannot be opened.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from guardctl.approvals.prompt import current_user
from guardctl.approvals.queue import AnswerError, Queue, Request, answer
from guardctl.recording.audit import Approver

DRIVER = str(Path(__file__).resolve().parent / "data" / "approval_driver.py")
REPO = str(Path(__file__).resolve().parent.parent)
CONSOLE = ["-m", "guardctl", "approvals"]  # the human's real command
EXEC_DEV = "kubectl exec -it web -n dev -- sh"
PATCH = "kubectl patch clusterrole view --type=merge -p '{\"metadata\":{}}'"
WAIT = 15  # seconds any single expectation may take


def _environ(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO, "COLUMNS": "160", **extra}


def _queued_driver(line: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, DRIVER, line],
        env=_environ(**extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=WAIT)
    return proc.returncode, out, err


def _requests(home: Path, count: int) -> list[Request]:
    """Wait (bounded) until `count` requests are queued; return them."""
    queue = Queue(home)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = [queue.load(p.stem) for p in queue.requests.glob("*.json")]
        live = [r for r in found if r is not None]
        if len(live) >= count:
            return live
        time.sleep(0.05)
    raise AssertionError(f"expected {count} queued requests")


@pytest.fixture
def console() -> Iterator[pexpect.spawn]:
    child = pexpect.spawn(sys.executable, CONSOLE, env=_environ(), encoding="utf-8",
                          dimensions=(60, 160), timeout=WAIT)
    yield child
    child.close(force=True)


def _quit(child: pexpect.spawn) -> None:
    child.send("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# --------------------------------------------------------------------------- inline prompt


@pytest.mark.parametrize(
    ("line", "key", "status", "result", "shown"),
    [
        (EXEC_DEV, "y", 0, "approved=True how=inline", ["exec-into-container", "namespace=dev"]),
        (EXEC_DEV, "n", 12, "approved=False how=inline", ["Exec, attach and debug"]),
        (PATCH, "y", 0, "approved=True how=inline", ["rbac-change", "+  replicas: 3"]),
    ],
)
def test_inline_prompt_reads_the_answer_from_the_terminal(
    line: str, key: str, status: int, result: str, shown: list[str]
) -> None:
    child = pexpect.spawn(sys.executable, [DRIVER, line], env=_environ(), encoding="utf-8",
                          dimensions=(60, 160), timeout=WAIT)
    child.expect("Approve this command")
    for text in shown:
        assert text in child.before
    child.send("x")  # other keys are ignored
    child.send(key)
    child.expect(f"{result} approver={current_user()} ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == status


def test_inline_prompt_times_out(tmp_path: Path) -> None:
    child = pexpect.spawn(sys.executable, [DRIVER, EXEC_DEV], encoding="utf-8", timeout=WAIT,
                          env=_environ(GUARDCTL_APPROVAL_TIMEOUT="1"))
    child.expect("approved=False how=timeout approver=- reason=timed out after 1 s")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 12


# --------------------------------------------------------------------------- queued + console


def test_queued_request_approved_with_a(isolated_home: Path, console: pexpect.spawn) -> None:
    waiter = _queued_driver(EXEC_DEV)
    _requests(isolated_home, 1)
    console.expect("1 pending")
    console.expect("q quit")
    console.send("a")
    status, out, err = _finish(waiter)
    assert status == 0
    assert f"approved=True how=queue approver={current_user()} reason=approved once" in out
    assert err.startswith("guardctl: waiting up to 300 s") and "guardctl approvals" in err
    console.expect("approved once: kubectl exec")
    _quit(console)
    assert list(Queue(isolated_home).requests.iterdir()) == []


def test_queued_request_declined_with_a_reason(isolated_home: Path,
                                               console: pexpect.spawn) -> None:
    waiter = _queued_driver(EXEC_DEV)
    _requests(isolated_home, 1)
    console.expect("1 pending")
    console.expect("q quit")
    console.send("d")
    console.expect("reason for declining")
    console.send("use a read-only commandd\x7f\r")  # with a backspace
    status, out, err = _finish(waiter)
    assert status == 12
    assert "reason=use a read-only command\n" in out
    assert "declined by" in err and "use a read-only command." in err
    _quit(console)


def test_queued_request_times_out_and_leaves_nothing(isolated_home: Path) -> None:
    status, out, err = _finish(_queued_driver(EXEC_DEV, GUARDCTL_APPROVAL_TIMEOUT="1"))
    assert status == 12
    assert "approved=False how=timeout" in out and "timed out after 1 s" in out
    assert "waiting up to 1 s" in err
    queue = Queue(isolated_home)
    assert list(queue.requests.iterdir()) == [] and list(queue.answers.iterdir()) == []


def test_window_approves_matching_requests_only(isolated_home: Path,
                                                console: pexpect.spawn) -> None:
    waiter = _queued_driver(EXEC_DEV)
    _requests(isolated_home, 1)
    console.expect("1 pending")
    console.expect("q quit")
    console.send("w")
    console.expect(r"exec-into-container in dev for how many minutes\? \[15\]")
    console.send("\r")
    status, out, _ = _finish(waiter)
    assert status == 0 and "reason=window until" in out
    # same rule and namespace, another pod: approved by the window, nobody asked
    status, out, err = _finish(_queued_driver("kubectl exec -it api -n dev -- ls"))
    assert status == 0 and f"how=window approver={current_user()}" in out
    assert "waiting" not in err
    # another namespace still asks (and here times out)
    status, out, err = _finish(_queued_driver("kubectl exec -it web -n prod -- sh",
                                              GUARDCTL_APPROVAL_TIMEOUT="1"))
    assert status == 12 and "how=timeout" in out and "waiting up to 1 s" in err
    _quit(console)


def test_console_selects_among_several_with_keys(isolated_home: Path,
                                                 console: pexpect.spawn) -> None:
    lines = ["kubectl exec -it a -n dev -- sh", "kubectl exec -it b -n dev -- sh",
             "kubectl exec -it c -n dev -- sh"]
    waiters = []
    for count, line in enumerate(lines, start=1):
        waiters.append(_queued_driver(line))
        _requests(isolated_home, count)  # queued in this order: oldest first in the view
    console.expect("3 pending")
    console.expect("q quit")
    console.send("jj")  # down twice: the third
    console.send("a")
    console.expect("approved once: kubectl exec -it c")
    console.send("k")  # the list is now a, b; up from a stays on a
    console.send("\x1b[B")  # arrow down: b
    console.send("d")
    console.expect("reason for declining")
    console.send("not b\r")
    console.expect("declined: not b")
    console.send("d")
    console.expect("reason for declining")
    console.send("not a\r")
    results = [_finish(w) for w in waiters]
    assert [r[0] for r in results] == [12, 12, 0]
    assert "reason=not a\n" in results[0][1] and "reason=not b\n" in results[1][1]
    _quit(console)


def test_ten_waiters_each_get_their_own_answer(isolated_home: Path) -> None:
    waiters = [_queued_driver(f"kubectl exec -it pod{i} -n dev -- sh") for i in range(10)]
    by_pid = {r.pid: r for r in _requests(isolated_home, 10)}
    order = list(range(10))
    random.Random(7).shuffle(order)
    for i in order:
        request = by_pid[waiters[i].pid]
        assert f"pod{i}" in request.line
        approver = Approver("alice", "/dev/pts/9", time.time())
        answer(isolated_home, request.id, approved=i % 3 == 0, reason=f"no {i}",
               approver=approver)
    for i, waiter in enumerate(waiters):
        status, out, _ = _finish(waiter)
        if i % 3 == 0:
            assert status == 0 and "approved=True how=queue approver=alice" in out
        else:
            assert status == 12 and f"reason=no {i}\n" in out
    assert list(Queue(isolated_home).requests.iterdir()) == []


def test_killed_waiter_is_never_approvable(isolated_home: Path, console: pexpect.spawn) -> None:
    waiter = _queued_driver(EXEC_DEV)
    (request,) = _requests(isolated_home, 1)
    waiter.send_signal(signal.SIGKILL)
    waiter.communicate(timeout=WAIT)
    with pytest.raises(AnswerError):
        answer(isolated_home, request.id, approved=True,
               approver=Approver("alice", None, time.time()))
    console.expect("removed 1 dead request")
    console.expect("no requests are waiting")
    assert list(Queue(isolated_home).requests.iterdir()) == []
    assert list(Queue(isolated_home).answers.iterdir()) == []
    _quit(console)


def test_terminated_waiter_removes_its_request(isolated_home: Path) -> None:
    waiter = _queued_driver(EXEC_DEV)
    _requests(isolated_home, 1)
    waiter.send_signal(signal.SIGTERM)
    status, _, _ = _finish(waiter)
    assert status == 128 + signal.SIGTERM
    assert list(Queue(isolated_home).requests.iterdir()) == []


def test_console_needs_a_terminal() -> None:
    done = subprocess.run([sys.executable, *CONSOLE], env=_environ(), capture_output=True,
                          text=True, timeout=WAIT, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "needs a terminal" in done.stderr


def test_a_key_never_answers_a_request_that_took_the_place_of_the_one_shown(
    isolated_home: Path, console: pexpect.spawn
) -> None:
    first = _queued_driver("kubectl exec -it a -n dev -- sh")
    (shown_first,) = _requests(isolated_home, 1)
    second = _queued_driver("kubectl exec -it b -n dev -- sh")
    _requests(isolated_home, 2)
    console.expect("2 pending")
    console.expect("q quit")
    # the selected (oldest) request is answered in another window; the view moves on to b
    answer(isolated_home, shown_first.id, approved=False, reason="not a",
           approver=Approver("other", None, time.time()))
    assert _finish(first)[0] == 12
    console.expect("1 pending")
    console.expect(r"kubectl exec -it a -n dev -- sh: no longer waiting")
    console.expect("q quit")
    console.send("a")  # meant for a, which the person was looking at
    console.expect("nothing was answered")
    assert second.poll() is None
    assert Queue(isolated_home).pending(time.time()) != []  # b is still waiting, unanswered
    console.expect("q quit")
    console.send("a")  # now b was shown: the key answers it
    console.expect("approved once: kubectl exec -it b")
    status, out, _ = _finish(second)
    assert status == 0 and "approved=True how=queue" in out
    _quit(console)

