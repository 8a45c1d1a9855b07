"""Private, short-lived kubeconfig files for one kubectl run.

Each lives in its own 0700 folder named `guardctl-kubeconfig-<pid>-<random>` under
`$XDG_RUNTIME_DIR` (a per-user tmpfs on most desktops) or the system temp folder. The
folder goes away when the `with` block ends, however it ends; a process killed outright
(SIGKILL, power loss) leaves one behind, and `sweep_stale` removes it on the next run
because its pid is no longer alive.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from guardctl.env import Environment
from guardctl.signals import Handler, signal_handlers

PREFIX = "guardctl-kubeconfig-"
FILENAME = "kubeconfig"
# the names inside the file; the agent sees them in `kubectl config view`
NAME = "guardctl"
# signals whose default action would kill guardctl without running `finally` blocks
_FATAL_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# folders looked at per sweep, so a temp dir full of junk cannot stall a run
MAX_SWEEP_ENTRIES = 10_000


def _base_dirs(env: Environment) -> list[Path]:
    """Where private folders go, preferred first: $XDG_RUNTIME_DIR if usable, then the temp dir."""
    runtime = env.environ.get("XDG_RUNTIME_DIR", "")
    bases = [Path(runtime)] if runtime and os.access(runtime, os.W_OK | os.X_OK) else []
    return [*bases, Path(tempfile.gettempdir())]


def render(server: str, ca_data: str, user: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """A kubeconfig document with one cluster, one user and one context."""
    cluster: dict[str, str] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    context = {"cluster": NAME, "user": NAME, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": NAME, "cluster": cluster}],
        "users": [{"name": NAME, "user": dict(user)}],
        "contexts": [{"name": NAME, "context": context}],
        "current-context": NAME,
    }


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def _fatal_signals_exit() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit while the block runs, so `finally` clauses run.

    Only signals still at their default action are changed (the runner installs its own
    forwarding handlers while kubectl runs), and only in the main thread, the one place
    Python lets us install handlers.
    """
    at_default: dict[int, Handler] = {
        s: _raise_exit for s in _FATAL_SIGNALS if signal.getsignal(s) is signal.SIG_DFL
    }
    with signal_handlers(at_default):
        yield


@contextmanager
def private_kubeconfig(
    env: Environment, server: str, ca_data: str, user: Mapping[str, Any], namespace: str
) -> Iterator[Path]:
    """A 0600 kubeconfig holding `user` (a kubeconfig user stanza) in a fresh 0700 folder."""
    with _fatal_signals_exit():
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=_base_dirs(env)[0]))
        try:
            path = folder / FILENAME
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                yaml.safe_dump(render(server, ca_data, user, namespace), handle, sort_keys=False)
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def temp_kubeconfig(
    env: Environment, server: str, ca_data: str, token: str, namespace: str
) -> Iterator[Path]:
    """A private kubeconfig that holds only `token`, removed when the block ends.

    >>> with temp_kubeconfig(env, url, ca, token.value, "dev") as path:   # doctest: +SKIP
    ...     runner.run([kubectl, "get", "pods"], child_environ(env.environ, path), ...)
    """
    with private_kubeconfig(env, server, ca_data, {"token": token}, namespace) as path:
        yield path


def child_environ(environ: Mapping[str, str], kubeconfig: Path) -> dict[str, str]:
    """kubectl's environment: ours, with KUBECONFIG naming only the private file."""
    return {**environ, "KUBECONFIG": str(kubeconfig)}


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
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    return removed


def _scan(base: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(base) as entries:
        for count, entry in enumerate(entries):
            if count >= MAX_SWEEP_ENTRIES:
                return
            yield entry
