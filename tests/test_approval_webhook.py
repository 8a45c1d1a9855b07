"""Approvals anywhere: a queued request is posted to a webhook (Standard Webhooks signing,
checked here by the independent `standardwebhooks` package; Slack and Teams adapters), and an
answer from off the machine counts only when a registered approver key signed it over the
digest of that exact request. The waiter is a real process (tests/data/approval_driver.py),
the receiver a real HTTP server on 127.0.0.1, the keys made by openssl, the answers checked by
the same function the broker's answers listener calls (`signed.receive`); the whole path
through a broker is tests/test_broker_webhook.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from webhook_setup import WAIT, keypair, receiver, secret_file, webhook_config

from guardctl.app import Checker
from guardctl.approvals import signed, webhook
from guardctl.approvals.queue import Queue, Request, build_request
from guardctl.env import Environment

DATA = Path(__file__).resolve().parent / "data"
DRIVER = str(DATA / "approval_driver.py")
REPO = str(Path(__file__).resolve().parent.parent)
PATCH = "kubectl patch deployment web -n kube-system -p '{\"spec\":{\"replicas\":3}}'"
SECRET_LINE = "kubectl create secret generic db --from-literal=password=Zq8vLm2xPw9r -n kube-system"
EXEC_DEV = "kubectl exec -it web -n dev -- sh"


def _environ(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO, **extra}


def guardctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guardctl", *args], env=_environ(),
                          capture_output=True, text=True, timeout=WAIT, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def _configure(text: str) -> None:
    path = Path(os.environ["GUARDCTL_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _waiter(line: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, DRIVER, line], env=_environ(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _queue_here(home: Path, line: str = EXEC_DEV, *, expires_in: float = 300) -> Request:
    """A request whose waiter is this test process (alive for the whole test)."""
    decision = Checker.load(Environment()).check(line)
    request = build_request(decision, line, cluster="https://127.0.0.1:6443", context="dev",
                            default_namespace="", diff=None, now=time.time(),
                            timeout=expires_in)
    Queue(home).put(request)
    return request


def _pending_id(home: Path) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        pending = Queue(home).pending(time.time())
        if pending:
            return pending[0].id
        time.sleep(0.05)
    raise AssertionError("no request was queued")


# --------------------------------------------------------------------------- sending


def test_a_queued_request_is_posted_signed_and_stays_answerable_here(
    isolated_home: Path, tmp_path: Path
) -> None:
    from standardwebhooks import Webhook  # the test extra: an independent verifier

    secret_path, secret = secret_file(tmp_path)
    with receiver() as hook:
        _configure(webhook_config(hook.url, secret_path))
        waiter = _waiter(PATCH)
        try:
            got = hook.next()
            request = Queue(isolated_home).load(_pending_id(isolated_home))
            assert request is not None
            data = Webhook(secret).verify(got.body, got.headers)
            assert got.headers["webhook-id"] == f"msg_{request.id}"
            assert got.headers["content-type"] == "application/json"
            done = guardctl("approvals", "approve", request.id)  # still answerable here
            assert done.returncode == 0, done.stderr
            out, err = waiter.communicate(timeout=WAIT)
        finally:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0 and "approved=True how=queue" in out, err
    assert data["type"] == "approval.requested"
    shown = data["data"]
    assert shown["id"] == request.id and shown["line"] == PATCH
    assert shown["readings"] == list(request.readings)
    assert shown["rules"][0]["id"] == "write-system-namespace"
    assert shown["namespaces"] == ["kube-system"] and shown["diff"] == request.diff
    assert shown["expires"] and shown["digest"] == signed.request_digest(request)
    assert request.nonce not in got.body.decode() and request.key not in got.body.decode()
    assert "webhook" not in err  # nothing went wrong, nothing was said


@pytest.mark.parametrize("trouble", ["http-500", "closed-port", "no-secret"])
def test_a_failed_post_is_one_line_and_the_request_stays_answerable(
    isolated_home: Path, tmp_path: Path, trouble: str
) -> None:
    secret_path, _ = secret_file(tmp_path)
    with receiver() as hook:
        url = hook.url
        hook.status[0] = 500
        if trouble == "closed-port":
            url = "http://127.0.0.1:9/hook"  # discard: nothing listens there
        if trouble == "no-secret":
            secret_path = tmp_path / "missing.secret"
        _configure(webhook_config(url, secret_path))
        waiter = _waiter(EXEC_DEV)
        try:
            request_id = _pending_id(isolated_home)
            done = guardctl("approvals", "deny", request_id, "--reason", "not now")
            assert done.returncode == 0, done.stderr
            out, err = waiter.communicate(timeout=WAIT)
        finally:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 12 and "reason=not now" in out
    said = [line for line in err.splitlines() if "webhook" in line]
    assert len(said) == 1 and said[0].startswith("guardctl: the approval webhook"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("fmt", ["slack", "teams"])
def test_slack_and_teams_get_a_message_of_their_own_with_masked_text(
    isolated_home: Path, tmp_path: Path, fmt: str
) -> None:
    from standardwebhooks import Webhook

    secret_path, secret = secret_file(tmp_path)
    with receiver() as hook:
        _configure(webhook_config(hook.url, secret_path, fmt))
        waiter = _waiter(SECRET_LINE)
        try:
            got = hook.next()
            request_id = _pending_id(isolated_home)
        finally:
            waiter.kill()
            waiter.wait()
    message = Webhook(secret).verify(got.body, got.headers)
    text = got.body.decode()
    assert "Zq8vLm2xPw9r" not in text and "«masked:" in text
    assert request_id in text and "kube-system" in text
    if fmt == "slack":
        assert isinstance(message["text"], str) and request_id in message["text"]
        assert message["blocks"][0]["type"] == "header"
        assert all(b["type"] in ("header", "section", "context") for b in message["blocks"])
        assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if "text" in b)
    else:
        assert message["type"] == "message"
        (attachment,) = message["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
        assert {b["type"] for b in card["body"]} <= {"TextBlock", "FactSet"}


def test_a_bad_webhook_setting_is_named_in_one_line(isolated_home: Path, tmp_path: Path) -> None:
    _configure("approvals:\n  webhook:\n    url: ftp://example.org/x\n    secret_file: /x\n")
    waiter = _waiter(EXEC_DEV)
    try:
        request_id = _pending_id(isolated_home)
        assert guardctl("approvals", "deny", request_id, "--reason", "no").returncode == 0
        _, err = waiter.communicate(timeout=WAIT)
    finally:
        waiter.kill()
        waiter.wait()
    said = [line for line in err.splitlines() if "webhook" in line]
    assert len(said) == 1 and "url" in said[0] and "http" in said[0], err


# --------------------------------------------------------------------------- answering


def _payload(request: Request, path: Path, **changed: object) -> Path:
    """The webhook's standard payload of `request` in a file (with fields changed, and its
    digest made to match them, as a forger would)."""
    body = webhook.standard_payload(request, time.time())
    data = body["data"]
    assert isinstance(data, dict)
    data.update(changed)
    if changed:
        data["digest"] = signed.shown_digest(data)
    path.write_text(json.dumps(body))
    return path


def _sign(payload: Path, key: Path, *verdict: str) -> dict[str, object]:
    done = guardctl("approvals", "sign", "--request", str(payload), "--key", str(key), *verdict)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert isinstance(answer, dict)
    return answer


def _post(home: Path, request_id: str, answer: object) -> signed.Reply:
    return signed.receive(home, request_id, json.dumps(answer).encode(), time.time())


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """alice's key registered; bob's made but not registered."""
    made = {name: keypair(tmp_path, name) for name in ("alice", "bob")}
    done = guardctl("approvals", "keys", "add", "alice", str(made["alice"][1]))
    assert done.returncode == 0, done.stderr
    return made


def test_a_signed_answer_counts_and_names_its_key(
    isolated_home: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    request = _queue_here(isolated_home)
    answer = _sign(_payload(request, tmp_path / "p.json"), keys["alice"][0], "--approve")
    reply = _post(isolated_home, request.id, answer)
    assert reply.status == 200 and "approved" in reply.message
    outcome = Queue(isolated_home).take_answer(request)
    assert outcome is not None and outcome.approved and outcome.approver is not None
    assert outcome.approver.user == "key:alice"
    # the first answer is final: the same, or a signed deny, comes too late
    again = _post(isolated_home, request.id, answer)
    deny = _sign(tmp_path / "p.json", keys["alice"][0], "--deny", "--reason", "no")
    late = _post(isolated_home, request.id, deny)
    assert again.status == late.status == 409 and "already approved by key:alice" in late.message
    assert Queue(isolated_home).take_answer(request).approved  # type: ignore[union-attr]


def test_unsigned_forged_and_misdirected_answers_are_refused(
    isolated_home: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    request = _queue_here(isolated_home)
    other = _queue_here(isolated_home, "kubectl exec -it api -n dev -- sh")
    payload = _payload(request, tmp_path / "p.json")
    good = _sign(payload, keys["alice"][0], "--approve")
    unsigned = {k: v for k, v in good.items() if k != "signature"}
    flipped = {**_sign(payload, keys["alice"][0], "--deny", "--reason", "no"), "approved": True}
    by_bob = _sign(payload, keys["bob"][0], "--approve")
    # a digest over another namespace or command, or a later expiry: not what was queued
    elsewhere = [
        _sign(_payload(request, tmp_path / f"x{n}.json", **change), keys["alice"][0],
              "--approve")
        for n, change in enumerate([{"namespaces": ["staging"]},
                                    {"line": "kubectl exec -it db -n dev -- sh"},
                                    {"expires": "2099-01-01T00:00:00.000Z"}])
    ]
    cases = [
        (request.id, unsigned, 401, "unsigned"),
        (request.id, {**good, "signature": "AAAA"}, 403, "does not verify"),
        (request.id, flipped, 403, "does not verify"),
        (request.id, by_bob, 403, "no approver key"),
        (other.id, good, 400, "another request"),
        (request.id, b"not json", 400, "JSON"),
        *[(request.id, answer, 409, "signed over another request") for answer in elsewhere],
    ]
    for target, answer, status, message in cases:
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        reply = signed.receive(isolated_home, target, body, time.time())
        assert (reply.status, message in reply.message) == (status, True), (reply, message)
        assert "\n" not in reply.message
    queue = Queue(isolated_home)
    assert queue.take_answer(request) is None and queue.take_answer(other) is None


def test_an_expired_request_takes_no_signed_answer(
    isolated_home: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    request = _queue_here(isolated_home, expires_in=-1)  # its waiter lives, its time is up
    # `approvals sign` refuses an expired request itself: sign it as a remote tool would
    shown = json.loads(_payload(request, tmp_path / "p.json").read_text())["data"]
    answer = signed.make_answer(shown, keys["alice"][0].read_bytes(), approved=True)
    reply = _post(isolated_home, request.id, answer)
    assert reply.status == 410 and "expired" in reply.message
    assert Queue(isolated_home).take_answer(request) is None
    gone = _post(isolated_home, "0123456789abcdef0123456789abcdef", answer)
    assert gone.status == 400  # signed for another request than the address names


def test_sign_checks_the_payload_and_says_what_it_signs(
    isolated_home: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    request = _queue_here(isolated_home)
    payload = _payload(request, tmp_path / "p.json")
    done = guardctl("approvals", "sign", "--request", str(payload), "--key",
                    str(keys["alice"][0]), "--approve", "--window", "10m")
    assert done.returncode == 0, done.stderr
    assert EXEC_DEV in done.stderr and "dev" in done.stderr and request.id in done.stderr
    assert json.loads(done.stdout)["window_minutes"] == 10
    body = json.loads(payload.read_text())
    body["data"]["namespaces"] = ["prod"]  # the digest no longer matches what is shown
    payload.write_text(json.dumps(body))
    done = guardctl("approvals", "sign", "--request", str(payload), "--key",
                    str(keys["alice"][0]), "--approve")
    assert done.returncode == 13 and done.stderr.count("\n") == 1
    assert "digest" in done.stderr and done.stdout == ""
    done = guardctl("approvals", "sign", "--request", str(payload), "--key",
                    str(keys["alice"][0]), "--deny")
    assert done.returncode == 2 and "--reason" in done.stderr
    done = guardctl("approvals", "sign", "--request", str(payload), "--key",
                    str(keys["alice"][0]), "--deny", "--reason", "no", "--window", "1h")
    assert done.returncode == 2 and "--window goes with --approve" in done.stderr


def test_sign_runs_in_the_signers_own_process_even_with_a_broker_set() -> None:
    from guardctl.broker.client import runs_here

    assert runs_here(["approvals", "sign", "--request", "p.json"])
    assert not runs_here(["approvals", "keys", "add", "alice", "a.pub"])


def test_keys_are_listed_and_removed_and_bad_ones_refused(
    isolated_home: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    listed = guardctl("approvals", "keys", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("alice\ted25519 ")
    assert guardctl("approvals", "keys", "add", "alice", str(keys["bob"][1])).returncode == 2
    (tmp_path / "rsa.txt").write_text("not a key\n")
    done = guardctl("approvals", "keys", "add", "carol", str(tmp_path / "rsa.txt"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Ed25519" in done.stderr
    done = guardctl("approvals", "keys", "add", "Bad Name", str(keys["bob"][1]))
    assert done.returncode == 2 and "name" in done.stderr
    assert guardctl("approvals", "keys", "remove", "alice").returncode == 0
    assert guardctl("approvals", "keys", "list").stdout == ""
    assert guardctl("approvals", "keys", "remove", "alice").returncode == 2


def test_the_command_line_imports_no_webhook_or_crypto_code() -> None:
    code = ("import sys, guardctl.cli, guardctl.running.invoke, guardctl.app,"
            " guardctl.approvals.flow, guardctl.broker.server;"
            " print(sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('cryptography', 'http', 'urllib') and m not in ('urllib', 'urllib.parse')"
            " or m in ('guardctl.approvals.webhook', 'guardctl.approvals.signed')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=_environ())
    assert proc.stdout == "[]\n", proc.stderr


def test_rewriting_the_config_keeps_the_webhook(tmp_path: Path) -> None:
    from guardctl.config import load_approvals, load_contexts, save_config

    path = tmp_path / "config.yaml"
    path.write_text(
        "context: dev\ncluster: dev\nuser: admin\nserver: https://127.0.0.1:6443\n"
        "certificate-authority-data: ''\nnamespace: dev\nservice-account: guardctl/agent\n"
        "credential: token\n" + webhook_config("https://hooks.example.com/x", tmp_path / "s"))
    contexts = load_contexts(path)
    assert contexts is not None and contexts.default.context == "dev"
    save_config(path, contexts)
    assert load_approvals(path) == {"webhook": {"url": "https://hooks.example.com/x",
                                                "secret_file": str(tmp_path / "s"),
                                                "format": "standard"}}


def test_the_answers_listener_speaks_tls_with_the_brokers_certificate(tmp_path: Path) -> None:
    import re
    import signal
    import ssl
    import urllib.error
    import urllib.request

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    "tls.key", "-out", "tls.pem", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=120)
    log = tmp_path / "broker.log"
    with open(log, "wb") as sink:
        broker = subprocess.Popen(
            [sys.executable, "-m", "guardctl", "broker", "serve", "--socket",
             str(tmp_path / "b.sock"), "--answers-listen", "127.0.0.1:0", "--tls-cert",
             str(tmp_path / "tls.pem"), "--tls-key", str(tmp_path / "tls.key")],
            env=_environ(GUARDCTL_FORKSERVER="0"), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=sink)
    try:
        deadline = time.monotonic() + WAIT
        while b"ready on" not in log.read_bytes():
            assert broker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        found = re.search(r"answers on https://127\.0\.0\.1:(\d+)", log.read_text())
        assert found, log.read_text()
        address = f"127.0.0.1:{found[1]}/v1/approvals/0123456789abcdef"
        request = urllib.request.Request(f"https://{address}", data=b'{"type": "x"}',
                                         method="POST")
        context = ssl.create_default_context(cafile=str(tmp_path / "tls.pem"))
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=WAIT, context=context)
        assert refused.value.code == 401
        with pytest.raises(OSError):  # plain HTTP gets no answer from it (reset, or URLError)
            urllib.request.urlopen(f"http://{address}", data=b"{}", timeout=WAIT)
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=WAIT)
    assert "answer to 0123456789ab from 127.0.0.1:" in log.read_text()
    assert "refused: unsigned" in log.read_text()
