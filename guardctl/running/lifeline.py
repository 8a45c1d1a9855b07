"""Children that die with the process that started them.

guardctl forwards signals to kubectl and waits for it, but a process killed outright
(SIGKILL: an agent's timeout, the OOM killer) runs no code at all. Linux can still end the
child: `prctl(PR_SET_PDEATHSIG, SIGKILL)`, set in the child between fork and exec, kills it
when the thread that forked it ends. So a kubectl never outlives the guardctl (or the
broker's or fork server's worker) that runs it, and never goes on with a credential nobody
watches.

A `preexec_fn` makes Python fork the whole process rather than vfork it, which costs a large
process (a broker's worker) 3-8 ms a run. Where util-linux's `setpriv` can set the signal,
`tied` starts the child through it instead: `setpriv --pdeathsig KILL -- ARGV` sets it and
execs ARGV, and Python may vfork. The check that the parent had not died before the tie was
made is lost then; that parent is a broker's worker, which an agent cannot signal, or a
guardctl of the agent's own, which it could end as well as its kubectl.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable, Sequence
from functools import cache

PR_SET_PDEATHSIG = 1
# where setpriv is looked for (system folders only, never the caller's PATH)
SETPRIV = ("/usr/bin/setpriv", "/bin/setpriv")
MAX_SETPRIV = 4 * 1024 * 1024


@cache
def _prctl() -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return function


def die_with_this_process() -> Callable[[], None] | None:
    """A `preexec_fn` that ties the child's life to this process, or None where it cannot.

    Only from the main thread: the signal comes when the forking *thread* ends, and a
    thread that ends before its child would kill a child that should live on.
    """
    prctl = _prctl()
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the tie was made
            os._exit(128 + signal.SIGKILL)

    return tie


@cache
def capable_setpriv() -> str | None:
    """util-linux's setpriv when it knows --pdeathsig (2.33 and later; RHEL 8's does not),
    else None. Its option table holds the name: reading the small program costs less than
    running it."""
    for path in SETPRIV:
        try:
            with open(path, "rb") as program:
                found = b"pdeathsig" in program.read(MAX_SETPRIV)
        except OSError:
            continue
        return path if found and os.access(path, os.X_OK) else None
    return None


def tied(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) that start `argv` tied to this process (see the module docstring):
    through setpriv where it serves, else with `die_with_this_process`. A path in `argv[0]`
    is checked here, so that a missing program is still an OSError of Popen's kind."""
    tie = die_with_this_process()
    setpriv = capable_setpriv() if tie is not None and "/" in argv[0] else None
    if setpriv is None:
        return list(argv), tie
    if not os.access(argv[0], os.X_OK):
        raise FileNotFoundError(2, "No such file or directory", argv[0])
    return [setpriv, "--pdeathsig", "KILL", "--", *argv], None
