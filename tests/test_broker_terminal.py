"""Interactive work through the broker: a pty on the broker's side relayed to the agent's
terminal (size, keys, resizes), signals, and `kubectl cp` in both directions.

The devserver speaks no exec protocol, so the broker here runs a stand-in kubectl
(GUARDCTL_KUBECTL, in the broker's own environment) that acts out `exec -it`, `cp` and a
long wait; everything else — the agent account, the client, the socket, the broker's
worker, pty, masking and records — is the real thing.
"""

from __future__ import annotations

import os
import pwd
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from broker_setup import AGENT, Broker, running_broker

from guardctl.devserver import DevServer

FAKE_KUBECTL = '''\
#!{python}
import json, os, shutil, signal, sys, time
POD = {pod!r}
args = sys.argv[1:]
if "create" in args and "token" in args:
    print(json.dumps({{"status": {{"token": "fake-agent-token-0123456789",
                                   "expirationTimestamp": "2099-01-01T00:00:00Z"}}}}))
    sys.exit(0)
words = [a for a in args if not a.startswith("-")]
verb = words[0]
if verb == "cp":
    src, dst = words[1], words[2]
    def inside(spec):
        return os.path.join(POD, spec.partition(":")[2].lstrip("/"))
    if ":" in src:
        from_, to = inside(src), dst
    else:
        from_, to = src, inside(dst)
    if os.path.isdir(from_):
        shutil.copytree(from_, to)
    else:
        shutil.copy(from_, to)
    sys.exit(0)
if verb == "exec":
    rows, cols = os.get_terminal_size(0).lines, os.get_terminal_size(0).columns
    print(f"size {{rows}}x{{cols}} tty={{os.isatty(0)}}", flush=True)
    signal.signal(signal.SIGWINCH, lambda *_: print("resized %dx%d" % (
        os.get_terminal_size(0).lines, os.get_terminal_size(0).columns), flush=True))
    for line in sys.stdin:
        if line.strip() == "exit":
            sys.exit(3)
        print("got:" + line.strip() + " password=hunter2hunter2", flush=True)
if verb == "wait":
    def stop(*_):
        open(os.path.join(POD, "terminated"), "w").write("yes")
        sys.exit(7)
    signal.signal(signal.SIGTERM, stop)
    print("started", flush=True)
    for _ in range(600):
        time.sleep(0.1)
sys.exit(0)
'''
ALLOW = """\
rules:
  - {id: exec-into-container, action: allow, reason: tests exec here, match: exec}
  - {id: copy-files, action: allow, reason: tests cp here, match: cp}
"""


@pytest.fixture(scope="module")
def fake_broker(devserver: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    import shutil

    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to run a broker for another account")
    root = Path(tempfile.mkdtemp(prefix="gcfake-", dir="/tmp"))
    root.chmod(0o700)
    pod = root / "pod"
    (pod / "etc" / "app").mkdir(parents=True)
    (pod / "etc" / "hostname").write_text("web-1\n")
    (pod / "etc" / "app" / "a.conf").write_text("a=1\n")
    (pod / "etc" / "app" / "sub").mkdir()
    (pod / "etc" / "app" / "sub" / "b.conf").write_text("b=2\n")
    kubectl = root / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable, pod=str(pod)))
    kubectl.chmod(0o700)
    rules = root / "allow.yaml"
    rules.write_text(ALLOW)
    admin = devserver.write_kubeconfig(tmp_path_factory.mktemp("admin") / "admin.kubeconfig")
    try:
        with running_broker(
            admin, extra_environ={"GUARDCTL_KUBECTL": str(kubectl), "GUARDCTL_RULES": str(rules)}
        ) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pod(fake_broker: Broker) -> Path:
    # GUARDCTL_RULES sits next to the fake pod's files
    return Path(fake_broker.environ["GUARDCTL_RULES"]).parent / "pod"


def spawn_agent(broker: Broker, *args: str, rows: int = 24, cols: int = 80) -> pexpect.spawn:
    environ = broker.agent_environ({"TERM": "xterm"})
    return pexpect.spawn(
        "runuser",
        ["-u", AGENT, "--", "env", "-i", *(f"{k}={v}" for k, v in environ.items()),
         str(broker.shared / "bin" / "guardctl"), *args],
        cwd=str(broker.work), timeout=30, dimensions=(rows, cols),
    )


def test_exec_it_gets_a_terminal_of_the_agents_size_keys_and_resizes(fake_broker: Broker) -> None:
    child = spawn_agent(fake_broker, "exec", "-it", "web-1", "--", "sh", rows=33, cols=111)
    try:
        child.expect("size 33x111 tty=True")
        child.sendline("hello")
        child.expect("got:hello password=")
        child.expect("\r\n")
        assert "«masked:".encode() in child.before and b"hunter2hunter2" not in child.before
        child.setwinsize(40, 120)
        child.expect("resized 40x120")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3  # the container's exit code comes back


def test_cp_to_a_pod_sends_the_agents_files(fake_broker: Broker, pod: Path) -> None:
    uid = pwd.getpwnam(AGENT).pw_uid
    upload = fake_broker.work / "upload"
    (upload / "deep").mkdir(parents=True)
    (upload / "one.txt").write_text("one\n")
    (upload / "deep" / "two.txt").write_text("two\n")
    for path in (upload, *upload.rglob("*")):
        os.chown(path, uid, -1)
    proc = fake_broker.agent("cp", "upload", "dev/web-1:/srv/upload")
    assert proc.returncode == 0, proc.stderr
    assert (pod / "srv" / "upload" / "deep" / "two.txt").read_text() == "two\n"
    proc = fake_broker.agent("cp", "upload/one.txt", "web-1:/srv/one.txt")
    assert proc.returncode == 0, proc.stderr
    assert (pod / "srv" / "one.txt").read_text() == "one\n"


def test_cp_from_a_pod_writes_as_the_agent(fake_broker: Broker) -> None:
    proc = fake_broker.agent("cp", "web-1:/etc/hostname", "hostname.txt")
    assert proc.returncode == 0, proc.stderr
    copied = fake_broker.work / "hostname.txt"
    assert copied.read_text() == "web-1\n"
    assert copied.stat().st_uid == pwd.getpwnam(AGENT).pw_uid
    proc = fake_broker.agent("cp", "web-1:/etc/app", "app-copy")
    assert proc.returncode == 0, proc.stderr
    assert (fake_broker.work / "app-copy" / "sub" / "b.conf").read_text() == "b=2\n"
    (fake_broker.work / "into").mkdir()
    os.chown(fake_broker.work / "into", pwd.getpwnam(AGENT).pw_uid, -1)
    proc = fake_broker.agent("cp", "web-1:/etc/app", "into")
    assert proc.returncode == 0, proc.stderr
    assert (fake_broker.work / "into" / "app" / "a.conf").read_text() == "a=1\n"


def test_cp_from_a_pod_cannot_write_where_the_agent_may_not(fake_broker: Broker) -> None:
    target = fake_broker.state / "planted"
    proc = fake_broker.agent("cp", "web-1:/etc/hostname", str(target))
    assert not target.exists()
    assert b"cannot write" in proc.stderr


def test_sigterm_to_the_client_reaches_kubectl_and_its_code_comes_back(
    fake_broker: Broker, pod: Path
) -> None:
    (pod / "terminated").unlink(missing_ok=True)
    proc = fake_broker.agent_popen("wait", "pods")
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    client = _child_of(proc.pid)
    os.kill(client, signal.SIGTERM)
    assert proc.wait(timeout=30) == 7
    assert (pod / "terminated").read_text() == "yes"


def test_a_killed_client_ends_its_kubectl(fake_broker: Broker, pod: Path) -> None:
    (pod / "terminated").unlink(missing_ok=True)
    proc = fake_broker.agent_popen("wait", "pods")
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    os.kill(_child_of(proc.pid), signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while not (pod / "terminated").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (pod / "terminated").read_text() == "yes"


def test_the_agents_records_hold_masked_output(fake_broker: Broker) -> None:
    casts = fake_broker.state / "home" / "casts"
    text = "".join(p.read_text() for p in casts.glob("*.cast"))
    assert "got:hello" in text and "hunter2hunter2" not in text


def _child_of(pid: int) -> int:
    """The guardctl client runuser started (runuser waits for it as its child)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.02)
    raise AssertionError("runuser started no child")
