"""Advisory file locks (`flock`) that order guardctl processes around shared state.

Used where concurrent guardctl processes would otherwise race: the audit log, appended to
by every command; the keyring file of a file-backed keyring, which its backend rewrites
whole on every write (read-modify-write with no lock of its own); and the minting of a
token, which one process does while the others wait and then reuse its token. A lock is
waited for a bounded time, polled, so a stuck holder turns into one clear error, never a
hang; the kernel drops it when its holder ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from guardctl.errors import UnsafeError

# polling interval while a lock is held elsewhere: short at first, at most this long
FIRST_POLL_SECONDS = 0.005
MAX_POLL_SECONDS = 0.1


def _open(path: Path) -> int:
    """The lock file's descriptor; created 0600, never through a symlink, never a non-file."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeError(f"{path} is not a regular file: remove it (guardctl keeps a lock "
                          "file there)")
    return fd


def acquire(
    fd: int, operation: int, wait: float, *, first_poll: float = FIRST_POLL_SECONDS,
    max_poll: float = MAX_POLL_SECONDS, clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Take the lock on `fd` (`fcntl.LOCK_EX` or `LOCK_SH`), polling for at most `wait`
    seconds of `clock`, the pause doubling from `first_poll` up to `max_poll`; False when it
    is still held elsewhere."""
    deadline = clock() + wait
    pause = first_poll
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if clock() >= deadline:
                return False
        time.sleep(pause)
        pause = min(pause * 2, max_poll)


@contextmanager
def hold(path: Path, *, exclusive: bool, wait: float, busy: str) -> Iterator[None]:
    """Hold the lock at `path` (exclusive or shared) for the `with` block.

    Raises UnsafeError: with `busy` when another process holds the lock past `wait`
    seconds, naming the path when the lock file cannot be opened.
    """
    try:
        fd = _open(path)
    except OSError as err:
        raise UnsafeError(f"cannot open the lock file {path} ({err.strerror}): make its folder "
                          "yours and writable") from err
    try:
        if not acquire(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, wait):
            raise UnsafeError(busy)
        yield
    finally:
        os.close(fd)  # closing drops the lock
