"""The broker over TCP with TLS, on loopback: a real broker process (root) serving an agent
account by token, a throwaway CA made with openssl, the real kubectl against the devserver.
What a valid token may do works; a missing, wrong, expired or revoked token, a client that
does not trust the broker's CA and a client without TLS are refused, and the broker says so
in its log, never with the token."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from broker_setup import AGENT, Broker, running_broker

from guardctl.broker import tokens, wire
from guardctl.devserver import DevServer

CONFIGMAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: dev\n"
    "data:\n  a: b\n"
)


class Pki(NamedTuple):
    ca: Path  # signed the broker's certificate
    other_ca: Path  # a CA that did not
    cert: Path
    key: Path
    elsewhere: Path  # signed by `ca` for another host name (elsewhere.example), with its key


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a throwaway CA")
    folder = tmp_path_factory.mktemp("pki")
    for name in ("ca", "other"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=guardctl test {name}",
                 cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=localhost", cwd=folder)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (folder / "elsewhere.cnf").write_text("subjectAltName=DNS:elsewhere.example\n")
    for name in ("server", "elsewhere"):
        if name != "server":
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                     f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                 "san.cnf" if name == "server" else "elsewhere.cnf", cwd=folder)
    (folder / "elsewhere.pem").write_bytes(
        (folder / "elsewhere.pem").read_bytes() + (folder / "elsewhere.key").read_bytes())
    return Pki(folder / "ca.pem", folder / "other.pem", folder / "server.pem",
               folder / "server.key", folder / "elsewhere.pem")


class Tcp(NamedTuple):
    broker: Broker
    url: str
    log: Path

    def give(self, name: str, data: bytes | str) -> Path:
        """A file of the agent's own (0600, in its working folder)."""
        path = self.broker.work / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chown(path, pwd.getpwnam(AGENT).pw_uid, -1)
        path.chmod(0o600)
        return path

    def token(self, agent: str, ttl: str = "1h") -> str:
        proc = self.broker.broker_guardctl("broker", "token", "create", "--agent", agent,
                                           "--ttl", ttl)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.decode().strip()

    def environ(self, token_file: Path | None, ca: Path | None) -> dict[str, str]:
        return {"GUARDCTL_BROKER": self.url,
                "GUARDCTL_BROKER_CA": str(ca) if ca is not None else "",
                "GUARDCTL_BROKER_TOKEN_FILE": str(token_file) if token_file else ""}

    def agent(
        self, *args: str, token_file: Path | None, ca: Path | None, stdin: bytes | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        return self.broker.agent(*args, extra=self.environ(token_file, ca), stdin=stdin,
                                 timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, text: str, after: int = 0) -> str:
        """The broker's log past `after` characters, once it holds `text` (a worker writes
        its line as it ends, after its client left), or as it is after ten seconds."""
        for _ in range(100):
            new = self.log_text()[after:]
            if text in new:
                break
            time.sleep(0.1)
        return new

    def background(self, *args: str, token_file: Path, ca: Path,
                   extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`guardctl ARGS` as the agent, over TCP, in the background."""
        return subprocess.Popen(
            self.broker.command(AGENT, [str(self.broker.shared / "bin" / "guardctl"), *args],
                                {**self.environ(token_file, ca), **(extra or {})}),
            cwd=self.broker.work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )

    def waiting_read(self, token_file: Path, ca: Path,
                     extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """The agent's read of a Secret in the background: it waits for an approval that
        nobody gives, its client alive meanwhile."""
        return self.background("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml",
                               token_file=token_file, ca=ca, extra=extra)


@pytest.fixture(scope="module")
def tcp(devserver: DevServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tcp]:
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    admin = devserver.write_kubeconfig(tmp_path_factory.mktemp("admin") / "admin.kubeconfig")
    listen = ("--listen", "127.0.0.1:0", "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
              "--agent-service-account", "dev/default")
    # approvals wait long enough for a test to look at, or signal, a waiting client
    with running_broker(admin, extra_args=listen,
                        extra_environ={"GUARDCTL_APPROVAL_TIMEOUT": "60"}) as broker:
        log = broker.state / "broker.log"
        found = re.search(r"https://127\.0\.0\.1:\d+", log.read_text())
        assert found is not None, log.read_text()
        yield Tcp(broker, found.group(0), log)


@pytest.fixture(scope="module")
def agent_ca(tcp: Tcp, pki: Pki) -> Path:
    return tcp.give("ca.pem", pki.ca.read_bytes())


@pytest.fixture(scope="module")
def ci_token(tcp: Tcp) -> tuple[str, Path]:
    token = tcp.token("ci-1")
    return token, tcp.give("ci-1.token", token + "\n")


def _records(tcp: Tcp) -> list[dict[str, object]]:
    audit = Path(tcp.broker.environ["GUARDCTL_HOME"]) / "audit.jsonl"
    return [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]


def _completed(tcp: Tcp, started: dict[str, object]) -> list[dict[str, object]]:
    """The completion of a started record, once written: the worker writes it after the
    client has its exit status (at most ten seconds are waited for it)."""
    for _ in range(100):
        found = [r for r in _records(tcp) if r.get("started") == started["hash"]]
        if found:
            break
        time.sleep(0.1)
    return found


# ------------------------------------------------------------------ a valid token


def test_an_agent_with_a_token_runs_kubectl_over_tls(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path, devserver: DevServer
) -> None:
    _, token_file = ci_token
    devserver.clear_requests()
    proc = tcp.agent("get", "pods", "-n", "dev", token_file=token_file, ca=agent_ca)
    assert proc.returncode == 0, proc.stderr
    assert b"web-7d4b9c8f6d-x2k9p" in proc.stdout
    assert devserver.requests
    proc = tcp.agent("broker", "status", token_file=token_file, ca=agent_ca)
    assert proc.returncode == 0, proc.stderr
    assert b"you: ci-1 (token, from 127.0.0.1:" in proc.stdout and b", agent)" in proc.stdout


def test_output_over_tls_is_masked(tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path) -> None:
    _, token_file = ci_token
    proc = tcp.agent("logs", "web-7d4b9c8f6d-x2k9p", "-n", "dev", token_file=token_file,
                     ca=agent_ca)
    assert proc.returncode == 0, proc.stderr
    assert b"DATABASE_URL=postgres://app:" in proc.stdout
    assert b"s3cr3t-p4ss" not in proc.stdout and "«masked:".encode() in proc.stdout


def test_every_audit_record_of_a_tcp_agent_names_it(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path
) -> None:
    _, token_file = ci_token
    proc = tcp.agent("get", "ns", "-o", "name", token_file=token_file, ca=agent_ca)
    assert proc.returncode == 0, proc.stderr
    started = [r for r in _records(tcp) if r.get("argv") == ["kubectl", "get", "ns", "-o", "name"]
               and r.get("agent") == "ci-1"]
    assert started and started[-1]["status"] == "started"
    assert started[-1]["user"] == "token:ci-1"
    completed = _completed(tcp, started[-1])
    assert [r["agent"] for r in completed] == ["ci-1"] and completed[0]["exit_code"] == 0
    assert tcp.broker.broker_guardctl("audit", "verify").returncode == 0
    listed = tcp.broker.broker_guardctl("sessions", "--json").stdout.splitlines()
    rows = [row for row in map(json.loads, listed) if row["argv"] == started[-1]["argv"]]
    assert (rows[-1]["agent"], rows[-1]["user"]) == ("ci-1", "token:ci-1")


def test_an_agent_on_the_unix_socket_is_named_too(tcp: Tcp) -> None:
    proc = tcp.broker.agent("get", "ns", "-o", "name", "--request-timeout=30s")
    assert proc.returncode == 0, proc.stderr
    mine = [r for r in _records(tcp) if r.get("argv") == [
        "kubectl", "get", "ns", "-o", "name", "--request-timeout=30s"]]
    assert mine and all(r["agent"] == AGENT for r in mine)


def test_stdin_travels_when_the_command_reads_it(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path
) -> None:
    _, token_file = ci_token
    proc = tcp.agent("apply", "-f", "-", token_file=token_file, ca=agent_ca,
                     stdin=CONFIGMAP.format(name="over-tls").encode())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"configmap/over-tls created\n"
    assert tcp.broker.admin_kubectl("get", "cm", "over-tls", "-n", "dev").returncode == 0
    proc = tcp.agent("mask", token_file=token_file, ca=agent_ca,
                     stdin=b"GITHUB_TOKEN=ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "GITHUB_TOKEN=«masked:github-pat»\n".encode()


def test_a_command_that_reads_no_stdin_leaves_it_to_the_agent(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path
) -> None:
    _, token_file = ci_token
    script = ("printf 'one\\ntwo\\n' | while read -r word; do "
              "guardctl get ns -o name >/dev/null || exit 9; echo \"$word\"; done")
    proc = tcp.broker.agent_shell(script, extra=tcp.environ(token_file, agent_ca))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"one\ntwo\n"


def test_an_interactive_terminal_is_refused_over_tcp(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path, devserver: DevServer
) -> None:
    _, token_file = ci_token
    devserver.clear_requests()
    proc = tcp.agent("exec", "-it", "web-7d4b9c8f6d-x2k9p", "-n", "dev", "--", "sh",
                     token_file=token_file, ca=agent_ca)
    assert proc.returncode == 11
    assert b"interactive terminal (-t) cannot cross the broker's TCP connection" in proc.stderr
    assert devserver.requests == []


def test_a_tcp_agent_is_never_an_approver(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path
) -> None:
    _, token_file = ci_token
    for args in (("approvals",), ("broker", "token", "create", "--agent", "x"), ("sessions",)):
        proc = tcp.agent(*args, token_file=token_file, ca=agent_ca)
        assert proc.returncode == 11, (args, proc.stderr)
        assert b"is for the approver" in proc.stderr


# ------------------------------------------------------------------ refusals


def _refused(tcp: Tcp, devserver: DevServer, token_file: Path | None, ca: Path,
             says: str, logged: str) -> None:
    devserver.clear_requests()
    before = len(tcp.log_text())
    proc = tcp.agent("get", "pods", "-n", "dev", token_file=token_file, ca=ca)
    assert proc.returncode == 13, proc.stderr
    assert proc.stdout == b""
    assert len(proc.stderr.splitlines()) == 1 and says.encode() in proc.stderr, proc.stderr
    # nothing reached the cluster for the agent (a TokenReview asks who it is)
    assert [r for r in devserver.requests if not r[1].endswith("/tokenreviews")] == []
    new = tcp.logged(logged, before)
    assert re.search(rf"refused 127\.0\.0\.1:\d+ over TCP: {logged}", new), new


def test_a_missing_token_is_refused_and_logged(
    tcp: Tcp, agent_ca: Path, devserver: DevServer
) -> None:
    _refused(tcp, devserver, None, agent_ca, "the broker refused this agent: no token",
             "no token")


def test_a_wrong_token_is_refused_and_logged(
    tcp: Tcp, agent_ca: Path, devserver: DevServer
) -> None:
    wrong = "gctl_" + "x" * 43
    path = tcp.give("wrong.token", wrong)
    _refused(tcp, devserver, path, agent_ca, "unknown or revoked token", "unknown or revoked")
    assert wrong not in tcp.log_text()


def test_an_expired_token_is_refused_and_logged(
    tcp: Tcp, agent_ca: Path, devserver: DevServer
) -> None:
    store = tokens.store_path(Path(tcp.broker.environ["GUARDCTL_HOME"]))
    token = tokens.create(store, "old-agent", 60, now=time.time() - 3600)
    path = tcp.give("old.token", token)
    _refused(tcp, devserver, path, agent_ca, "the token of agent old-agent expired",
             "the token of agent old-agent expired")


def test_a_revoked_token_is_refused(tcp: Tcp, agent_ca: Path, devserver: DevServer) -> None:
    path = tcp.give("gone.token", tcp.token("gone"))
    assert tcp.agent("get", "ns", token_file=path, ca=agent_ca).returncode == 0
    proc = tcp.broker.broker_guardctl("broker", "token", "revoke", "gone")
    assert proc.returncode == 0, proc.stderr
    _refused(tcp, devserver, path, agent_ca, "unknown or revoked token", "unknown or revoked")


@pytest.mark.parametrize("command", [
    ("logs", "-f", "web-7d4b9c8f6d-x2k9p", "-n", "dev"),  # a stream kubectl keeps reading
    ("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"),  # waits for an approval
])
def test_revoking_a_token_ends_what_its_agent_is_running(
    tcp: Tcp, agent_ca: Path, command: tuple[str, ...]
) -> None:
    name = "follower" if command[0] == "logs" else "asker"
    session = f"revoked-{name}"
    running = tcp.background(*command, token_file=tcp.give(f"{name}.token", tcp.token(name)),
                             ca=agent_ca, extra={"GUARDCTL_SESSION": session})
    try:
        assert running.stdout is not None and running.stderr is not None
        if command[0] == "logs":
            assert running.stdout.readline().startswith(b"/docker-entrypoint.sh")  # streams
        else:
            assert b"waiting" in running.stderr.readline()
        before = len(tcp.log_text())
        proc = tcp.broker.broker_guardctl("broker", "token", "revoke", name)
        assert proc.returncode == 0, proc.stderr
        _, err = running.communicate(timeout=60)  # the broker checks every few seconds
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)  # runuser and the agent's guardctl
            running.communicate(timeout=60)
    assert running.returncode == 13, err
    assert err.splitlines()[-1] == (
        b"guardctl: the broker ended this command: unknown or revoked token; get a new token "
        b"from `guardctl broker token create`"), err
    assert re.search(rf"ended {name} \(token, from 127\.0\.0\.1:\d+, agent\)'s request: "
                     "unknown or revoked token", tcp.logged("unknown or revoked", before))
    (started,) = [r for r in _records(tcp)
                  if r.get("session") == session and r.get("status") == "started"]
    assert (started["status"], started["agent"]) == ("started", name)
    assert [r["agent"] for r in _completed(tcp, started)] == [name]
    assert tcp.broker.broker_guardctl("audit", "verify").returncode == 0


def test_an_unreadable_token_file_runs_nothing(tcp: Tcp, agent_ca: Path) -> None:
    proc = tcp.agent("get", "pods", token_file=tcp.broker.state / "nope", ca=agent_ca)
    assert proc.returncode == 13 and len(proc.stderr.splitlines()) == 1
    assert b"cannot read the token file" in proc.stderr


@pytest.mark.parametrize("which", ["other", "system"])
def test_a_client_that_does_not_trust_the_ca_is_refused(
    tcp: Tcp, ci_token: tuple[str, Path], pki: Pki, devserver: DevServer, which: str
) -> None:
    _, token_file = ci_token
    ca = tcp.give("other-ca.pem", pki.other_ca.read_bytes()) if which == "other" else None
    devserver.clear_requests()
    proc = tcp.agent("get", "pods", "-n", "dev", token_file=token_file, ca=ca)
    assert proc.returncode == 13 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert b"could not be verified" in proc.stderr and b"GUARDCTL_BROKER_CA" in proc.stderr
    assert devserver.requests == []


def test_plain_tcp_without_tls_is_refused(
    tcp: Tcp, ci_token: tuple[str, Path], devserver: DevServer
) -> None:
    token, _ = ci_token
    host, port = tcp.url.removeprefix("https://").rsplit(":", 1)
    devserver.clear_requests()
    request = wire.frame(wire.AUTH, token.encode()) + wire.encode_request(
        b"/", [b"get", b"pods", b"-n", b"dev"], [], [])
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        data = b""
        try:  # the broker may have closed the connection already
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
            while chunk := conn.recv(4096):
                data += chunk
        except OSError:
            pass
    assert wire.frame(wire.EXIT, b"0") not in data and b"web-7d4b9c8f6d" not in data
    assert devserver.requests == []
    assert "no TLS handshake" in tcp.logged("no TLS handshake")
    proc = tcp.broker.agent("get", "pods", extra={"GUARDCTL_BROKER": f"http://{host}:{port}"})
    assert proc.returncode == 13 and b"https://HOST:PORT" in proc.stderr


def test_the_token_is_in_no_argv_environment_log_or_record(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path
) -> None:
    token, token_file = ci_token
    waiting = tcp.waiting_read(token_file, agent_ca)
    try:
        seen = b""
        for _ in range(200):
            pids = subprocess.run(["pgrep", "-u", AGENT], capture_output=True).stdout.split()
            for pid in pids:
                for part in ("cmdline", "environ"):
                    try:
                        seen += Path(f"/proc/{pid.decode()}/{part}").read_bytes()
                    except OSError:
                        pass
            if b"GUARDCTL_BROKER_TOKEN_FILE" in seen:
                break
            time.sleep(0.05)
        assert b"GUARDCTL_BROKER_TOKEN_FILE" in seen  # the client was looked at
        assert token.encode() not in seen
    finally:
        waiting.terminate()
        waiting.communicate(timeout=60)
    state = tcp.broker.state
    for path in [p for p in state.rglob("*") if p.is_file()]:
        assert token.encode() not in path.read_bytes(), path
    store = json.loads(tokens.store_path(Path(tcp.broker.environ["GUARDCTL_HOME"])).read_text())
    assert tokens.digest(token) in [entry["sha256"] for entry in store["tokens"]]


# ------------------------------------------------------------------ the commands


def test_token_commands_show_a_token_once_and_keep_its_hash(tcp: Tcp) -> None:
    token = tcp.token("lister", "7d")
    assert re.fullmatch(r"gctl_[A-Za-z0-9]{43}", token)
    store = tokens.store_path(Path(tcp.broker.environ["GUARDCTL_HOME"]))
    assert store.stat().st_mode & 0o777 == 0o600 and store.parent.stat().st_mode & 0o777 == 0o700
    listed = tcp.broker.broker_guardctl("broker", "token", "list")
    assert listed.returncode == 0
    line = [ln for ln in listed.stdout.decode().splitlines() if ln.startswith("lister\t")]
    assert line and "\tvalid\t" in line[0] and token not in listed.stdout.decode()
    second = tcp.token("lister")
    assert second != token
    proc = tcp.broker.broker_guardctl("broker", "token", "revoke", "lister")
    assert proc.returncode == 0
    proc = tcp.broker.broker_guardctl("broker", "token", "revoke", "lister")
    assert proc.returncode == 2 and b"no agent named 'lister'" in proc.stderr
    for bad in (("--agent", "Bad Name"), ("--agent", "ok", "--ttl", "soon")):
        proc = tcp.broker.broker_guardctl("broker", "token", "create", *bad)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(("args", "says"), [
    ([], "give --socket PATH, --listen HOST:PORT, or both"),
    (["--listen", "127.0.0.1:0"], "--listen needs --tls-cert and --tls-key"),
    (["--listen", "nope", "--tls-cert", "c", "--tls-key", "k"], "is not HOST:PORT"),
    (["--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent/c", "--tls-key", "/nonexistent/k"],
     "cannot use --tls-cert /nonexistent/c with --tls-key /nonexistent/k"),
])
def test_serve_needs_a_socket_or_a_listener_with_its_certificate(
    args: list[str], says: str
) -> None:
    proc = subprocess.run([sys.executable, "-m", "guardctl", "broker", "serve", *args],
                          capture_output=True, timeout=60,
                          env={**os.environ, "GUARDCTL_BROKER": ""})
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr.decode().strip().splitlines()[-1], proc.stderr


def test_much_input_and_output_cross_whole(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path
) -> None:
    _, token_file = ci_token
    # more than the relay holds back for one side (1 MiB) and than any pipe holds
    text = b"".join(b"line %d of plain text, nothing secret here\n" % i for i in range(40000))
    proc = tcp.agent("mask", token_file=token_file, ca=agent_ca, stdin=text, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) == len(text), (len(proc.stdout), proc.stdout[-200:], proc.stderr)
    assert proc.stdout == text


def test_a_signal_to_the_client_ends_the_command_in_the_broker(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path
) -> None:
    _, token_file = ci_token
    waiting = tcp.waiting_read(token_file, agent_ca, {"GUARDCTL_SESSION": "tcp-signal"})
    try:
        assert waiting.stderr is not None
        line = waiting.stderr.readline()  # the broker says it waits for a human
        assert b"waiting" in line, line
        # to the agent's guardctl itself (runuser would end its session its own way)
        (child,) = Path(f"/proc/{waiting.pid}/task/{waiting.pid}/children").read_text().split()
        os.kill(int(child), signal.SIGTERM)
        _, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate(timeout=60)
    assert waiting.returncode == 143, err
    (started,) = [r for r in _records(tcp) if r.get("session") == "tcp-signal"
                  and r.get("status") == "started"]
    ended = _completed(tcp, started)
    assert [r["exit_code"] for r in ended] == [143] and ended[0]["agent"] == "ci-1"


def test_a_client_that_dribbles_its_handshake_is_dropped(tcp: Tcp) -> None:
    """A byte now and then keeps a per-read timeout alive; the broker's deadline is for the
    handshake, the token and the request together."""
    host, port = tcp.url.removeprefix("https://").rsplit(":", 1)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.settimeout(1)
        closed = False
        for byte in hello:  # one byte a second, for at most 64 s
            try:
                conn.sendall(bytes((byte,)))
                closed = conn.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
    assert closed
    assert "no TLS handshake (no request within 10 s)" in tcp.logged("no request within")


# ------------------------------------------------------------------ ServiceAccount tokens


def _service_account_token(tcp: Tcp, namespace: str, *audience: str) -> str:
    """A token the cluster issued for `namespace`/default (for `audience`, if given)."""
    words = ["create", "token", "default", "-n", namespace]
    words += [f"--audience={a}" for a in audience]
    proc = tcp.broker.admin_kubectl(*words)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().strip()


def test_an_agents_service_account_token_is_checked_by_a_token_review(
    tcp: Tcp, agent_ca: Path, devserver: DevServer
) -> None:
    path = tcp.give("sa.token", _service_account_token(tcp, "dev", "guardctl-broker"))
    proc = tcp.agent("get", "pods", "-n", "dev", "--request-timeout=31s", token_file=path,
                     ca=agent_ca)
    assert proc.returncode == 0, proc.stderr
    assert b"web-7d4b9c8f6d-x2k9p" in proc.stdout
    mine = [r for r in _records(tcp) if "--request-timeout=31s" in (r.get("argv") or [])]
    assert mine and mine[-1]["agent"] == "system:serviceaccount:dev:default"
    assert mine[-1]["user"] == "system:serviceaccount:dev:default"
    # kubectl still runs as the broker's own agent account, never as the caller's token
    assert {user for _, _, user in devserver.requests} >= {
        "system:serviceaccount:guardctl:guardctl-agent"}


def test_a_service_account_token_for_the_api_server_is_refused(
    tcp: Tcp, agent_ca: Path, devserver: DevServer
) -> None:
    path = tcp.give("api.token", _service_account_token(tcp, "dev"))
    _refused(tcp, devserver, path, agent_ca, "the cluster does not accept this Kubernetes token",
             "the cluster does not accept this Kubernetes token")


def test_a_service_account_the_broker_does_not_serve_is_refused(
    tcp: Tcp, agent_ca: Path, devserver: DevServer
) -> None:
    path = tcp.give("prod.token", _service_account_token(tcp, "prod", "guardctl-broker"))
    _refused(tcp, devserver, path, agent_ca,
             "system:serviceaccount:prod:default is not an account this broker serves",
             "system:serviceaccount:prod:default is not an account this broker serves")


def test_sh_runs_bash_as_the_agent_and_kubectl_through_the_broker_over_tcp(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path
) -> None:
    _, token_file = ci_token
    proc = tcp.agent("sh", "-c", "kubectl get ns -o name | grep -c namespace/; id -un",
                     token_file=token_file, ca=agent_ca)
    assert proc.returncode == 0, proc.stderr
    count, user = proc.stdout.decode().split()
    assert int(count) >= 3 and user == AGENT
    proc = tcp.agent("check", "--batch", token_file=token_file, ca=agent_ca,
                     stdin=b'{"line": "kubectl delete ns prod", "id": 7}\n')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["decision"] == "deny"


def test_the_last_workers_are_kept_for_the_unix_socket() -> None:
    from guardctl.broker import server

    unix, tcp_listener = socket.socket(socket.AF_UNIX), socket.socket()
    try:
        both = [unix, tcp_listener]
        assert server._open_to(both, 0, True) == both
        assert server._open_to(both, server.MAX_WORKERS - server.SOCKET_RESERVE - 1, True) == both
        assert server._open_to(both, server.MAX_WORKERS - server.SOCKET_RESERVE, True) == [unix]
        # a broker on TCP alone has nobody to keep workers for
        assert server._open_to([tcp_listener], server.MAX_WORKERS - 1, False) == [tcp_listener]
    finally:
        unix.close()
        tcp_listener.close()


def test_a_certificate_for_another_host_is_refused(
    tcp: Tcp, ci_token: tuple[str, Path], agent_ca: Path, pki: Pki
) -> None:
    """Signed by the trusted CA, but for elsewhere.example: the client checks the name, and
    the impostor never gets the token."""
    token, token_file = ci_token
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    impostor = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pki.elsewhere),
         "-quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):  # until it listens
            with socket.socket() as knock:
                if knock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        proc = tcp.broker.agent("get", "pods", extra={
            **tcp.environ(token_file, agent_ca), "GUARDCTL_BROKER": f"https://127.0.0.1:{port}"})
    finally:
        impostor.kill()
        heard, _ = impostor.communicate(timeout=30)
    assert token.encode() not in heard
    assert proc.returncode == 13 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert b"could not be verified" in proc.stderr and b"mismatch" in proc.stderr
