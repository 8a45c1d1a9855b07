"""The broker's parts on their own: wire format, roles, socket ACL, local inputs, kubectl's
environment, the client's settings. The whole broker is tested in test_broker_e2e.py and
attacked in test_broker_attacks.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardctl import runtime
from guardctl.broker import client, inputs, localfiles, server, wire
from guardctl.broker.peer import AGENT, APPROVER, Access, Peer
from guardctl.firewall.normalize import normalize
from guardctl.model import SimpleCommand
from guardctl.running import kubectl_env

# --------------------------------------------------------------------------- wire


def test_a_request_round_trips() -> None:
    args = [b"get", b"pods", b"-n", b"d\xffev", b""]
    framed = wire.encode_request(b"/w", args, [b"GUARDCTL_SESSION=s"], [b"/bin/guardctl"])
    assert framed[:1] == wire.REQUEST
    body = framed[wire.HEADER :]
    assert wire.decode_request(body) == (b"/w", args, [b"GUARDCTL_SESSION=s"], [b"/bin/guardctl"])


@given(st.binary(max_size=300))
def test_any_request_body_decodes_or_is_refused(body: bytes) -> None:
    try:
        wire.decode_request(body)
    except wire.ProtocolError:
        pass


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(1, 7))
def test_frames_survive_any_split(bodies: list[bytes], step: int) -> None:
    data = b"".join(wire.frame(wire.FILE, b) for b in bodies)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    reader = wire.Reader(lambda _size: chunks.pop(0) if chunks else b"")
    assert [reader.next() for _ in bodies] == [(wire.FILE, b) for b in bodies]
    with pytest.raises(EOFError):
        reader.next()


def test_a_frame_larger_than_the_limit_is_refused() -> None:
    data = wire.frame(wire.FILE, b"x" * 100)
    reader = wire.Reader(lambda _size: data, limit=10)
    with pytest.raises(wire.ProtocolError):
        reader.next()


# --------------------------------------------------------------------------- roles


def peer(uid: int, gid: int = 500, groups: tuple[int, ...] = (), same: bool = True) -> Peer:
    return Peer(pid=1, uid=uid, gid=gid, groups=groups, same_namespaces=same)


ACCESS = Access(owner=100, approvers=frozenset({101}), agent_users=frozenset({200}),
                agent_groups=frozenset({300}))


@pytest.mark.parametrize(
    ("who", "role"),
    [
        (peer(100), APPROVER),  # the broker's own account
        (peer(101), APPROVER),  # --approver-user
        (peer(100, same=False), AGENT),  # its account in a sandbox: the agent it runs
        (peer(101, same=False), AGENT),
        (peer(200), AGENT),  # --agent-user
        (peer(200, same=False), AGENT),
        (peer(201, gid=300), AGENT),  # primary group
        (peer(202, groups=(7, 300)), AGENT),  # supplementary group
        (peer(203), None),  # anyone else
        (peer(0), None),  # root too: it is not named
    ],
)
def test_roles(who: Peer, role: str | None) -> None:
    assert ACCESS.role(who) == role


def test_an_account_cannot_be_agent_and_approver() -> None:
    with pytest.raises(Exception, match="cannot be both an agent and an approver"):
        server.make_access(["root"], [], [])


def test_the_socket_acl_names_exactly_the_agents() -> None:
    data = server._acl([1001, 1002], [300])
    assert int.from_bytes(data[:4], "little") == 2
    entries = [
        (int.from_bytes(data[i : i + 2], "little"), int.from_bytes(data[i + 2 : i + 4], "little"),
         int.from_bytes(data[i + 4 : i + 8], "little"))
        for i in range(4, len(data), 8)
    ]
    assert entries == [
        (0x01, 6, 0xFFFFFFFF), (0x02, 6, 1001), (0x02, 6, 1002), (0x04, 0, 0xFFFFFFFF),
        (0x08, 6, 300), (0x10, 6, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF),
    ]


def test_a_socket_folder_others_may_change_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(Exception, match="can be changed by other users"):
        server._check_folder(folder)
    folder.chmod(0o1777)  # sticky: nobody can replace our file
    server._check_folder(folder)


# --------------------------------------------------------------------------- inputs


def call(*words: str):  # type: ignore[no-untyped-def]
    return normalize(SimpleCommand(argv=("kubectl", *words)))


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("apply", "-f", "x.yaml"), [("filename", "x.yaml", "manifests", 2)]),
        (("apply", "-Rf", "dir/"), [("filename", "dir/", "manifests-r", 2)]),
        (("apply", "-Rfdir/"), [("filename", "dir/", "manifests-r", 1)]),
        (("apply", "--filename=a.yaml", "-f", "-"), [("filename", "a.yaml", "manifests", 1)]),
        (("apply", "-f", "https://x/y.yaml"), []),
        (("apply", "-k", "overlay"), [("kustomize", "overlay", "tree", 2)]),
        (("create", "configmap", "c", "--from-file=key=conf/a.txt", "--from-file", "b"),
         [("from-file", "conf/a.txt", "flat", 3), ("from-file", "b", "flat", 5)]),
        (("create", "secret", "tls", "t", "--cert", "c.pem", "--key=k.pem"),
         [("cert", "c.pem", "file", 5), ("key", "k.pem", "file", 6)]),
        (("get", "pods", "-o", "go-template-file=t.tmpl"), [("output", "t.tmpl", "file", 3)]),
        (("get", "pods", "-o", "go-template-file", "--template", "t.tmpl"),
         [("template", "t.tmpl", "file", 5)]),
        (("get", "pods", "-o", "go-template", "--template", "{{.x}}"), []),
        (("patch", "deploy", "d", "--patch-file", "p.json"),
         [("patch-file", "p.json", "manifests", 4)]),
        (("kustomize", "base"), [("", "base", "tree", 1)]),
        (("kustomize",), [("", ".", "tree", -1)]),
        (("exec", "pod", "--", "cat", "-f", "x"), []),  # the container's words, not kubectl's
        (("cp", "local/dir", "dev/web:/tmp/"), [("", "local/dir", "copy", 1)]),
        (("cp", "-n", "dev", "web:/etc/hosts", "hosts"), []),  # from a pod: nothing to send
        (("cp", "a", "b"), []),  # both local: kubectl's own error
    ],
)
def test_local_inputs_are_found_in_every_spelling(
    words: tuple[str, ...], expected: list[tuple[str, str, str, int]]
) -> None:
    assert [tuple(n) for n in inputs.needed(call(*words))] == expected


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        (("get", "pods", "--kubeconfig=/etc/k"), "--kubeconfig"),
        (("get", "pods", "--cache-dir", "/tmp/c"), "--cache-dir"),
        (("get", "pods", "--profile=cpu", "--profile-output=/tmp/p"), "--profile-output"),
        (("get", "pods", "--client-key", "/k"), "--client-key"),
        (("cluster-info", "dump", "--output-directory=/tmp/d"), "writes files"),
        (("proxy", "--www=/srv"), "serves a folder"),
        (("proxy", "-u", "/tmp/s"), "makes a socket"),
        (("kustomize", "--enable-helm", "d"), "runs helm"),
        (("kustomize", "d", "-o", "/tmp/out"), "writes a file"),
        (("kustomize", "d", "--load-restrictor=LoadRestrictionsNone"), "outside its folder"),
        (("edit", "cm", "x"), "needs an editor"),
        (("apply", "--edit", "-f", "x"), "needs an editor"),
        (("create", "--edit", "-f", "x"), "needs an editor"),
        (("pwn", "now"), "only the plugins the broker's config lists"),
        (("get", "pods", "--not-a-flag"), "not in guardctl's flag table"),
    ],
)
def test_what_the_broker_refuses(words: tuple[str, ...], reason: str) -> None:
    found = inputs.refusal(call(*words))
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "words",
    [("get", "pods", "-n", "dev", "-o", "json"), ("apply", "-f", "x.yaml"),
     ("logs", "-f", "web"), ("port-forward", "web", "8080:80"), ("diff", "-f", "x")],
)
def test_what_the_broker_runs(words: tuple[str, ...]) -> None:
    assert inputs.refusal(call(*words)) is None


def test_materialize_writes_private_copies_and_rewrites_only_the_path(tmp_path: Path) -> None:
    argv = ("create", "configmap", "c", "--from-file=key=conf/a.txt", "--from-file", "dir/")
    needs = inputs.needed(call(*argv))
    fetched = {
        ("conf/a.txt", "flat"): [("", b"A")],
        ("dir/", "flat"): [("x.yaml", b"X"), ("sub/y.yaml", b"Y")],
    }
    words = inputs.materialize(argv, needs, fetched, tmp_path)
    assert words[:3] == argv[:3] and words[4] == "--from-file"
    assert words[3] == f"--from-file=key={tmp_path}/in0/a.txt"
    assert words[5] == f"{tmp_path}/in1/dir"
    assert (tmp_path / "in0" / "a.txt").read_bytes() == b"A"
    assert (tmp_path / "in1" / "dir" / "sub" / "y.yaml").read_bytes() == b"Y"
    assert stat.S_IMODE((tmp_path / "in1" / "dir" / "x.yaml").stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/../../b", "", "a//b"])
def test_materialize_refuses_names_that_leave_the_copy(tmp_path: Path, name: str) -> None:
    argv = ("apply", "-f", "d")
    with pytest.raises(ValueError, match="unsafe file name"):
        inputs.materialize(argv, inputs.needed(call(*argv)),
                           {("d", "manifests"): [(name, b"x"), ("ok.yaml", b"y")]}, tmp_path)


# --------------------------------------------------------------------------- the client's reading


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name, text in {"a.yaml": "a", "b.json": "b", "notes.txt": "n", "sub/c.yml": "c"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("manifests", ["a.yaml", "b.json"]),
        ("manifests-r", ["a.yaml", "b.json", "sub/c.yml"]),
        ("flat", ["a.yaml", "b.json", "notes.txt"]),
        ("tree", ["a.yaml", "b.json", "notes.txt", "sub/c.yml"]),
    ],
)
def test_a_folder_is_read_as_kubectl_reads_it(tree: Path, mode: str, names: list[str]) -> None:
    assert [n for n, _ in localfiles.collect(str(tree), mode)] == names


def test_files_fifos_and_tilde(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert localfiles.collect(str(tree / "a.yaml"), "file") == [("", b"a")]
    with pytest.raises(localfiles.InputError, match="is a folder"):
        localfiles.collect(str(tree), "file")
    os.mkfifo(tree / "pipe.yaml")
    with pytest.raises(localfiles.InputError, match="not a regular file"):
        localfiles.collect(str(tree / "pipe.yaml"), "file")
    monkeypatch.setenv("HOME", str(tree))
    with pytest.raises(localfiles.InputError, match="does not exist"):
        localfiles.collect("~/a.yaml", "file")  # kubectl takes `~` literally
    assert localfiles.collect("~/a.yaml", "file", expand=True) == [("", b"a")]


def test_an_input_is_bounded(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localfiles, "MAX_BYTES", 3)
    with pytest.raises(localfiles.InputError, match="more than 3 bytes"):
        localfiles.collect(str(tree), "tree")
    monkeypatch.setattr(localfiles, "MAX_BYTES", 1000)
    monkeypatch.setattr(localfiles, "MAX_FILES", 2)
    with pytest.raises(localfiles.InputError, match="more than 2 files"):
        localfiles.collect(str(tree), "tree")


# --------------------------------------------------------------------------- the client's settings


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("broker: /run/guardctl/broker.sock\n", "/run/guardctl/broker.sock"),
        ("context: x\nbroker: '/run/a b.sock'  # comment\n", "/run/a b.sock"),
        ('broker: "/run/q.sock"\n', "/run/q.sock"),
        ("broker: /run/c.sock # comment\n", "/run/c.sock"),
        ("  broker: /nested/is/not/top\n", None),
        ("broker:\n", None),
        ("", None),
    ],
)
def test_broker_in_the_config_file(tmp_path: Path, text: str, found: str | None) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    assert runtime.broker_path({"GUARDCTL_CONFIG": str(config)}) == found
    assert runtime.broker_path({"GUARDCTL_CONFIG": str(config), "GUARDCTL_BROKER": "/v"}) == "/v"


def test_a_request_chooses_only_the_session_and_the_grant() -> None:
    from guardctl.broker.server import command_environ

    assert client.AGENT_VARIABLES == ("GUARDCTL_SESSION", "GUARDCTL_PREAPPROVED")
    broker_environ = {"HOME": "/srv/broker", "GUARDCTL_RULES": "/srv/rules.yaml",
                      "GUARDCTL_BROKER": "/run/guardctl/broker.sock"}
    requested = [b"GUARDCTL_SESSION=s1", b"GUARDCTL_PREAPPROVED=grant", b"HOME=/home/agent",
                 b"GUARDCTL_RULES=/home/agent/loose.yaml", b"GUARDCTL_BROKER=/tmp/fake.sock",
                 b"GUARDCTL_HOME=/home/agent/state", b"PATH=/home/agent/bin"]
    # the broker's own settings, the two a client may choose, and nothing else of the client's;
    # its own GUARDCTL_BROKER goes too, so a command it runs never routes back to a broker
    assert command_environ(broker_environ, requested) == {
        "HOME": "/srv/broker", "GUARDCTL_RULES": "/srv/rules.yaml",
        "GUARDCTL_SESSION": "s1", "GUARDCTL_PREAPPROVED": "grant",
    }


@pytest.mark.parametrize(
    ("args", "here"),
    [
        (["--help"], True), (["--version"], True), (["broker", "serve", "--socket", "s"], True),
        (["demo"], True), (["devserver"], True), (["mcp"], True), (["shim", "install", "d"], True),
        (["doctor"], True), (["broker", "status"], False), (["get", "pods"], False),
        (["check", "x"], False), (["approvals"], False), (["sh", "-c", "x"], False), ([], False),
    ],
)
def test_what_runs_in_the_clients_own_process(args: list[str], here: bool) -> None:
    assert client.runs_here(args) is here


# --------------------------------------------------------------------------- kubectl's environment


def test_kubectl_gets_an_environment_of_guardctls_own(tmp_path: Path) -> None:
    home = kubectl_env.prepare(tmp_path / "cache")
    environ = kubectl_env.environ(home, tmp_path / "kc", tmp_path / "tmp")
    assert environ == {
        "PATH": str(home / "bin"), "HOME": str(home), "KUBECONFIG": str(tmp_path / "kc"),
        "KUBERC": "off", "KUBECTL_KUBERC": "false", "TMPDIR": str(tmp_path / "tmp"),
        "GOGC": "200",
    }
    assert sorted(p.name for p in (home / "bin").iterdir()) == ["diff"]
    assert os.readlink(home / "bin" / "diff").startswith(("/usr/", "/bin/"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_a_planted_tool_is_replaced(tmp_path: Path) -> None:
    home = kubectl_env.prepare(tmp_path / "cache")
    (home / "bin" / "diff").unlink()
    (home / "bin" / "diff").symlink_to(tmp_path / "evil")
    kubectl_env.prepare(tmp_path / "cache")
    assert not os.readlink(home / "bin" / "diff").startswith(str(tmp_path))


def test_a_planted_file_is_replaced_by_the_link(tmp_path: Path) -> None:
    tools = tmp_path / "cache" / "kubectl" / "bin"
    tools.mkdir(parents=True)
    (tools / "diff").write_text("#!/bin/sh\n")
    home = kubectl_env.prepare(tmp_path / "cache")
    assert os.readlink(home / "bin" / "diff").startswith(("/usr/", "/bin/"))
    assert sorted(p.name for p in (home / "bin").iterdir()) == ["diff"]


# separate processes preparing one fresh folder at the same moment, as cold runs do
_PREPARE_AT_ONCE = """
import os, sys, time
from pathlib import Path
from guardctl.running import kubectl_env
start = float(sys.argv[2])
while time.time() < start:
    pass
kubectl_env.prepare(Path(sys.argv[1]))
"""


@pytest.mark.parametrize("trial", range(3))
def test_runs_preparing_at_once_all_succeed(tmp_path: Path, trial: int) -> None:
    start = str(time.time() + 0.5)
    runs = [
        subprocess.Popen([sys.executable, "-c", _PREPARE_AT_ONCE, str(tmp_path / "cache"), start],
                         stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    results = [(run.communicate(timeout=30)[1], run.returncode) for run in runs]
    assert [(err, code) for err, code in results if code != 0] == []
    home = tmp_path / "cache" / "kubectl"
    assert sorted(p.name for p in (home / "bin").iterdir()) == ["diff"]
    assert [p.name for p in home.iterdir() if p.name.startswith(".")] == []  # no spare left


def test_minting_keeps_plugin_settings_and_drops_what_steers_kubectl(tmp_path: Path) -> None:
    environ = {
        "PATH": "/p", "AWS_PROFILE": "x", "KUBECONFIG": "/mine", "KUBECTL_EXTERNAL_DIFF": "e",
        "KUBE_EDITOR": "vi", "https_proxy": "http://p", "HTTPS_PROXY": "http://p", "KUBERC": "k",
        "KUBECACHEDIR": "/c", "KUBECTL_ENABLE_CMD_SHADOW": "true",
    }
    assert kubectl_env.mint_environ(environ, tmp_path / "kc") == {
        "PATH": "/p", "AWS_PROFILE": "x", "KUBECONFIG": str(tmp_path / "kc"), "KUBERC": "off",
        "KUBECTL_KUBERC": "false",
    }


# --------------------------------------------------------------------------- the worker pool


def test_the_pool_keeps_spares_and_never_more_workers_than_its_limit() -> None:
    import signal
    import time

    def spare(taken: int) -> None:  # a worker that takes a "connection" at once, then lives
        os.write(taken, os.getpid().to_bytes(4, sys.byteorder))
        time.sleep(30)
        os._exit(0)

    pool = server._Pool(spare, spares=2, limit=3)
    try:
        pool.fill()
        assert len(pool.spares) == 2
        deadline = time.monotonic() + 10
        while len(pool.busy) < 2 and time.monotonic() < deadline:
            pool.wait(0.1)
        assert len(pool.busy) == 2 and not pool.spares
        pool.fill()
        assert len(pool.spares) == 1  # the third worker; the limit is reached
        pool.fill()
        assert len(pool.spares) + len(pool.busy) <= 3
        victim = next(iter(pool.busy))
        os.kill(victim, signal.SIGKILL)
        while victim in pool.busy and time.monotonic() < deadline + 10:
            pool.wait(0.1)
        assert victim not in pool.busy  # reaped: room for another
    finally:
        for pid in (*pool.spares, *pool.busy):
            os.kill(pid, signal.SIGKILL)
        pool.wait(0.1)
        pool.stop()


def test_while_a_request_runs_the_pool_refills_only_when_empty(tmp_path: Path) -> None:
    # a spare's warm-up would take a CPU from the request being served: the second spare
    # is forked once the busy worker ended, the first one at once
    import signal
    import time

    def spare(taken: int) -> None:  # the first spare takes a "connection"; the others idle
        try:
            os.close(os.open(tmp_path / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            time.sleep(30)
            os._exit(0)
        os.write(taken, os.getpid().to_bytes(4, sys.byteorder))
        deadline = time.monotonic() + 30
        while not (tmp_path / "done").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(0)

    pool = server._Pool(spare, spares=2, limit=8)
    try:
        pool.fill()
        deadline = time.monotonic() + 10
        while not pool.busy and time.monotonic() < deadline:
            pool.wait(0.1)
        (busy,) = pool.busy
        pool.fill()
        assert len(pool.spares) == 1  # one request runs, one spare waits: no warm-up now
        (tmp_path / "done").touch()
        woken = False
        while busy in pool.busy and time.monotonic() < deadline:
            woken = pool.wait(5)
        assert not pool.busy and woken  # by the worker's end (its pidfd), not a timeout
        pool.fill()
        assert len(pool.spares) == 2
    finally:
        (tmp_path / "done").touch()
        for pid in (*pool.spares, *pool.busy):
            os.kill(pid, signal.SIGKILL)
        pool.wait(0.1)
        pool.stop()


def test_a_stop_signal_during_a_fork_never_loses_the_spare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a SIGTERM that arrives while a spare is being forked is handled once the server knows
    # the spare, so stopping ends it (it once outlived the server, holding the socket's lock)
    import signal
    import time

    real_fork = os.fork

    def fork_then_stop() -> int:
        pid = real_fork()
        if pid != 0:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives before the pool records the pid
        return pid

    def stop(_signum: int, _frame: object) -> None:
        raise RuntimeError("stopped")

    def spare(_taken: int) -> None:
        time.sleep(30)

    pool = server._Pool(spare, spares=1, limit=1)
    previous = signal.signal(signal.SIGTERM, stop)
    monkeypatch.setattr(os, "fork", fork_then_stop)
    try:
        with pytest.raises(RuntimeError, match="stopped"):
            pool.fill()
        monkeypatch.setattr(os, "fork", real_fork)
        assert len(pool.spares) == 1  # recorded before the signal was handled
    finally:
        signal.signal(signal.SIGTERM, previous)
        pool.stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not pool.wait(0.1):
            pass


def test_a_failing_child_never_unwinds_into_the_servers_frames(tmp_path: Path) -> None:
    # the server's `finally` blocks remove the socket: a forked worker that raised must end
    # where it is, not run them (a signal at a worker's last step once removed the socket)
    import time

    parent = os.getpid()

    def run(_taken: int) -> None:
        raise SystemExit(3)

    pool = server._Pool(run, spares=1, limit=1)
    try:
        pool.fill()
        (child,) = pool.spares
        deadline = time.monotonic() + 10
        while child in pool.spares and time.monotonic() < deadline:
            pool.wait(0.05)
        assert child not in pool.spares
    finally:
        if os.getpid() != parent:
            (tmp_path / "unwound").write_text("a child ran the server's finally blocks")
            os._exit(0)
    assert not (tmp_path / "unwound").exists()


@pytest.mark.parametrize(
    ("socket_path", "message"),
    [
        ("/nonexistent/dir/b.sock", "cannot use /nonexistent/dir for the socket"),
        ("{tmp}/" + "x" * 120 + "/b.sock", "cannot listen on"),
    ],
)
def test_a_socket_that_cannot_be_made_is_one_line(
    tmp_path: Path, socket_path: str, message: str
) -> None:
    import subprocess

    path = Path(socket_path.format(tmp=tmp_path))
    if path.parent.name.startswith("x"):
        path.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", "broker", "serve", "--socket", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_an_input_the_client_sends_is_bounded_on_the_brokers_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from guardctl.broker import caller

    monkeypatch.setattr(caller, "MAX_BYTES", 10)
    receiving = caller._Receiving("x.yaml", "manifests")
    receiving.add(b"a.yaml\0" + b"1234")
    receiving.add(b"b.yaml\0" + b"1234567")  # 11 bytes in all: past the limit
    receiving.add(b"c.yaml\0" + b"1")
    receiving.end("ok")
    result = receiving.result()
    assert result.entries == []
    assert result.error is not None and "more than 10 bytes" in result.error
    fine = caller._Receiving("y.yaml", "manifests")
    fine.add(b"a.yaml\0" + b"123")
    fine.end("ok")
    assert fine.result() == caller._Input([("a.yaml", b"123")], None)
    refused = caller._Receiving("z.yaml", "manifests")
    refused.end('the path "z.yaml" does not exist')
    assert refused.result().error == 'the path "z.yaml" does not exist'


def test_a_spare_sees_a_connection_that_already_waits(tmp_path: Path) -> None:
    """Spares skip their warm-up when a connection waits (many agents at once)."""
    import socket

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "s"))
    listener.listen(4)
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(tmp_path / "t"))
    other.listen(4)
    try:
        assert not server._waiting([listener, other])
        with socket.socket(socket.AF_UNIX) as caller:
            caller.connect(str(tmp_path / "t"))
            assert server._waiting([listener, other])
            other.accept()[0].close()
        assert not server._waiting([listener, other])
    finally:
        listener.close()
        other.close()


# --------------------------------------------------------------------------- the warm-up

# after the servers' warm-up, what a worker masks builds no keyword scan of its own (a
# Hyperscan compile took 0.3 s in the worker whose kubectl printed more than one chunk)
_AFTER_WARM_UP = """
from guardctl.broker import warm
from guardctl.masking import detectors, mask
warm.build()
built = []
real = mask.literal_scan
mask.literal_scan = lambda words: built.append(words) or real(words)
found = detectors.default_detectors()
for argv in (["get", "pods"], ["get", "secret", "-o", "yaml"], ["logs", "web"]):
    masker = mask.masker_for(argv, found, ["a-minted-token-0123456789"])
    for chunk in (b"first: line\\n", b"password: hunter2\\n", b"-----BEGIN PGP PRIVATE KEY"):
        masker.feed(chunk)
    masker.flush()
print(len(built))
"""


@pytest.mark.parametrize("server", ["forkserver", "server"])
def test_the_servers_load_what_workers_read_lines_with_before_they_fork(
    server: str, tmp_path: Path
) -> None:
    # a worker that reads a heredoc's manifest, or a line only bashlex reads, would import
    # yaml or bashlex itself (~20 ms and ~100 ms) if its server had not
    code = (f"import sys\nfrom guardctl.broker import {server}\n{server}.prewarm()\n"
            "print(*(name in sys.modules for name in ('yaml', 'bashlex')))")
    env = {**os.environ, "GUARDCTL_HOME": str(tmp_path / "home"),
           "GUARDCTL_CONFIG": str(tmp_path / "none.yaml"), "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_after_the_warm_up_masking_builds_no_keyword_scan(tmp_path: Path) -> None:
    env = {**os.environ, "GUARDCTL_HOME": str(tmp_path / "home"),
           "GUARDCTL_CONFIG": str(tmp_path / "none.yaml"), "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _AFTER_WARM_UP], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
