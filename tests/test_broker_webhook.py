"""Approvals anywhere, through a real broker: the broker (root) serves an unprivileged agent
account and opens an answers listener (`--answers-listen`); the agent's command that needs a
human is posted to a webhook (a real HTTP receiver on 127.0.0.1, its signature checked by the
independent `standardwebhooks` package); an answer signed by a registered approver key over
that exact request lets the real kubectl run against the devserver, and unsigned, forged,
misdirected, late and expired answers are refused (HTTP 4xx, one line, in the broker's log)
and the command does not run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pytest
from approval_helpers import answered
from broker_setup import Broker, running_broker
from webhook_setup import WAIT, Receiver, keypair, receiver, secret_file, webhook_config

from guardctl.devserver import DevServer

READ_SECRET = ("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml")
TIMEOUT = 30  # the broker's GUARDCTL_APPROVAL_TIMEOUT


class Setup(NamedTuple):
    broker: Broker
    hook: Receiver
    secret: str
    answers: str  # http://127.0.0.1:PORT
    alice: Path  # the registered approver's private key
    bob: Path  # a key nobody registered
    folder: Path


@pytest.fixture(scope="module")
def setup(devserver: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    import os
    import shutil

    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    folder = tmp_path_factory.mktemp("webhook")
    admin = devserver.write_kubeconfig(folder / "admin.kubeconfig")
    secret_path, secret = secret_file(folder)
    alice, alice_public = keypair(folder, "alice")
    bob, _ = keypair(folder, "bob")
    with receiver() as hook, running_broker(
        admin, extra_args=("--answers-listen", "127.0.0.1:0"),
        extra_environ={"GUARDCTL_APPROVAL_TIMEOUT": str(TIMEOUT)},
    ) as broker:
        config = Path(broker.environ["GUARDCTL_CONFIG"])
        config.write_text(config.read_text() + webhook_config(hook.url, secret_path))
        done = broker.broker_guardctl("approvals", "keys", "add", "alice", str(alice_public))
        assert done.returncode == 0, done.stderr
        found = re.search(rb"answers on (http://127\.0\.0\.1:\d+)", _log(broker))
        assert found, _log(broker)
        yield Setup(broker, hook, secret, found[1].decode(), alice, bob, folder)


def _log(broker: Broker) -> bytes:
    return (broker.state / "broker.log").read_bytes()


def _announced(setup: Setup) -> tuple[dict[str, object], Path]:
    """The webhook's payload (its signature checked) and the file it was saved in."""
    from standardwebhooks import Webhook

    got = setup.hook.next(WAIT)
    body = Webhook(setup.secret).verify(got.body, got.headers)
    assert isinstance(body, dict)
    path = setup.folder / f"{body['data']['id']}.json"
    path.write_bytes(got.body)
    return body, path


def _sign(payload: Path, key: Path, *verdict: str, post: str | None = None,
          ) -> subprocess.CompletedProcess[bytes]:
    more = ["--post", post] if post else []
    return subprocess.run(
        [sys.executable, "-m", "guardctl", "approvals", "sign", "--request", str(payload),
         "--key", str(key), *verdict, *more],
        capture_output=True, timeout=WAIT, stdin=subprocess.DEVNULL,
    )


def _post(setup: Setup, request_id: str, body: bytes, method: str = "POST") -> tuple[int, str]:
    request = urllib.request.Request(
        f"{setup.answers}/v1/approvals/{request_id}", data=body if method == "POST" else None,
        method=method, headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@contextmanager
def _agent_reading_a_secret(setup: Setup) -> Iterator[subprocess.Popen[bytes]]:
    """The agent's command that needs a human, in the background; ended with the block."""
    agent = setup.broker.agent_popen(*READ_SECRET)
    try:
        yield agent
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()


def _completed(broker: Broker) -> list[dict[str, object]]:
    log = Path(broker.environ["GUARDCTL_HOME"]) / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("status") == "completed"]


def test_a_signed_approval_from_off_the_machine_runs_the_command_and_forgeries_do_not(
    setup: Setup, devserver: DevServer
) -> None:
    devserver.clear_requests()
    with _agent_reading_a_secret(setup) as agent:
        body, payload = _announced(setup)
        data = body["data"]
        assert isinstance(data, dict)
        request_id = str(data["id"])
        assert data["line"].startswith("kubectl get secret app-secrets")  # type: ignore[union-attr]
        assert data["namespaces"] == ["dev"] and data["requester"]
        good = _sign(payload, setup.alice, "--approve")
        assert good.returncode == 0, good.stderr
        answer = json.loads(good.stdout)
        forged = _sign(payload, setup.bob, "--approve").stdout
        unsigned = json.dumps({k: v for k, v in answer.items() if k != "signature"}).encode()
        moved = json.loads(payload.read_text())
        moved["data"]["namespaces"] = ["kube-system"]
        moved["data"]["digest"] = ""  # a forger would have to recompute it; sign does
        from guardctl.approvals import signed

        moved["data"]["digest"] = signed.shown_digest(moved["data"])
        (setup.folder / "moved.json").write_text(json.dumps(moved))
        elsewhere = _sign(setup.folder / "moved.json", setup.alice, "--approve").stdout
        refused = [
            _post(setup, request_id, unsigned),
            _post(setup, request_id, forged),
            _post(setup, request_id, elsewhere),
            _post(setup, request_id, b"", method="GET"),  # a click that merely calls the URL
        ]
        assert [status for status, _ in refused] == [401, 403, 409, 405], refused
        assert all(text.count("\n") <= 1 for _, text in refused)
        assert agent.poll() is None  # still waiting: nothing of that counted
        assert not [r for r in devserver.requests if "secrets" in r[1]]
        posted = _sign(payload, setup.alice, "--approve", post=setup.answers)
        assert posted.returncode == 0, posted.stderr
        out, err = agent.communicate(timeout=WAIT)
    assert agent.returncode == 0, err
    assert b"approved by key:alice" in err and b"AWS_ACCESS_KEY_ID:" in out
    late = _post(setup, request_id, good.stdout)
    assert late[0] in (404, 409, 410), late
    record = [r for r in _completed(setup.broker) if r.get("approver")][-1]
    assert record["approver"]["user"] == "key:alice" and record["exit_code"] == 0  # type: ignore[index]
    log = _log(setup.broker).decode()
    assert log.count(f"answer to {request_id[:12]}") >= 5
    assert "refused: unsigned" in log and "approved by key:alice" in log


def test_a_signed_answer_after_the_request_expired_runs_nothing(
    setup: Setup, devserver: DevServer
) -> None:
    devserver.clear_requests()
    with _agent_reading_a_secret(setup) as agent:
        body, payload = _announced(setup)
        signed_answer = _sign(payload, setup.alice, "--approve")
        assert signed_answer.returncode == 0
        _, err = agent.communicate(timeout=TIMEOUT + WAIT)  # nobody answers in time
    assert agent.returncode == 12 and b"nobody approved this" in err
    status, text = _post(setup, str(body["data"]["id"]), signed_answer.stdout)  # type: ignore[index]
    assert status in (404, 410) and text.count("\n") <= 1
    assert not [r for r in devserver.requests if "secrets" in r[1]]
    again = _sign(payload, setup.alice, "--approve")
    assert again.returncode == 13 and b"expired" in again.stderr


def test_a_receiver_that_fails_leaves_a_line_in_the_brokers_log(
    setup: Setup, devserver: DevServer
) -> None:
    setup.hook.status[0] = 500
    try:
        with _agent_reading_a_secret(setup) as agent:
            _announced(setup)
            through = {"GUARDCTL_BROKER": str(setup.broker.socket)}
            approver = partial(setup.broker.broker_guardctl, extra=through)
            err = answered(agent, approver, "deny", "--reason", "no", seconds=WAIT).err
    finally:
        setup.hook.status[0] = 200
    assert agent.returncode == 12 and b"webhook" not in err  # the agent is not told
    deadline = time.monotonic() + WAIT  # the line comes from the worker's sending thread
    while b"the approval webhook got HTTP 500" not in _log(setup.broker):
        assert time.monotonic() < deadline, _log(setup.broker)
        time.sleep(0.1)
