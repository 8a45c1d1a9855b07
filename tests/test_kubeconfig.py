"""Private kubeconfigs: permissions, content, removal on every exit path, stale sweep."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from guardctl.env import Environment
from guardctl.running.kubeconfig import (
    PREFIX,
    Gate,
    gated_kubeconfig,
    render,
    sweep_stale,
    temp_kubeconfig,
)

REPO = str(Path(__file__).resolve().parent.parent)
FAKE = str(Path(__file__).resolve().parent / "data" / "fake_kubectl.py")
TIMEOUT = 15


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    return folder


@pytest.fixture
def env(runtime: Path) -> Environment:
    return Environment(environ={"XDG_RUNTIME_DIR": str(runtime)})


def test_private_folder_and_file(env: Environment, runtime: Path) -> None:
    with temp_kubeconfig(env, "https://127.0.0.1:1", "Q0E=", "tok-123", "dev") as path:
        assert path.parent.parent == runtime
        assert path.parent.name.startswith(f"{PREFIX}{os.getpid()}-")
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        doc = yaml.safe_load(path.read_text())
    assert doc["users"] == [{"name": "guardctl", "user": {"token": "tok-123"}}]
    assert doc["clusters"] == [{"name": "guardctl", "cluster": {
        "server": "https://127.0.0.1:1", "certificate-authority-data": "Q0E="}}]
    assert doc["contexts"] == [{"name": "guardctl", "context": {
        "cluster": "guardctl", "user": "guardctl", "namespace": "dev"}}]
    assert doc["current-context"] == "guardctl"
    assert not path.parent.exists()


@pytest.mark.parametrize("left", ["kubeconfig.lock", "sub/deeper/file", "link"])
def test_removed_with_whatever_kubectl_left_in_it(env: Environment, tmp_path: Path,
                                                   left: str) -> None:
    outside = tmp_path / "outside"
    outside.write_text("not ours")
    with temp_kubeconfig(env, "https://x", "", "t", "") as path:
        extra = path.parent / left
        extra.parent.mkdir(parents=True, exist_ok=True)
        if left == "link":
            extra.symlink_to(outside)
        else:
            extra.write_text("x")
    assert not path.parent.exists()
    assert outside.read_text() == "not ours"


def test_removed_after_an_exception(env: Environment) -> None:
    with pytest.raises(RuntimeError), temp_kubeconfig(env, "https://x", "", "t", "") as path:
        raise RuntimeError("boom")
    assert not path.parent.exists()


@pytest.mark.parametrize("runtime_dir", ["", "/nonexistent/run", "relative/run"])
def test_falls_back_to_the_temp_dir(tmp_path: Path, runtime_dir: str) -> None:
    env = Environment(environ={"XDG_RUNTIME_DIR": runtime_dir, "TMPDIR": str(tmp_path)})
    with temp_kubeconfig(env, "https://x", "", "t", "") as path:
        assert path.parent.parent == tmp_path


@pytest.mark.parametrize("tmpdir", ["", "/nonexistent/tmp"])
def test_last_comes_slash_tmp(tmpdir: str) -> None:
    env = Environment(environ={"TMPDIR": tmpdir})
    with temp_kubeconfig(env, "https://x", "", "t", "") as path:
        assert path.parent.parent == Path("/tmp")
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


SCRIPTS = {
    # SIGTERM while guardctl works inside the block, before or after kubectl
    "idle": "import time; time.sleep(10)",
    # SIGTERM while kubectl runs: the runner forwards it and returns kubectl's code
    "running": (
        "import os, sys\n"
        "from guardctl.running.runner import run\n"
        "class Same:\n"
        "    def feed(self, b): return b\n"
        "    def flush(self): return b''\n"
        f"code = run([sys.executable, {FAKE!r}, 'wait-signal'], dict(os.environ),"
        " stdout_filter=Same(), stderr_filter=Same(), stdin=None, use_pty=False,"
        " stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)\n"
        "print('kubectl exited', code, flush=True)\n"
        "sys.exit(code)"
    ),
}


@pytest.mark.parametrize(("script", "ready", "exit_code", "tail"), [
    ("idle", b"", 128 + signal.SIGTERM, b""),
    ("running", b"ready\n", 7, b"got SIGTERM\nkubectl exited 7\n"),
])
def test_removed_after_sigterm(runtime: Path, script: str, ready: bytes, exit_code: int,
                               tail: bytes) -> None:
    code = (
        "import sys, time\n"
        "from guardctl.env import Environment\n"
        "from guardctl.running.kubeconfig import temp_kubeconfig\n"
        f"env = Environment(environ={{'XDG_RUNTIME_DIR': {str(runtime)!r}}})\n"
        "with temp_kubeconfig(env, 'https://x', '', 'tok', '') as path:\n"
        "    print(path, flush=True)\n"
        + "".join(f"    {line}\n" for line in SCRIPTS[script].splitlines())
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": REPO})
    try:
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().decode().strip())
        assert path.exists()
        if ready:  # kubectl has its handlers in place
            assert proc.stdout.readline() == ready
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, rest) == (exit_code, tail)
    assert not path.parent.exists()


def test_sweep_removes_only_folders_of_dead_processes(env: Environment, runtime: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        folders = {
            "dead": runtime / f"{PREFIX}{dead.pid}-abc",
            "alive": runtime / f"{PREFIX}{alive.pid}-abc",
            "mine": runtime / f"{PREFIX}{os.getpid()}-abc",
            "other": runtime / "unrelated-123-abc",
            "not-a-pid": runtime / f"{PREFIX}xyz-abc",
        }
        for folder in folders.values():
            folder.mkdir()
            (folder / "kubeconfig").write_text("token")
        (runtime / f"{PREFIX}{dead.pid}-file").write_text("a file, not ours to remove")
        assert sweep_stale(env) == [folders["dead"]]
    finally:
        alive.kill()
        alive.wait()
    assert sorted(p.name for p in runtime.iterdir()) == sorted(
        [f"{PREFIX}{dead.pid}-file", *(f.name for k, f in folders.items() if k != "dead")])


# ---------------------------------------------------------------- a kubeconfig kubectl waits for

DOCUMENT = render("https://127.0.0.1:1", "Q0E=", {"token": "tok-ahead"}, "dev")
# a reader as kubectl is one: it opens its kubeconfig twice, once the first read is done
TWO_READS = 'cat "$1" && echo && echo --- && cat "$1"'


def _reader(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", TWO_READS, "sh", str(path)], stdout=subprocess.PIPE,
                            start_new_session=True)


def _kill(reader: subprocess.Popen[bytes]) -> None:
    """The reader's whole session, as the runner kills kubectl's."""
    if reader.poll() is None:
        os.killpg(reader.pid, signal.SIGKILL)


def _read_twice(gate: Gate, document: dict[str, object], held: float = 0.0) -> list[object]:
    """What a reader started on `gate` reads in its two opens, `document` filled in once it
    was held `held` seconds (it must still be waiting then)."""
    reader = _reader(gate.path)
    try:
        if held:
            with pytest.raises(subprocess.TimeoutExpired):
                reader.wait(timeout=held)  # its open waits: nothing to read, nothing read
        gate.fill(document)
        out, _ = reader.communicate(timeout=TIMEOUT)
    finally:
        _kill(reader)
        reader.wait()
    return [json.loads(text) for text in out.decode().split("\n---\n")]


def test_a_gated_kubeconfig_holds_its_reader_until_it_is_filled(env: Environment) -> None:
    with gated_kubeconfig(env) as gate:
        assert stat.S_ISFIFO(gate.path.stat().st_mode)
        assert stat.S_IMODE(gate.path.stat().st_mode) == 0o600
        assert _read_twice(gate, DOCUMENT, held=0.5) == [DOCUMENT, DOCUMENT]
        # after the hand-over, the path is the file itself, not the FIFO
        assert not stat.S_ISFIFO(gate.path.stat().st_mode)
        assert json.loads(gate.path.read_text()) == DOCUMENT
        folder = gate.path.parent
    assert not folder.exists()


# a CA bundle of many certificates makes a kubeconfig larger than a pipe holds (64 KiB)
LARGE = render("https://127.0.0.1:1", "Q0E=" * 60_000, {"token": "tok-ahead"}, "dev")


@pytest.mark.parametrize("document", [DOCUMENT, LARGE], ids=["small", "larger-than-a-pipe"])
def test_a_gate_filled_for_a_kubectl_that_never_opened_it_closes(
    env: Environment, document: dict[str, object]
) -> None:
    # `kubectl version --client` reads no kubeconfig: the writer waiting for it is let go
    with gated_kubeconfig(env) as gate:
        gate.fill(document)
        folder = gate.path.parent
    assert gate._writer is not None and not gate._writer.is_alive()
    assert not folder.exists()


def test_a_gate_hands_a_kubeconfig_larger_than_a_pipe_over_whole(env: Environment) -> None:
    with gated_kubeconfig(env) as gate:
        assert _read_twice(gate, LARGE) == [LARGE, LARGE]


def test_a_gate_never_filled_gives_its_reader_nothing(env: Environment) -> None:
    # a run that stops before its kubeconfig (a record that could not be written) kills the
    # kubectl waiting on it: it read nothing, and nothing of the gate is left
    with gated_kubeconfig(env) as gate:
        reader = _reader(gate.path)
        with pytest.raises(subprocess.TimeoutExpired):
            reader.wait(timeout=0.3)
        _kill(reader)
        out, _ = reader.communicate(timeout=TIMEOUT)
        folder = gate.path.parent
    assert out == b""
    assert not folder.exists()


def test_a_gate_left_by_a_killed_run_is_swept(env: Environment, runtime: Path) -> None:
    code = (
        "import os, sys\n"
        "from guardctl.env import Environment\n"
        "from guardctl.running.kubeconfig import gated_kubeconfig\n"
        f"with gated_kubeconfig(Environment(environ={{'XDG_RUNTIME_DIR': {str(runtime)!r}}})):\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=TIMEOUT)
    left = list(runtime.iterdir())
    assert len(left) == 1 and stat.S_ISFIFO((left[0] / "kubeconfig").stat().st_mode)
    assert sweep_stale(env) == left
    assert list(runtime.iterdir()) == []
