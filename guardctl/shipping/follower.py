"""The broker's shipper: a process of its own that ships as records are written.

`guardctl broker serve` starts it before it listens, and it runs beside the server: the
server pokes it over a pipe each time a worker ends (a request's records are written by
then, and the client has its answer: shipping never delays one), and it ships every
sink's pending records (`shipper.ship_pending`). A sink that fails is tried again after a
pause that doubles from FIRST_PAUSE up to MAX_PAUSE; with no poke it looks every
IDLE_SECONDS anyway (records written by the broker's account's own commands).

Why a process and not a thread of the server: the server forks a worker per request, and a
fork copies a thread's locks in whatever state they are (an HTTP client's, the
OpenTelemetry SDK's) without the thread that would release them. The shipper imports the
sinks' libraries in its own memory, never in the server's. It ends when the server does
(the pipe's end closes); Ctrl-C at the broker's terminal stops the server, not it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NamedTuple

from guardctl.errors import UsageError
from guardctl.shipping import shipper
from guardctl.shipping.base import Sink

FIRST_PAUSE = 1.0
MAX_PAUSE = 60.0
IDLE_SECONDS = 30.0
# how long the server waits for the shipper to make its sinks, and for it to end
START_SECONDS = 60.0
STOP_SECONDS = 5.0


class Follower(NamedTuple):
    pid: int
    wake_fd: int  # the server's end of the pipe; closing it ends the shipper
    sinks: tuple[str, ...]

    def wake(self) -> None:
        """Say that records were written (never blocks: a full pipe has a poke already)."""
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b".")

    def stop(self) -> None:
        """Close the pipe and wait for the shipper to end (it finishes a batch under way, up
        to STOP_SECONDS; then it is killed: what it was sending goes again next time)."""
        os.close(self.wake_fd)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def start(state_dir: Path, config: Path, cache_dir: Path, journal: IO[str]) -> Follower | None:
    """Fork the shipper for the sinks `config` names (None: it names none). UsageError, with
    the shipper ended, when a sink's settings are wrong."""
    names = tuple(shipper.sink_settings(config, cache_dir))
    if not names:
        return None
    wake_read, wake_write = os.pipe2(os.O_CLOEXEC)
    ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
    journal.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(wake_write)
            os.close(ready_read)
            _child(state_dir, config, cache_dir, wake_read, ready_write)
        finally:
            os._exit(0)
    os.close(wake_read)
    os.close(ready_write)
    answer = _read_to_end(ready_read)
    if answer != b"ok":
        os.close(wake_write)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise UsageError(answer.decode("utf-8", "replace") or "the shipper did not start")
    os.set_blocking(wake_write, False)
    return Follower(pid, wake_write, names)


def _read_to_end(fd: int) -> bytes:
    data = b""
    deadline = time.monotonic() + START_SECONDS
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return data


def _close_inherited(keep: Sequence[int]) -> None:
    """Close what the server had open (its sockets, the socket's lock): the shipper needs
    none of it, and must not keep a listening socket alive."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _child(state_dir: Path, config: Path, cache_dir: Path, wake: int, ready: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _close_inherited((wake, ready))
    try:
        sinks = shipper.open_sinks(config, cache_dir)
    except Exception as err:  # noqa: BLE001 - said to the server, which stops with it
        os.write(ready, str(err).encode("utf-8", "replace"))
        return
    os.write(ready, b"ok")
    os.close(ready)
    try:
        follow(state_dir, sinks, wake)
    finally:
        shipper.close_all(sinks)


def follow(state_dir: Path, sinks: Sequence[Sink], wake: int) -> None:
    """Ship on each poke, retry failed sinks with a doubling pause; return when `wake`
    closes."""
    due = {sink.name: 0.0 for sink in sinks}
    pause = {sink.name: FIRST_PAUSE for sink in sinks}
    while True:
        for sink in sinks:
            if time.monotonic() >= due[sink.name]:
                _ship(state_dir, sink, due, pause)
        now = time.monotonic()
        waiting = [when - now for when in due.values() if when > now]
        ready, _, _ = select.select([wake], [], [], min([IDLE_SECONDS, *waiting]))
        if ready and not os.read(wake, 4096):
            return


def _ship(state_dir: Path, sink: Sink, due: dict[str, float], pause: dict[str, float]) -> None:
    try:
        outcome = shipper.ship_pending(state_dir, sink)
    except Exception as exc:  # noqa: BLE001 - the state folder's trouble; doctor says it
        outcome = shipper.Outcome(sink.name, 0, f"{type(exc).__name__}: {exc}")
    if outcome.error is None:
        if pause[sink.name] > FIRST_PAUSE:
            _say(f"{sink.name}: shipping again ({shipper.describe(outcome)})")
        due[sink.name], pause[sink.name] = 0.0, FIRST_PAUSE
        return
    if pause[sink.name] == FIRST_PAUSE:  # said once per outage, not on every retry
        _say(f"{shipper.describe(outcome)}; retrying, at most every {MAX_PAUSE:g} s")
    due[sink.name] = time.monotonic() + pause[sink.name]
    pause[sink.name] = min(pause[sink.name] * 2, MAX_PAUSE)


def _say(line: str) -> None:
    """One line on the broker's stderr (its terminal, or systemd's journal)."""
    with contextlib.suppress(OSError):
        os.write(2, f"guardctl broker: {line}\n".encode("utf-8", "replace"))
