"""Children that die with the process that started them.

guardctl forwards signals to kubectl and waits for it, but a process killed outright
(SIGKILL: an agent's timeout, the OOM killer) runs no code at all. Linux can still end the
child: `prctl(PR_SET_PDEATHSIG, SIGKILL)`, set in the child between fork and exec, kills it
when the thread that forked it ends. So a kubectl never outlives the guardctl (or the
broker's or fork server's worker) that runs it, and never goes on with a credential nobody
watches.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable
from functools import cache

PR_SET_PDEATHSIG = 1


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
