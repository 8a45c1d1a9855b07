"""Private, short-lived kubeconfig files for one kubectl run.

Each lives in its own 0700 folder named `guardctl-kubeconfig-<pid>-<random>` under
`$XDG_RUNTIME_DIR` (a per-user tmpfs on most desktops), else `$TMPDIR`, else /tmp. The
folder goes away when the `with` block ends, however it ends; a process killed outright
(SIGKILL, power loss) leaves one behind, and `sweep_stale` removes it on the next run
because its pid is no longer alive.

The token itself is never on disk where Linux allows: the file in the folder is a link to
a memory-only file (memfd) that this process holds open, `/proc/<pid>/fd/<n>`. kubectl
opens its kubeconfig many times per command, and each open of that link starts the file
afresh; when the process ends, however it ends, the memory goes with it and the link
points nowhere. Where there is no memfd or no /proc (a sandbox without one), the folder
holds a regular 0600 file, as before.

The file is written as JSON, which kubectl reads as the YAML subset it is (no YAML emitter
on the run path).

A `Gate` is a kubeconfig kubectl can be started with before guardctl has written the run's
record and minted its token: a FIFO that holds kubectl's first open until it is filled.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from guardctl.atomic import write_all
from guardctl.env import Environment
from guardctl.signals import Handler, exit_on_signal, signal_handlers

PREFIX = "guardctl-kubeconfig-"
FILENAME = "kubeconfig"
# the names inside the file; the agent sees them in `kubectl config view`
NAME = "guardctl"
# signals whose default action would kill guardctl without running `finally` blocks
_FATAL_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# folders looked at per sweep, so a temp dir full of junk cannot stall a run
MAX_SWEEP_ENTRIES = 10_000
FALLBACK_TEMP_DIR = "/tmp"
# how long closing a Gate waits for its writer once it let it go (it has a few KiB to write)
_WRITER_SECONDS = 5.0
_DRAIN_CHUNK = 65536


def _base_dirs(env: Environment) -> list[Path]:
    """Where private folders go, preferred first: $XDG_RUNTIME_DIR, then $TMPDIR (each if it is
    an absolute path we may write to), then /tmp. (Not `tempfile`: importing it costs more
    than choosing a folder.)"""
    named = (env.environ.get(name, "") for name in ("XDG_RUNTIME_DIR", "TMPDIR"))
    usable = [Path(d) for d in named if os.path.isabs(d) and os.access(d, os.W_OK | os.X_OK)]
    return [*usable, Path(FALLBACK_TEMP_DIR)]


def _private_folder(base: Path) -> Path:
    """A new 0700 folder `guardctl-kubeconfig-<pid>-<random>` in `base` (as tempfile.mkdtemp
    makes it: an existing name, planted or not, is an error, never reused)."""
    folder = base / f"{PREFIX}{os.getpid()}-{os.urandom(8).hex()}"
    folder.mkdir(mode=0o700)
    return folder


def render(
    server: str, ca_data: str, user: Mapping[str, Any], namespace: str, name: str = NAME
) -> dict[str, Any]:
    """A kubeconfig document with one cluster, one user and one context, all called `name`
    (a managed context's own name when kubectl's `--context` chose it)."""
    cluster: dict[str, str] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    context = {"cluster": name, "user": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }


@contextmanager
def _fatal_signals_exit() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit while the block runs, so `finally` clauses run.

    Only signals still at their default action are changed (the runner installs its own
    forwarding handlers while kubectl runs), and only in the main thread, the one place
    Python lets us install handlers.
    """
    at_default: dict[int, Handler] = {
        s: exit_on_signal for s in _FATAL_SIGNALS if signal.getsignal(s) is signal.SIG_DFL
    }
    with signal_handlers(at_default):
        yield


@contextmanager
def private_kubeconfig(
    env: Environment, server: str, ca_data: str, user: Mapping[str, Any], namespace: str,
    name: str = NAME,
) -> Iterator[Path]:
    """A 0600 kubeconfig holding `user` (a kubeconfig user stanza) in a fresh 0700 folder."""
    text = _text(render(server, ca_data, user, namespace, name))
    with _run_folder(env) as folder:
        path = folder / FILENAME
        memory = _place(path, text)
        try:
            yield path
        finally:
            if memory >= 0:
                os.close(memory)


@contextmanager
def _run_folder(env: Environment) -> Iterator[Path]:
    """A fresh 0700 folder for one run's kubeconfig, removed however the block ends (SIGTERM
    and SIGHUP included)."""
    with _fatal_signals_exit():
        folder = _private_folder(_base_dirs(env)[0])
        try:
            yield folder
        finally:
            _remove(folder)


def _text(document: Mapping[str, Any]) -> bytes:
    # compact: only then does json use its C encoder (an indent takes the Python one)
    return json.dumps(document).encode()


def _place(path: Path, text: bytes) -> int:
    """Put `text` at `path`: a link to a memory-only file, whose fd is returned (the caller
    closes it when the run ends), else a 0600 regular file (-1)."""
    memory = _memory_file(text)
    if memory >= 0:
        os.symlink(_fd_path(memory), path)
        return memory
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text)
    return -1


class Gate:
    """A kubeconfig kubectl is started with before its content exists, so that kubectl's own
    start-up (most of its time before it reaches the cluster) overlaps guardctl's records.

    At first `path` is a FIFO: kubectl's open of it waits until `fill`, so kubectl cannot
    reach a cluster before guardctl has decided, recorded and minted (kubectl's environment
    and flags name no other server: `invoke` starts only such commands this way). `fill`
    hands the text over through the FIFO once kubectl opens it, and in the same moment puts
    the file itself (`_place`) at `path`, for kubectl's later opens. `close` lets go of a
    kubectl that never opened it (a command that needs no cluster, or one that was killed).
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / FILENAME
        os.mkfifo(self.path, 0o600)
        self._memory = -1
        self._writer: threading.Thread | None = None

    def fill(self, document: Mapping[str, Any]) -> None:
        """Hand `document` (`render`) to kubectl; returns at once, a thread waits for it."""
        text = _text(document)
        staged = self.path.with_name(f".{FILENAME}.next")
        self._memory = _place(staged, text)
        self._writer = threading.Thread(target=self._hand_over, args=(staged, text),
                                        daemon=True)
        self._writer.start()

    def _hand_over(self, staged: Path, text: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)  # waits for kubectl's open
        except OSError:
            return
        try:
            os.replace(staged, self.path)  # every later open gets the file itself
        except OSError:
            pass  # not in a folder of our own: this open still gets the text
        try:
            write_all(fd, text)
        except OSError:
            pass  # kubectl went away mid-read (EPIPE): it says so itself, or it was killed
        finally:
            os.close(fd)

    def close(self) -> None:
        """Once kubectl is gone: let the writer go, and the memory file."""
        writer = self._writer
        if writer is not None and writer.is_alive():
            self._release(writer)
        if self._memory >= 0:
            os.close(self._memory)
            self._memory = -1

    def _release(self, writer: threading.Thread) -> None:
        """A reader of our own lets a writer that waits for kubectl's open go, and takes what
        it writes (a kubeconfig can be larger than a pipe holds)."""
        try:
            reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            writer.join(timeout=_WRITER_SECONDS)
            return
        try:
            deadline = time.monotonic() + _WRITER_SECONDS
            while writer.is_alive() and time.monotonic() < deadline:
                with suppress(BlockingIOError):
                    os.read(reader, _DRAIN_CHUNK)
                writer.join(timeout=0.01)
        finally:
            os.close(reader)


@contextmanager
def gated_kubeconfig(env: Environment) -> Iterator[Gate]:
    """A `Gate` in a fresh 0700 folder, removed with the folder when the block ends."""
    with _run_folder(env) as folder:
        gate = Gate(folder)
        try:
            yield gate
        finally:
            gate.close()


def _fd_path(fd: int) -> str:
    """The name under which other processes of this user open this process's `fd` afresh."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def _memory_file(text: bytes) -> int:
    """A 0600 memory-only file holding `text` (closed on exec), or -1 where there is no memfd
    or its /proc name cannot be opened."""
    try:
        fd = os.memfd_create(NAME, os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return -1
    try:
        os.fchmod(fd, 0o600)
        write_all(fd, text)
        os.close(os.open(_fd_path(fd), os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        os.close(fd)
        return -1
    return fd


@contextmanager
def temp_kubeconfig(
    env: Environment, server: str, ca_data: str, token: str, namespace: str, name: str = NAME
) -> Iterator[Path]:
    """A private kubeconfig that holds only `token`, removed when the block ends.

    >>> with temp_kubeconfig(env, url, ca, token.value, "dev") as path:   # doctest: +SKIP
    ...     runner.run([kubectl, "get", "pods"], kubectl_env.environ(home, path, tmp), ...)
    """
    with private_kubeconfig(env, server, ca_data, {"token": token}, namespace, name) as path:
        yield path


def _remove(folder: Path) -> None:
    """Remove a private folder, however much of it is left. It holds the kubeconfig and at
    most a lock file kubectl puts beside it; anything else (a folder inside) goes through
    shutil.rmtree, whose import (it probes for bz2 and lzma) a run need not pay."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                os.unlink(entry.path)  # a symlink itself, never its target
        os.rmdir(folder)
    except OSError:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _owner_pid(entry: os.DirEntry[str]) -> int | None:
    """The pid in a folder name `guardctl-kubeconfig-<pid>-<random>`, if it is one of ours."""
    if not entry.name.startswith(PREFIX):
        return None
    pid_text = entry.name[len(PREFIX) :].partition("-")[0]
    if not pid_text.isdigit():
        return None
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:  # removed while we looked
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return None
    return int(pid_text)


def sweep_stale(env: Environment) -> list[Path]:
    """Remove private folders whose guardctl process is gone; returns what was removed."""
    removed: list[Path] = []
    for base in dict.fromkeys(_base_dirs(env)):
        try:
            entries = list(_scan(base))
        except OSError:
            continue
        for entry in entries:
            pid = _owner_pid(entry)
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                _remove(Path(entry.path))
                removed.append(Path(entry.path))
    return removed


def _scan(base: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(base) as entries:
        for count, entry in enumerate(entries):
            if count >= MAX_SWEEP_ENTRIES:
                return
            yield entry
