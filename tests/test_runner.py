"""The runner against a scripted fake kubectl: pipes byte for byte, a real pty, signals."""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pexpect
import pytest

from guardctl.devserver import DevServer
from guardctl.env import Environment
from guardctl.errors import UnsafeError
from guardctl.running import kubectl_env, lifeline
from guardctl.running.kubeconfig import temp_kubeconfig
from guardctl.running.runner import NOT_FOUND, find_kubectl, run

DATA = Path(__file__).resolve().parent / "data"
FAKE = str(DATA / "fake_kubectl.py")
HARNESS = str(DATA / "run_harness.py")
REPO = str(Path(__file__).resolve().parent.parent)
SECRET = "s3cr3t-v4lue-0123456789"
TIMEOUT = 15

_spec = importlib.util.spec_from_file_location("run_harness", HARNESS)
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


class Identity:
    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class Upper:
    def feed(self, data: bytes) -> bytes:
        return data.upper()

    def flush(self) -> bytes:
        return b""


@pytest.fixture
def devnull() -> Iterator[IO[Any]]:
    with open(os.devnull, "rb") as handle:
        yield handle


def _run(mode: str, arg: str = "", stdin: IO[Any] | None = None,
         out_filter: Any = None, err_filter: Any = None) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run([sys.executable, FAKE, mode, arg], dict(os.environ),
               stdout_filter=out_filter or Identity(), stderr_filter=err_filter or Identity(),
               stdin=stdin, use_pty=False, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- pipes mode


def test_pipes_are_byte_identical(devnull: IO[Any]) -> None:
    code, out, err = _run("bytes", stdin=devnull)
    assert code == 0
    assert out == b"line one\r\nline two\n\x00\x01\xfe\xff\x1b[31mred\x1b[0m no newline"
    assert err == b"warning: on stderr\r\n"


@pytest.mark.parametrize("exit_code", [0, 1, 42])
def test_exit_code_passes_through(devnull: IO[Any], exit_code: int) -> None:
    code, out, err = _run("exit", str(exit_code), stdin=devnull)
    assert (code, out, err) == (exit_code, b"some output\n", b"some error\n")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGUSR1])
def test_death_by_signal_is_128_plus_n(devnull: IO[Any], signum: int) -> None:
    code, out, _ = _run("signal", str(int(signum)), stdin=devnull)
    assert code == 128 + signum
    assert out == b"dying\n"


def test_stdin_passes_through(tmp_path: Path) -> None:
    manifest = b"apiVersion: v1\nkind: ConfigMap\n\x00\xff no newline"
    (tmp_path / "in").write_bytes(manifest)
    with open(tmp_path / "in", "rb") as stdin:
        code, out, _ = _run("cat", stdin=stdin)
    assert (code, out) == (0, manifest)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_filters_see_a_secret_split_across_chunks(devnull: IO[Any], stream: str) -> None:
    filters = {"stdout": harness.ReplaceFilter(SECRET.encode(), b"***"),
               "stderr": harness.ReplaceFilter(SECRET.encode(), b"***")}
    code, out, err = _run("split", SECRET, stdin=devnull,
                          out_filter=filters["stdout"], err_filter=filters["stderr"])
    assert code == 0
    shown = {"stdout": out, "stderr": err}[stream]
    assert shown == {"stdout": b"before *** after\n", "stderr": b"err ***\n"}[stream]
    # the secret really arrived in more than one read
    assert len([chunk for chunk in filters[stream].fed if chunk]) >= 2


def test_each_stream_has_its_own_filter(devnull: IO[Any]) -> None:
    code, out, err = _run("exit", "3", stdin=devnull, out_filter=Upper())
    assert (code, out, err) == (3, b"SOME OUTPUT\n", b"some error\n")


class TailFilter:
    """Holds everything back until flush, as a masker does with an unfinished line."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        self.held += data
        return b""

    def flush(self) -> bytes:
        return self.held.replace(b"red", b"RED")


def test_filter_is_flushed_at_eof(devnull: IO[Any]) -> None:
    _, out, _ = _run("bytes", stdin=devnull, out_filter=TailFilter())
    assert out.endswith(b"\x1b[31mRED\x1b[0m no newline")


class ClosedReader(io.BytesIO):
    """An output whose reader went away after the first write (`guardctl get pods | head -1`)."""

    def write(self, data: Any) -> int:
        if self.tell():
            raise BrokenPipeError
        return super().write(data)


def test_a_reader_going_away_stops_kubectl_with_sigpipe(devnull: IO[Any]) -> None:
    out, err = ClosedReader(), io.BytesIO()
    code = run([sys.executable, FAKE, "flood"], dict(os.environ), stdout_filter=Identity(),
               stderr_filter=Identity(), stdin=devnull, use_pty=False, stdout=out, stderr=err)
    assert code == 128 + signal.SIGPIPE
    assert 0 < len(out.getvalue()) <= 65536


def test_output_a_grandchild_holds_open_does_not_hold_guardctl(devnull: IO[Any]) -> None:
    """kubectl exits while something it started keeps its stdout open (an exec plugin left
    running, say): guardctl shows what came, returns kubectl's code, and stops reading."""
    script = (
        "import subprocess, sys\n"
        "late = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(late.pid, file=sys.stderr, flush=True)\n"
        "print('kubectl done', flush=True)\n"
        "sys.exit(3)\n"
    )
    out, err = io.BytesIO(), io.BytesIO()
    try:
        code = run([sys.executable, "-c", script], dict(os.environ), stdout_filter=Identity(),
                   stderr_filter=Identity(), stdin=devnull, use_pty=False, stdout=out,
                   stderr=err)
    finally:
        os.kill(int(err.getvalue().split()[0]), signal.SIGKILL)
    assert (code, out.getvalue()) == (3, b"kubectl done\n")


@pytest.mark.parametrize("argv0", ["/nonexistent/kubectl", os.devnull])
def test_missing_kubectl_is_unsafe(argv0: str) -> None:
    with pytest.raises(UnsafeError, match="^kubectl not found") as info:
        run([argv0, "get", "pods"], {}, stdout_filter=Identity(), stderr_filter=Identity(),
            stdin=None, use_pty=False, stdout=io.BytesIO(), stderr=io.BytesIO())
    assert info.value.exit_status == 13


# --------------------------------------------------------------------------- signals to guardctl


def _harness(*args: str, new_session: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, HARNESS, "pipes", sys.executable, FAKE, *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO}, start_new_session=new_session,
    )


@pytest.mark.parametrize(
    ("deliver", "expected"),
    [
        # `kill <guardctl>`: only guardctl gets it, and passes it on
        (lambda p: p.send_signal(signal.SIGTERM), b"got SIGTERM\n"),
        # Ctrl-C: the terminal signals guardctl's whole process group; kubectl gets one
        (lambda p: os.killpg(p.pid, signal.SIGINT), b"got SIGINT\n"),
    ],
    ids=["sigterm", "ctrl-c"],
)
def test_signals_reach_kubectl_once_and_guardctl_waits(deliver: Any, expected: bytes) -> None:
    proc = _harness("wait-signal", new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        deliver(proc)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (7, expected, b"")


# --------------------------------------------------------------------------- pty mode


@pytest.fixture
def pty_child() -> Iterator[pexpect.spawn]:
    child = pexpect.spawn(sys.executable, [HARNESS, "pty", sys.executable, FAKE, "interactive"],
                          env={**os.environ, "PYTHONPATH": REPO}, dimensions=(24, 80),
                          timeout=TIMEOUT)
    yield child
    child.close(force=True)


def test_pty_echoes_a_line_through_the_filter(pty_child: pexpect.spawn) -> None:
    pty_child.expect_exact("size 24x80")
    pty_child.expect_exact("prompt> ")
    pty_child.sendline("hello there")
    pty_child.expect_exact("you said: HELLO there")
    pty_child.expect_exact("prompt> ")
    pty_child.sendline("quit")
    pty_child.expect_exact("terminal restored")
    pty_child.expect(pexpect.EOF)
    pty_child.close()
    assert pty_child.exitstatus == 0


def test_pty_forwards_window_resizes(pty_child: pexpect.spawn) -> None:
    pty_child.expect_exact("prompt> ")
    pty_child.setwinsize(30, 100)
    pty_child.expect_exact("resized 30x100")
    pty_child.sendline("quit")
    pty_child.expect(pexpect.EOF)
    pty_child.close()
    assert pty_child.exitstatus == 0


# --------------------------------------------------------------------------- finding kubectl


def _write_exe(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(0o755)
    return path


@pytest.fixture
def bins(tmp_path: Path) -> dict[str, Path]:
    guardctl = _write_exe(tmp_path / "venv" / "guardctl", "#!/usr/bin/env python\nimport x\n")
    link_dir = tmp_path / "link"
    link_dir.mkdir()
    (link_dir / "kubectl").symlink_to(guardctl)
    return {
        "real": _write_exe(tmp_path / "real" / "kubectl", "\x7fELF binary kubectl\n").parent,
        "shim": _write_exe(tmp_path / "shim" / "kubectl",
                           "#!/bin/sh\nexec guardctl kubectl \"$@\"\n").parent,
        "link": link_dir,
        "empty": tmp_path,
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (["real"], "real"),
        (["shim", "real"], "real"),
        (["link", "real"], "real"),
        (["empty", "real"], "real"),
        (["shim", "link"], None),
        ([], None),
    ],
)
def test_find_kubectl_skips_shims(bins: dict[str, Path], path: list[str],
                                  expected: str | None) -> None:
    env = Environment(environ={"PATH": ":".join(str(bins[p]) for p in path)})
    if expected is None:
        with pytest.raises(UnsafeError, match=f"^{NOT_FOUND}$"):
            find_kubectl(env)
    else:
        assert find_kubectl(env) == str(bins[expected] / "kubectl")


def test_a_kubectl_that_became_guardctl_since_the_last_lookup_is_not_run(
    bins: dict[str, Path], tmp_path: Path
) -> None:
    # a warm worker remembers what each program was; a program changed in place, or a link
    # pointed elsewhere, is looked at afresh
    env = Environment(environ={"PATH": f"{bins['real']}:{bins['shim']}"})
    assert find_kubectl(env) == str(bins["real"] / "kubectl")
    _write_exe(bins["real"] / "kubectl", "#!/bin/sh\nexec guardctl kubectl \"$@\"\n")
    with pytest.raises(UnsafeError, match=f"^{NOT_FOUND}$"):
        find_kubectl(env)
    real = _write_exe(tmp_path / "elsewhere" / "kubectl", "\x7fELF binary kubectl\n")
    link = bins["link"] / "kubectl"
    env = Environment(environ={"PATH": str(bins["link"])})
    with pytest.raises(UnsafeError, match=f"^{NOT_FOUND}$"):
        find_kubectl(env)
    link.unlink()
    link.symlink_to(real)
    assert find_kubectl(env) == str(link)
    link.unlink()
    link.symlink_to(tmp_path / "venv" / "guardctl")
    with pytest.raises(UnsafeError, match=f"^{NOT_FOUND}$"):
        find_kubectl(env)


def test_find_kubectl_ignores_relative_path_entries(bins: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(bins["real"])
    with pytest.raises(UnsafeError):
        find_kubectl(Environment(environ={"PATH": ".:"}))


@pytest.mark.parametrize(("name", "error"), [("real", None), ("shim", "is guardctl"),
                                             ("empty", "kubectl not found")])
def test_guardctl_kubectl_variable(bins: dict[str, Path], name: str, error: str | None) -> None:
    explicit = str(bins[name] / "kubectl")
    env = Environment(environ={"GUARDCTL_KUBECTL": explicit, "PATH": str(bins["real"])})
    if error is None:
        assert find_kubectl(env) == explicit
    else:
        with pytest.raises(UnsafeError, match=error):
            find_kubectl(env)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as devserver:
        yield devserver


def test_real_kubectl_with_a_minted_token(server: DevServer, tmp_path: Path,
                                          devnull: IO[Any]) -> None:
    env = Environment(environ={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)})
    token = server.issue_token("system:serviceaccount:guardctl:guardctl-agent", 600)
    ca = base64.b64encode(server.ca_pem).decode()
    with temp_kubeconfig(env, server.url, ca, token, "dev") as path:
        child_env = kubectl_env.environ(kubectl_env.prepare(tmp_path / "cache"), path, path.parent)
        kubectl = find_kubectl(env)
        out, err = io.BytesIO(), io.BytesIO()
        code = run([kubectl, "config", "view", "--raw", "-o",
                    "jsonpath={.users[0].user.token}"], child_env,
                   stdout_filter=harness.ReplaceFilter(token.encode(), b"***"),
                   stderr_filter=Identity(), stdin=devnull, use_pty=False, stdout=out, stderr=err)
        assert (code, out.getvalue(), err.getvalue()) == (0, b"***", b"")
        server.clear_requests()
        out = io.BytesIO()
        code = run([kubectl, "get", "pods", "-o", "name"], child_env, stdout_filter=Identity(),
                   stderr_filter=Identity(), stdin=devnull, use_pty=False, stdout=out, stderr=err)
    assert code == 0
    assert out.getvalue().startswith(b"pod/web-")
    assert {user for _, _, user in server.requests} == {
        "system:serviceaccount:guardctl:guardctl-agent"}


# --------------------------------------------------------------------------- the tie to kubectl


@pytest.fixture
def setpriv_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the lookup of setpriv at given paths, and forget what it found before."""
    def point(*paths: str) -> None:
        monkeypatch.setattr(lifeline, "SETPRIV", paths)
        lifeline.capable_setpriv.cache_clear()

    yield point
    lifeline.capable_setpriv.cache_clear()


def test_kubectl_starts_through_setpriv_where_it_sets_the_death_signal(setpriv_at: Any) -> None:
    setpriv_at("/usr/bin/setpriv", "/bin/setpriv")
    argv, tie = lifeline.tied(["/bin/echo", "hi"])
    assert argv[1:] == ["--pdeathsig", "KILL", "--", "/bin/echo", "hi"]
    assert tie is None  # no preexec_fn: Python may vfork
    assert subprocess.run(argv, capture_output=True, check=True).stdout == b"hi\n"


def test_a_setpriv_on_the_callers_path_is_never_used(
    setpriv_at: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an agent's own `setpriv` first on PATH would run instead of kubectl's tie
    planted = tmp_path / "setpriv"
    planted.write_text("#!/bin/sh\necho planted --pdeathsig\n")
    planted.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    setpriv_at(*lifeline.SETPRIV)
    argv, _ = lifeline.tied(["/bin/echo", "hi"])
    assert argv[0] in lifeline.SETPRIV and not argv[0].startswith(str(tmp_path))


def test_a_missing_program_is_an_oserror_through_setpriv_too(setpriv_at: Any) -> None:
    setpriv_at("/usr/bin/setpriv", "/bin/setpriv")
    with pytest.raises(FileNotFoundError):
        lifeline.tied(["/nonexistent/kubectl", "get"])


@pytest.mark.parametrize("setpriv", ["missing", "without --pdeathsig"])
def test_without_a_capable_setpriv_the_tie_is_made_in_the_child(
    setpriv_at: Any, tmp_path: Path, setpriv: str
) -> None:
    old = tmp_path / "setpriv"
    if setpriv != "missing":
        old.write_bytes(b"\x7fELF --reuid --regid --clear-groups")
        old.chmod(0o755)
    setpriv_at(str(old))
    argv, tie = lifeline.tied(["/bin/echo", "hi"])
    assert argv == ["/bin/echo", "hi"]
    assert tie is not None
