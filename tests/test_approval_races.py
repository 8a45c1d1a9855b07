"""Approvals under concurrency and signals, with separate processes: two approvers answering
one request at the same moment (the first answer is final, the other is refused and told
so), and a waiting guardctl ended by a signal (its audit record says the status it exits
with, and its request is withdrawn).

The waiters are the approval driver (the real queue path, quick to start) and the real
`guardctl` against the devserver; the approvers are processes that answer the way the
console's keys do (tests/data/approval_answerer.py), released together.
"""

from __future__ import annotations

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
from broker_setup import Broker, running_broker

from guardctl.approvals.queue import Queue, Request
from guardctl.devserver import DevServer

DATA = Path(__file__).resolve().parent / "data"
DRIVER = str(DATA / "approval_driver.py")
ANSWERER = str(DATA / "approval_answerer.py")
REPO = str(Path(__file__).resolve().parent.parent)
EXEC_DEV = "kubectl exec -it web -n dev -- sh"
READ_SECRET = ["get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"]
WAIT = 30  # seconds any single process may take
TRIALS = 12


def _environ(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    return {**(base or os.environ), "PYTHONPATH": REPO, **extra}


def _background(argv: list[str], environ: dict[str, str]) -> subprocess.Popen[str]:
    """A process as an agent's shell tool starts one: pipes, no controlling terminal."""
    return subprocess.Popen(argv, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


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


def _only_child(pid: int) -> int:
    """The one child process of `pid` (runuser's: the command it runs as another user)."""
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


def _answer_together(request: Request, environ: dict[str, str]) -> dict[str, str]:
    """Two approver processes, one declining and one approving, released at once;
    {verdict: what it printed}."""
    approvers = {
        verdict: subprocess.Popen(
            [sys.executable, ANSWERER, request.id, verdict, user], env=environ,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for verdict, user in (("decline", "dana"), ("approve", "abe"))
    }
    try:
        for proc in approvers.values():
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in approvers.values():  # both are waiting on stdin: release them together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        said = {verdict: proc.communicate(timeout=WAIT)[0].strip()
                for verdict, proc in approvers.items()}
    finally:
        for proc in approvers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return said


def _winner(said: dict[str, str]) -> str:
    """The one approver whose answer counted; the other must have been refused, and told
    whose answer stood."""
    answered = [v for v, text in said.items() if text.startswith("answered: ")]
    assert len(answered) == 1, said
    (loser,) = set(said) - set(answered)
    assert said[loser].startswith("refused: ") and "already" in said[loser], said
    who = "abe" if answered[0] == "approve" else "dana"
    assert who in said[loser], said
    return answered[0]


def test_two_approvers_at_once_only_the_first_answer_counts(isolated_home: Path) -> None:
    winners = []
    for _ in range(TRIALS):
        waiter = _background([sys.executable, DRIVER, EXEC_DEV], _environ())
        try:
            request = _one_request(isolated_home)
            winner = _winner(_answer_together(request, _environ()))
            out, err = waiter.communicate(timeout=WAIT)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        winners.append(winner)
        if winner == "approve":
            assert waiter.returncode == 0 and "approved=True how=queue approver=abe" in out
        else:
            assert waiter.returncode == 12, (out, err)
            assert "approved=False how=queue approver=dana reason=declined by dana" in out
        queue = Queue(isolated_home)
        assert list(queue.requests.iterdir()) == [] and list(queue.answers.iterdir()) == []


def _completed(home: Path) -> dict[str, object]:
    """The last "completed" record of the audit log."""
    lines = (home / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if r.get("status") == "completed"][-1]


@pytest.mark.parametrize("forkserver", ["1", "0"])
def test_a_declined_command_never_runs_whoever_answers_second(
    agent_env: dict[str, str], devserver: DevServer, forkserver: str
) -> None:
    environ = _environ(agent_env, GUARDCTL_APPROVAL_TIMEOUT="60", GUARDCTL_FORKSERVER=forkserver)
    home = Path(environ["GUARDCTL_HOME"])
    for _ in range(3):
        devserver.clear_requests()
        waiter = _background([sys.executable, "-m", "guardctl", *READ_SECRET], environ)
        try:
            request = _one_request(home)
            winner = _winner(_answer_together(request, environ))
            out, err = waiter.communicate(timeout=WAIT)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
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


@pytest.mark.parametrize("forkserver", ["1", "0"])
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_wait_ended_by_a_signal_is_recorded_with_its_exit_status(
    isolated_home: Path, forkserver: str, signum: int, status: int
) -> None:
    waiter = _background([sys.executable, "-m", "guardctl", *EXEC_DEV.split()[1:]],
                         _environ(GUARDCTL_FORKSERVER=forkserver))
    try:
        _one_request(isolated_home)
        waiter.send_signal(signum)
        _, err = waiter.communicate(timeout=WAIT)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == status, err
    assert "Traceback" not in err
    record = _completed(isolated_home)
    assert record["exit_code"] == status
    queue = Queue(isolated_home)
    assert list(queue.requests.iterdir()) == [] and list(queue.answers.iterdir()) == []
    assert re.search(r"waiting up to \d+ s", err)


@pytest.fixture(scope="module")
def patient_broker(devserver: DevServer, tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[Broker]:
    """A broker whose requests wait long enough for two approvers' consoles to start."""
    import shutil

    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    admin = devserver.write_kubeconfig(tmp_path_factory.mktemp("admin") / "admin.kubeconfig")
    with running_broker(admin, extra_environ={"GUARDCTL_APPROVAL_TIMEOUT": "60"}) as running:
        yield running


def test_two_approvers_through_the_broker_only_the_first_answer_counts(
    patient_broker: Broker, devserver: DevServer
) -> None:
    broker = patient_broker
    devserver.clear_requests()
    agent = broker.agent_popen(*READ_SECRET)
    declining = broker.approver_terminal("approvals")
    approving = broker.approver_terminal("approvals")
    try:
        for console in (declining, approving):
            console.expect("read-secret-values")
            console.expect("q quit")
        declining.send("d")
        declining.expect("reason for declining")
        declining.send("no")
        declining.expect("no")
        declining.send("\r")  # both answers leave at the same moment
        approving.send("a")
        out, err = agent.communicate(timeout=WAIT)
        refusal = rb"(already (approved|declined) by root|no longer waiting)"
        if agent.returncode == 0:
            approving.expect("approved once: kubectl get secret")
            declining.expect(refusal)
        else:
            declining.expect("declined: no")
            approving.expect(refusal)
        for console in (declining, approving):
            console.send("q")
            console.expect(pexpect.EOF)
    finally:
        for console in (declining, approving):
            console.close(force=True)
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    read = [r for r in devserver.requests if "secrets" in r[1]]
    if agent.returncode == 0:
        assert b"approved by root" in err and b"AWS_ACCESS_KEY_ID:" in out and read
    else:
        assert agent.returncode == 12, err
        assert b"declined by root: no." in err and out == b"" and not read


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_wait_through_the_broker_ended_by_a_signal_is_recorded_with_its_exit_status(
    patient_broker: Broker, signum: int, status: int
) -> None:
    home = Path(patient_broker.environ["GUARDCTL_HOME"])
    agent = patient_broker.agent_popen(*READ_SECRET)
    try:
        _one_request(home)
        # to the agent's guardctl itself (runuser would end its session its own way)
        os.kill(_only_child(agent.pid), signum)
        _, err = agent.communicate(timeout=WAIT)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == status, err
    assert _completed(home)["exit_code"] == status
    queue = Queue(home)
    assert list(queue.requests.iterdir()) == [] and list(queue.answers.iterdir()) == []
