"""Approvals under concurrency and signals, with separate processes: two approvers answering
one request at the same moment (the first answer is final, the other is refused and told
so), and a waiting guardctl ended by a signal (its audit record says the status it exits
with, and its request is withdrawn).

The waiters are the approval driver (the real queue path, quick to start), the real
`guardctl` against the devserver, and an agent's guardctl through a broker. The approvers
are processes that answer the way the console's keys do (tests/data/approval_answerer.py),
released together, and two `guardctl approvals` consoles in pseudo-terminals.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pexpect
import pytest
from broker_setup import Broker

from guardctl.approvals.queue import GONE, Queue, Request
from guardctl.devserver import DevServer

DATA = Path(__file__).resolve().parent / "data"
DRIVER = str(DATA / "approval_driver.py")
ANSWERER = str(DATA / "approval_answerer.py")
REPO = str(Path(__file__).resolve().parent.parent)
EXEC_DEV = "kubectl exec -it web -n dev -- sh"
READ_SECRET = ["get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"]
WAIT = 30  # seconds any single process may take
TRIALS = 12
# what a console shows an approver whose answer came second
REFUSED = rb"(already (approved|declined) by \S+: the first answer stands|no longer waiting)"


def _environ(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    return {**(base or os.environ), "PYTHONPATH": REPO, **extra}


def _background(argv: list[str], environ: dict[str, str]) -> subprocess.Popen[str]:
    """A process as an agent's shell tool starts one: pipes, no controlling terminal."""
    return subprocess.Popen(argv, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@contextlib.contextmanager
def _ending(*procs: subprocess.Popen[str] | subprocess.Popen[bytes]) -> Iterator[None]:
    """Whatever happens in the block, the processes are gone after it."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _one_request(home: Path) -> Request:
    """Wait (bounded) for the one queued request."""
    queue = Queue(home)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = [queue.load(p.stem) for p in queue.requests.glob("*.json")]
        live = [r for r in found if r is not None]
        if live:
            assert len(live) == 1
            return live[0]
        time.sleep(0.05)
    raise AssertionError("no request was queued")


def _left_nothing(home: Path) -> None:
    queue = Queue(home)
    assert list(queue.requests.iterdir()) == [] and list(queue.answers.iterdir()) == []


def _completed(home: Path) -> dict[str, object]:
    """The last "completed" record of the audit log."""
    lines = (home / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if r.get("status") == "completed"][-1]


# --------------------------------------------------------------------------- two approvers


def _answer_together(request: Request, environ: dict[str, str]) -> dict[str, str]:
    """Two approver processes, one declining and one approving, released at once;
    {verdict: what it printed}."""
    approvers = {
        verdict: subprocess.Popen(
            [sys.executable, ANSWERER, request.id, verdict, user], env=environ,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for verdict, user in (("decline", "dana"), ("approve", "abe"))
    }
    with _ending(*approvers.values()):
        for proc in approvers.values():
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in approvers.values():  # both are waiting on stdin: release them together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return {verdict: proc.communicate(timeout=WAIT)[0].strip()
                for verdict, proc in approvers.items()}


def _winner(said: dict[str, str]) -> str:
    """The one approver whose answer counted; the other must have been refused, and told
    whose answer stood (or, when it came after the waiter had taken the first answer and
    gone, that the request is no longer waiting)."""
    answered = [v for v, text in said.items() if text.startswith("answered: ")]
    assert len(answered) == 1, said
    (loser,) = set(said) - set(answered)
    verdict, who = ("approved", "abe") if answered[0] == "approve" else ("declined", "dana")
    assert said[loser] in (
        f"refused: already {verdict} by {who}: the first answer stands, yours was not used",
        f"refused: {GONE}",
    ), said
    return answered[0]


def test_two_approvers_at_once_only_the_first_answer_counts(isolated_home: Path) -> None:
    for _ in range(TRIALS):
        waiter = _background([sys.executable, DRIVER, EXEC_DEV], _environ())
        with _ending(waiter):
            winner = _winner(_answer_together(_one_request(isolated_home), _environ()))
            out, err = waiter.communicate(timeout=WAIT)
        if winner == "approve":
            assert waiter.returncode == 0 and "approved=True how=queue approver=abe" in out
        else:
            assert waiter.returncode == 12, (out, err)
            assert "approved=False how=queue approver=dana reason=declined by dana" in out
        _left_nothing(isolated_home)


@pytest.mark.parametrize("forkserver", ["1", "0"])
def test_a_declined_command_never_runs_whoever_answers_second(
    agent_env: dict[str, str], devserver: DevServer, forkserver: str
) -> None:
    environ = _environ(agent_env, GUARDCTL_APPROVAL_TIMEOUT="60", GUARDCTL_FORKSERVER=forkserver)
    home = Path(environ["GUARDCTL_HOME"])
    for _ in range(3):
        devserver.clear_requests()
        waiter = _background([sys.executable, "-m", "guardctl", *READ_SECRET], environ)
        with _ending(waiter):
            winner = _winner(_answer_together(_one_request(home), environ))
            out, err = waiter.communicate(timeout=WAIT)
        read = [r for r in devserver.requests if "secrets" in r[1]]
        record = _completed(home)
        if winner == "approve":
            assert waiter.returncode == 0, err
            assert "approved by abe" in err and read
            assert record["exit_code"] == 0 and record["approver"]["user"] == "abe"  # type: ignore[index]
        else:
            assert waiter.returncode == 12, err
            assert "declined by dana" in err and not read and out == ""
            assert record["exit_code"] == 12 and record["approver"] is None
        _left_nothing(home)


def _consoles_answer_together(declining: pexpect.spawn, approving: pexpect.spawn) -> str:
    """`d` with a reason in one console and `a` in the other, sent at the same moment; the
    verdict that counted. The other console must say its answer was refused."""
    for console in (declining, approving):
        console.expect("approval needed")  # the request's panel, then the keys under it
        console.expect("q quit")
    declining.send("d")
    declining.expect("reason for declining")
    declining.send("no")
    declining.expect("no")
    declining.send("\r")
    approving.send("a")
    approved = approving.expect([rb"approved once: kubectl", REFUSED]) == 0
    declined = declining.expect([rb"declined: no: kubectl", REFUSED]) == 0
    assert approved != declined
    for console in (declining, approving):
        console.send("q")
        console.expect(pexpect.EOF)
    return "approve" if approved else "decline"


def test_two_consoles_answering_at_once_the_second_is_told(isolated_home: Path) -> None:
    waiter = _background([sys.executable, DRIVER, EXEC_DEV], _environ())
    consoles = [pexpect.spawn(sys.executable, ["-m", "guardctl", "approvals"], env=_environ(),
                              dimensions=(60, 160), timeout=WAIT) for _ in range(2)]
    with _ending(waiter):
        try:
            _one_request(isolated_home)
            winner = _consoles_answer_together(*consoles)
            out, _ = waiter.communicate(timeout=WAIT)
        finally:
            for console in consoles:
                console.close(force=True)
    if winner == "approve":
        assert waiter.returncode == 0 and "approved=True how=queue" in out
    else:
        assert waiter.returncode == 12 and "approved=False how=queue" in out
        assert "reason=no\n" in out
    _left_nothing(isolated_home)


def test_two_approvers_through_the_broker_only_the_first_answer_counts(
    patient_broker: Broker, devserver: DevServer
) -> None:
    broker = patient_broker
    devserver.clear_requests()
    agent = broker.agent_popen(*READ_SECRET)
    consoles = [broker.approver_terminal("approvals") for _ in range(2)]
    with _ending(agent):
        try:
            winner = _consoles_answer_together(*consoles)
            out, err = agent.communicate(timeout=WAIT)
        finally:
            for console in consoles:
                console.close(force=True)
    read = [r for r in devserver.requests if "secrets" in r[1]]
    if winner == "approve":
        assert agent.returncode == 0, err
        assert b"approved by root" in err and b"AWS_ACCESS_KEY_ID:" in out and read
    else:
        assert agent.returncode == 12, err
        assert b"declined by root: no." in err and out == b"" and not read
    _left_nothing(Path(broker.environ["GUARDCTL_HOME"]))


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("forkserver", ["1", "0"])
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_wait_ended_by_a_signal_is_recorded_with_its_exit_status(
    isolated_home: Path, forkserver: str, signum: int, status: int
) -> None:
    waiter = _background([sys.executable, "-m", "guardctl", *EXEC_DEV.split()[1:]],
                         _environ(GUARDCTL_FORKSERVER=forkserver))
    with _ending(waiter):
        _one_request(isolated_home)
        waiter.send_signal(signum)
        _, err = waiter.communicate(timeout=WAIT)
    assert waiter.returncode == status, err
    assert "Traceback" not in err and re.search(r"waiting up to \d+ s", err)
    assert _completed(isolated_home)["exit_code"] == status
    _left_nothing(isolated_home)


def _only_child(pid: int) -> int:
    """The one child process of `pid` (runuser's: the command it runs as another user)."""
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_wait_through_the_broker_ended_by_a_signal_is_recorded_with_its_exit_status(
    patient_broker: Broker, signum: int, status: int
) -> None:
    home = Path(patient_broker.environ["GUARDCTL_HOME"])
    agent = patient_broker.agent_popen(*READ_SECRET)
    with _ending(agent):
        _one_request(home)
        # to the agent's guardctl itself (runuser would end its session its own way)
        os.kill(_only_child(agent.pid), signum)
        _, err = agent.communicate(timeout=WAIT)
    assert agent.returncode == status, err
    assert _completed(home)["exit_code"] == status
    _left_nothing(home)
