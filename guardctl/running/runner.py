"""Run the real kubectl: pipes when guardctl has no terminal, a pty when it has one.

Every byte kubectl prints passes through a filter (the masker) before guardctl writes it;
raw child output never leaves this module. The exit code is kubectl's own, or 128+N when
a signal N killed it, as a shell would report.

Signals: SIGTERM and SIGHUP sent to guardctl are forwarded to kubectl, and guardctl waits
for it (SIGKILL after a grace period) so it never dies first and leaves a child or a
credential file behind. A guardctl killed outright takes kubectl with it (`lifeline`).
SIGINT needs care, because Ctrl-C reaches the whole foreground process group:

* pipes mode, stdin not a terminal (the agent case): kubectl runs in its own session, so
  only guardctl gets the terminal's SIGINT and forwards exactly one.
* pipes mode, stdin a terminal: kubectl stays in guardctl's group so it may read the
  terminal; the terminal already delivered SIGINT to it, so guardctl does not forward.
* pty mode: the terminal is raw, so Ctrl-C is a byte kubectl's own pty turns into its
  SIGINT; a SIGINT guardctl receives came from `kill` and is forwarded.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol

from guardctl.atomic import write_all
from guardctl.env import Environment
from guardctl.errors import UnsafeError
from guardctl.firewall.kept import Kept
from guardctl.running.lifeline import die_with_this_process, tied
from guardctl.signals import Handler, signal_handlers
from guardctl.status import exit_for_child

if TYPE_CHECKING:
    import pexpect

NOT_FOUND = "kubectl not found: install kubectl or set GUARDCTL_KUBECTL"
CHUNK = 65536
# the longest a wait goes without checking the signal-forwarding and drain deadlines
POLL_SECONDS = 0.1
# where the kernel has no pidfd: how often a child whose output is closed is asked if it exited
EXIT_POLL_SECONDS = 0.001
# after kubectl exits, how long to keep reading output a grandchild may still hold open
DRAIN_SECONDS = 2.0
# after a forwarded SIGINT/SIGTERM/SIGHUP, how long kubectl gets before SIGKILL
KILL_GRACE_SECONDS = 10.0
# how much of a candidate kubectl is read to recognise a guardctl shim script
SHIM_SNIFF_BYTES = 4096
FALLBACK_WINSIZE = (24, 80)


class Filter(Protocol):
    """A stateful stream transform: `feed` returns what may be shown now, `flush` the rest.
    Either may raise StopOutput: nothing more is shown, and kubectl is stopped."""

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class StopOutput(Exception):
    """Raised by a filter that can pass nothing more on (its record cannot be written)."""


# --------------------------------------------------------------------------- finding kubectl


def is_shim(path: Path) -> bool:
    """True for guardctl installed as `kubectl`: a link to guardctl, or a script naming it.

    Unreadable files count as shims: guardctl could not tell, and must not run itself.
    """
    real = path.resolve()
    if real.name.startswith("guardctl"):
        return True
    try:
        with real.open("rb") as handle:
            head = handle.read(SHIM_SNIFF_BYTES)
    except OSError:
        return True
    return b"guardctl" in head.lower()


# is_shim's answers in this process, by what the program is (`_identity`): a warm server's
# workers stat the program instead of resolving its links and reading it on every run
_SHIM_ANSWERS: Kept[tuple[int, ...], bool] = Kept(64)


def _identity(path: str) -> tuple[int, ...] | None:
    """The link and the file it leads to, as stat tells them (None: no regular file)."""
    try:
        link, target = os.lstat(path), os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(target.st_mode):
        return None
    return (link.st_dev, link.st_ino, link.st_mtime_ns, target.st_dev, target.st_ino,
            target.st_mtime_ns, target.st_ctime_ns, target.st_size)


def _shim(path: str) -> bool | None:
    """Whether the program at `path` is guardctl itself (`is_shim`); None when no executable
    regular file is there."""
    identity = _identity(path)
    if identity is None or not os.access(path, os.X_OK):
        return None
    shim = _SHIM_ANSWERS.get(identity)
    return shim if shim is not None else _SHIM_ANSWERS.keep(identity, is_shim(Path(path)))


def find_kubectl(env: Environment) -> str:
    """`GUARDCTL_KUBECTL`, else the first `kubectl` on PATH that is not a guardctl shim."""
    explicit = env.environ.get("GUARDCTL_KUBECTL")
    if explicit:
        path = os.path.expanduser(explicit)
        shim = _shim(path)
        if shim is None:
            raise UnsafeError(NOT_FOUND)
        if shim:
            raise UnsafeError(f"GUARDCTL_KUBECTL={explicit} is guardctl: set it to kubectl itself")
        return path
    for folder in env.environ.get("PATH", os.defpath).split(os.pathsep):
        # a relative PATH entry would let the working directory pick "kubectl"
        if os.path.isabs(folder) and _shim(candidate := os.path.join(folder, "kubectl")) is False:
            return candidate
    raise UnsafeError(NOT_FOUND)


# --------------------------------------------------------------------------- signals


class _Forwarder:
    """Passes signals on to the child; remembers when the first arrived, to bound the wait."""

    def __init__(self, forwarded: Sequence[int], observed: Sequence[int] = ()) -> None:
        self._forwarded = set(forwarded)
        self._signals = (*forwarded, *observed)
        self._send: Callable[[int], None] | None = None
        self._pending: list[int] = []
        self.first_at: float | None = None

    def handlers(self) -> dict[int, Handler]:
        return {signum: self._on_signal for signum in self._signals}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        if signum not in self._forwarded:
            return
        if self._send is None:  # arrived before the child existed
            self._pending.append(signum)
        else:
            self._send(signum)

    def attach(self, send: Callable[[int], None]) -> None:
        self._send = send
        for signum in self._pending:
            send(signum)
        self._pending.clear()

    def stop(self, sinks: Sequence[_Sink], send: Callable[[int], None]) -> None:
        """SIGTERM to the child once a sink's filter stopped its output (SIGKILL follows
        after the grace period, as for a forwarded signal)."""
        if self.first_at is None and any(sink.stopped for sink in sinks):
            self.first_at = time.monotonic()
            send(signal.SIGTERM)

    def overdue(self) -> bool:
        """True once the child had KILL_GRACE_SECONDS to react to a signal."""
        return self.first_at is not None and time.monotonic() - self.first_at > KILL_GRACE_SECONDS


# --------------------------------------------------------------------------- output


class _Sink:
    """One output stream behind its filter; a reader that went away, or a filter that stops
    (StopOutput), ends the writes."""

    def __init__(self, stream_filter: Filter, out: BinaryIO) -> None:
        self.filter = stream_filter
        self.out = out
        self.broken = False
        self.stopped = False

    def _write(self, data: bytes) -> None:
        if not data or self.broken:
            return
        try:
            self.out.write(data)
            self.out.flush()
        except BrokenPipeError:
            self.broken = True

    def feed(self, data: bytes) -> None:
        self._write(self._filtered(self.filter.feed, data))

    def finish(self) -> None:
        self._write(self._filtered(self.filter.flush))

    def _filtered(self, step: Callable[..., bytes], *data: bytes) -> bytes:
        if self.stopped:
            return b""
        try:
            return step(*data)
        except StopOutput:
            self.stopped = self.broken = True
            return b""


# --------------------------------------------------------------------------- running


def run(
    argv: Sequence[str],
    child_env: Mapping[str, str],
    *,
    stdout_filter: Filter,
    stderr_filter: Filter,
    stdin: IO[Any] | None,
    use_pty: bool,
    stdout: BinaryIO,
    stderr: BinaryIO,
    started: Callable[[], None] | None = None,
) -> int:
    """Run `argv` and return its exit code (128+N for death by signal N).

    `stdin` None means kubectl reads guardctl's own stdin (so `apply -f -` works). In pty
    mode kubectl's stdout and stderr share the terminal, so only `stdout_filter` is used.
    `started` runs once the child is spawned, before its first output is read: work done
    there overlaps kubectl's own start-up.
    """
    if use_pty:
        return _run_pty(argv, child_env, stdout_filter, stdin, stdout, started)
    sinks = (_Sink(stdout_filter, stdout), _Sink(stderr_filter, stderr))
    return _run_pipes(argv, child_env, sinks, stdin, started)


def _fileno(stream: IO[Any] | None) -> int:
    return stream.fileno() if stream is not None else 0


def _run_pipes(
    argv: Sequence[str], child_env: Mapping[str, str], sinks: tuple[_Sink, _Sink],
    stdin: IO[Any] | None, started: Callable[[], None] | None,
) -> int:
    forwarder = _forwarder(own_session=not os.isatty(_fileno(stdin)))
    with signal_handlers(forwarder.handlers()):
        return _finish(Spawned(argv, child_env, stdin), sinks, forwarder, started)


def run_spawned(
    child: Spawned,
    *,
    stdout_filter: Filter,
    stderr_filter: Filter,
    stdout: BinaryIO,
    stderr: BinaryIO,
    started: Callable[[], None] | None = None,
) -> int:
    """`run` for a kubectl spawned earlier (`Spawned`): its output, from the first byte, goes
    through the filters; its exit code, as `run` reports it. Signals are forwarded from
    here on (before, the caller's own handlers rule, and leaving its block kills it)."""
    forwarder = _forwarder(own_session=child.own_session)
    sinks = (_Sink(stdout_filter, stdout), _Sink(stderr_filter, stderr))
    with signal_handlers(forwarder.handlers()):
        return _finish(child, sinks, forwarder, started)


class Spawned:
    """kubectl started with its output on pipes that nothing reads yet; `run_spawned` reads
    them. `close` kills and reaps it if it still runs (a run that stopped before its output
    was wanted)."""

    def __init__(
        self, argv: Sequence[str], child_env: Mapping[str, str], stdin: IO[Any] | None
    ) -> None:
        stdin_fd = _fileno(stdin)
        # stdin not a terminal (an agent's): kubectl's own session, signals reach it through us
        self.own_session = not os.isatty(stdin_fd)
        try:
            command, tie = tied(argv)
            self.process = subprocess.Popen(
                command, env=dict(child_env), stdin=stdin_fd, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=self.own_session, preexec_fn=tie,
            )
        except OSError as err:
            raise UnsafeError(NOT_FOUND) from err

    def send(self, signum: int) -> None:
        if self.process.poll() is None:
            # the whole session: exec credential plugins kubectl started go too
            (os.killpg if self.own_session else os.kill)(self.process.pid, signum)

    def close(self) -> None:
        _reap(self.process, self.send)


def _forwarder(own_session: bool) -> _Forwarder:
    """In its own session kubectl gets no terminal signal: SIGINT is forwarded too; in ours
    the terminal delivered it already, so it is only noticed (it starts the grace period)."""
    if own_session:
        return _Forwarder((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    return _Forwarder((signal.SIGTERM, signal.SIGHUP), observed=(signal.SIGINT,))


def _finish(
    child: Spawned, sinks: tuple[_Sink, _Sink], forwarder: _Forwarder,
    started: Callable[[], None] | None,
) -> int:
    forwarder.attach(child.send)
    try:
        if started is not None:
            started()
        _pump_pipes(child.process, sinks, forwarder, child.send)
        return exit_for_child(child.process.wait())
    finally:
        child.close()


class _ExitWatch:
    """Notices the child's exit: at once through a pidfd in the selector (Linux 5.3+), else by
    asking on each turn of the loop."""

    def __init__(self, child: subprocess.Popen[bytes], selector: selectors.BaseSelector) -> None:
        self._child = child
        self._selector = selector
        self.at: float | None = None  # monotonic time the exit was seen
        try:
            self._fd = os.pidfd_open(child.pid)
        except (AttributeError, OSError):  # not Linux, an old kernel, or a seccomp filter
            self._fd = -1
        else:
            selector.register(self._fd, selectors.EVENT_READ)

    def timeout(self, output_open: bool) -> float:
        return POLL_SECONDS if output_open or self._fd >= 0 else EXIT_POLL_SECONDS

    def update(self, ready: set[int]) -> None:
        if self.at is not None:
            return
        if self._fd >= 0 and self._fd in ready:
            self._selector.unregister(self._fd)  # it stays readable: no busy loop while draining
            self.at = time.monotonic()
        elif self._fd < 0 and self._child.poll() is not None:
            self.at = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)


def _pump_pipes(
    child: subprocess.Popen[bytes], sinks: tuple[_Sink, _Sink], forwarder: _Forwarder,
    send: Callable[[int], None],
) -> None:
    """Pass kubectl's output through the sinks until it exits and its output is closed (or
    DRAIN_SECONDS after it exited, if a grandchild keeps the pipes open)."""
    assert child.stdout is not None and child.stderr is not None
    pipes = {child.stdout.fileno(): child.stdout, child.stderr.fileno(): child.stderr}
    open_fds = {child.stdout.fileno(): sinks[0], child.stderr.fileno(): sinks[1]}
    with selectors.DefaultSelector() as selector:
        for fd in open_fds:
            selector.register(fd, selectors.EVENT_READ)
        exited = _ExitWatch(child, selector)
        try:
            while open_fds or exited.at is None:
                ready = {key.fd for key, _ in selector.select(exited.timeout(bool(open_fds)))}
                for fd in ready & open_fds.keys():
                    sink = open_fds[fd]
                    data = os.read(fd, CHUNK)
                    if data:
                        sink.feed(data)
                    else:
                        sink.finish()
                    if not data or sink.broken:
                        selector.unregister(fd)
                        del open_fds[fd]
                    if sink.broken:
                        # kubectl's next write gets SIGPIPE, as in `kubectl ... | head`
                        pipes[fd].close()
                forwarder.stop(sinks, send)
                if forwarder.overdue():
                    send(signal.SIGKILL)
                exited.update(ready)
                if exited.at is not None and time.monotonic() - exited.at > DRAIN_SECONDS:
                    break
        finally:
            exited.close()
        for sink in open_fds.values():
            sink.finish()


def _reap(child: subprocess.Popen[bytes], send: Callable[[int], None]) -> None:
    """Kill and wait for a child that is still running (an error or exception got us here)."""
    if child.poll() is None:
        send(signal.SIGKILL)
        child.wait(timeout=KILL_GRACE_SECONDS)
    for pipe in (child.stdout, child.stderr):
        if pipe is not None:
            pipe.close()


# --------------------------------------------------------------------------- pty mode


def _winsize(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal on `fd`."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return FALLBACK_WINSIZE
    return size.lines, size.columns


@contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on `fd` in raw mode for the block (keys go to kubectl as typed)."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _run_pty(
    argv: Sequence[str], child_env: Mapping[str, str], out_filter: Filter,
    stdin: IO[Any] | None, stdout: BinaryIO, started: Callable[[], None] | None,
) -> int:
    import pexpect

    in_fd, out_fd = _fileno(stdin), stdout.fileno()
    forwarder = _Forwarder((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    with signal_handlers(forwarder.handlers()):
        try:
            child = pexpect.spawn(argv[0], list(argv[1:]), env=dict(child_env),
                                  dimensions=_winsize(out_fd),
                                  preexec_fn=die_with_this_process())
        except pexpect.ExceptionPexpect as err:
            raise UnsafeError(NOT_FOUND) from err

        def send(signum: int) -> None:
            if child.isalive():
                child.kill(signum)

        def on_winch(_signum: int, _frame: FrameType | None) -> None:
            # pexpect does not pass resizes on; setwinsize makes the kernel send SIGWINCH
            child.setwinsize(*_winsize(out_fd))

        forwarder.attach(send)
        sink = _Sink(out_filter, stdout)
        try:
            if started is not None:
                started()
            with signal_handlers({signal.SIGWINCH: on_winch}), _raw_terminal(in_fd):
                _pump_pty(child, in_fd, sink, forwarder, send)
            sink.finish()
            return _pty_exit_code(child)
        finally:
            if child.isalive():
                child.terminate(force=True)
            child.close(force=True)


def _read_pty(fd: int) -> bytes:
    """A chunk from the pty master; b"" once the child side is closed (Linux says EIO)."""
    try:
        return os.read(fd, CHUNK)
    except OSError as err:
        if err.errno == errno.EIO:
            return b""
        raise


def _pump_pty(
    child: pexpect.spawn, in_fd: int, sink: _Sink, forwarder: _Forwarder,
    send: Callable[[int], None],
) -> None:
    exited_at: float | None = None
    # poll, unlike epoll, also accepts a regular file as stdin
    with selectors.PollSelector() as selector:
        for fd in (child.child_fd, in_fd):
            selector.register(fd, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select(POLL_SECONDS):
                if key.fd == child.child_fd:
                    data = _read_pty(key.fd)
                    if not data:
                        return
                    sink.feed(data)
                else:
                    data = os.read(key.fd, CHUNK)
                    if data:
                        write_all(child.child_fd, data)
                    else:  # our stdin ended: keep showing output, stop reading input
                        selector.unregister(key.fd)
            forwarder.stop((sink,), send)
            if forwarder.overdue():
                send(signal.SIGKILL)
            if exited_at is None and not child.isalive():
                exited_at = time.monotonic()
            if exited_at is not None and time.monotonic() - exited_at > DRAIN_SECONDS:
                return


def _pty_exit_code(child: pexpect.spawn) -> int:
    """Wait (bounded) for the child after its pty closed, then map its status."""
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while child.isalive() and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS / 10)
    if child.isalive():
        child.terminate(force=True)
    if child.signalstatus is not None:
        return exit_for_child(-int(child.signalstatus))
    return int(child.exitstatus or 0)
