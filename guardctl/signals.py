"""Signal handlers shared by the runner, the temp kubeconfig's cleanup, the approval wait and
the broker's workers: temporary ones, a signal that unwinds, a deadline."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from guardctl.errors import DeadlineExceeded

Handler = Callable[[int, "FrameType | None"], Any]


def exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    """A handler that ends the process as a SystemExit (128 + the signal's number, the shell's
    convention), so `finally` blocks run: Python's default for SIGTERM and SIGHUP kills
    without unwinding, leaving temp files, queued requests and records behind."""
    raise SystemExit(128 + signum)


@contextmanager
def signal_handlers(handlers: Mapping[int, Handler]) -> Iterator[None]:
    """Install signal handlers for the block, restoring the previous ones after it.

    Outside the main thread Python cannot install handlers; the block then runs without.
    """
    previous: dict[int, Any] = {}
    try:
        for signum, handler in handlers.items():
            previous[signum] = signal.signal(signum, handler)
    except ValueError:
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise DeadlineExceeded in the block after `seconds` of wall time.

    Uses SIGALRM, so it bounds pure-Python loops too. It nests: a timer already running
    (an outer deadline, a test runner's timeout) is saved and re-armed afterwards with the
    time it had left; when that timer would fire first, it is left alone to do so. Outside
    the main thread Python cannot handle signals, and the block runs unbounded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer_left, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if outer_left and outer_left <= seconds:
        yield  # the outer timer fires first
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise DeadlineExceeded

    started = time.monotonic()
    try:
        with signal_handlers({signal.SIGALRM: expire}):
            # re-armed every tenth of the time, in case one expiry is swallowed all the same
            signal.setitimer(signal.ITIMER_REAL, seconds, seconds / 10)
            try:
                yield
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        if outer_left:
            left = max(outer_left - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)
