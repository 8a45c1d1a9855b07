"""Outside control of fork servers: which pid serves a socket, stop one or all, wait for one.

Kept apart from `forkserver` so that what stops servers (the demo, tests, benchmarks) does
not import what runs them.
"""

import fcntl
import os
import signal
import socket


def server_pid(path: str) -> int | None:
    """The pid of the server listening at `path`, from its lock file; None if none runs."""
    try:
        with open(path + ".lock", "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free: nobody holds it
    except FileNotFoundError:
        return None
    except OSError:
        with open(path + ".lock", "rb") as lock:
            text = lock.read().strip()
        return int(text) if text.isdigit() else None
    return None


def stop(path: str, timeout: float = 5.0) -> bool:
    """Stop the server at `path` (SIGTERM) and wait until its socket is gone."""
    import time

    pid = server_pid(path)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not os.path.exists(path)


def stop_all(runtime_dir: str | os.PathLike[str]) -> None:
    """Stop every fork server whose socket is under `runtime_dir` (an XDG_RUNTIME_DIR that
    is about to be removed: the demo's, a test run's)."""
    folder = os.path.join(runtime_dir, "guardctl")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith("fork-") and name.endswith(".sock"):
            stop(os.path.join(folder, name))


def wait_ready(path: str, timeout: float = 10.0) -> bool:
    """Wait until a server accepts connections at `path` (bounded by `timeout`)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                time.sleep(0.02)
            else:
                return True
    return False
