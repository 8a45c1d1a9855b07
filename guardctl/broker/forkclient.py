"""The thin client of the fork server: hands one guardctl command to a warm guardctl.

An agent runs thousands of commands, and starting Python and importing guardctl costs
about as much as kubectl's whole run. The fork server (`forkserver.py`) keeps guardctl
imported, its detectors compiled and its policy loaded, and forks one worker per command.
This client passes the worker what makes it this process — argv, environment, working
directory, umask and the three standard streams as file descriptors — forwards the
signals it gets, and exits with the worker's status. The worker runs the very code a
plain run would (`guardctl.main.main`), so the decision, the audit log, the cast and the
masking are the same; only the start-up is saved.

Used only when no standard stream is a terminal (an agent's pipes): a terminal brings a
controlling tty, a foreground process group and a window size that a worker forked by a
detached server would not share, and a person at a terminal does not notice 100 ms.
Anything that goes wrong before the worker says it started (no server, a stale one, a
refused request) means: run here instead. `GUARDCTL_FORKSERVER=0` turns it off.

This module is on every command's path, so it imports only interpreter built-ins: the
`socket` and `signal` wrappers load `enum`, which alone costs more than all of this.
"""

import _signal
import _socket
import os
import sys

from guardctl.runtime import SignalRelay, private_folder, socket_folder

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping

# the request's version; the server answers a request it does not know with "local"
PROTOCOL = b"guardctl-fork-1"
# a server is presumed starting (or broken) for this long after it took its lock file,
# so that clients do not start one server each while the first one warms up
START_GRACE_SECONDS = 30.0
SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
OFF_VALUES = frozenset({"0", "off", "no", "false"})
# guardctl's own commands a worker runs (kubectl invocations too); the others are a
# person's (creds, approvals, replay, demo, …) or run a shell (sh), and run here
SERVED_COMMANDS = frozenset({"check", "hook", "mask", "kubectl"})
# guardctl's options before any command: those run here
OWN_OPTIONS = frozenset({"-h", "--help", "--version", "--traceback"})
# SCM_RIGHTS data: fds 0, 1 and 2 as C ints (the `array` module would import collections.abc)
STANDARD_FDS = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))


def socket_path(environ: "Mapping[str, str]") -> "str | None":
    """Where this interpreter's and this guardctl's server listens, or None if nowhere.

    One server per user, Python and guardctl installation: each request brings its own
    environment, so one server serves every GUARDCTL_HOME and rules setting. The folder
    is the user's runtime dir (0700, per login) or /tmp/guardctl-UID, which the server
    creates 0700 and both sides check before trusting a socket in it.
    """
    import zlib

    folder = socket_folder(environ)
    package = os.path.dirname(os.path.abspath(__file__))
    key = zlib.crc32(f"{sys.executable}\0{package}".encode("utf-8", "surrogateescape"))
    path = f"{folder}/fork-{key:08x}.sock"
    return path if len(os.fsencode(path)) <= SUN_PATH_MAX else None


def served(args: "list[str]") -> bool:
    """True for the commands a worker runs: kubectl invocations, `check`, `hook`, `mask`."""
    from guardctl.commands import guardctl_commands

    if not args or args[0] in OWN_OPTIONS:
        return False
    return args[0] in SERVED_COMMANDS or args[0] not in guardctl_commands()


def enabled(environ: "Mapping[str, str]") -> bool:
    if environ.get("GUARDCTL_FORKSERVER", "").strip().lower() in OFF_VALUES:
        return False
    if sys.platform != "linux":  # peer checks and namespaces read /proc
        return False
    return not any(_isatty(fd) for fd in (0, 1, 2))


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def encode_request(args: "list[str]") -> bytes:
    """The request: NUL-separated words (no argument or variable can hold a NUL), after a
    4-byte length. Words are bytes as the OS gave them, undecodable ones included."""
    words = [
        PROTOCOL,
        os.fsencode(os.getcwd()),
        b"%d" % _umask(),
        b"%d" % len(args),
        *(os.fsencode(a) for a in args),
        *(k + b"=" + v for k, v in os.environb.items()),
    ]
    body = b"\0".join(words)
    return len(body).to_bytes(4, "big") + body


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


class _Link(SignalRelay):
    """The connection to a worker, and the signals sent over it (the raw byte: the fork
    server's protocol)."""

    signals = FORWARDED_SIGNALS

    def __init__(self, sock: "_socket.socket") -> None:
        super().__init__(sock)
        self.forwarded: list[int] = []

    def forward(self, signum: int, _frame: object) -> None:
        """A signal for guardctl goes to the worker, which handles it as its own."""
        self.forwarded.append(signum)
        try:
            self.sock.send(bytes((signum,)))
        except OSError:
            pass


def run_warm(args: "list[str]") -> "int | None":
    """Run `guardctl ARGS` in a worker of the fork server: its exit status, or None when
    this process must run the command itself (nothing was done on its behalf)."""
    environ = os.environ
    if not served(args) or not enabled(environ):
        return None
    path = socket_path(environ)
    if path is None:
        return None
    folder = os.path.dirname(path)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if not private_folder(folder):
            raise OSError("no private folder")
        sock.connect(path)
    except OSError:
        sock.close()
        _start_server(path)
        return None
    try:
        request = encode_request(args)
    except OSError:  # the working directory is gone
        sock.close()
        return None
    with _Link(sock) as link:
        try:
            sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, STANDARD_FDS)])
        except OSError:
            return None
        return _await_exit(link)


def _await_exit(link: "_Link") -> "int | None":
    """Read the worker's answers: `local` (run here), `started`, then `exit N`."""
    received = b""
    started = False
    while True:
        try:
            chunk = link.sock.recv(256)
        except OSError:
            chunk = b""
        if not chunk:
            break
        received += chunk
        while b"\n" in received:
            line, received = received.split(b"\n", 1)
            if line == b"started":
                started = True
            elif line.startswith(b"exit ") and started:
                return int(line[5:])
            elif not started:  # "local", or anything this client does not know
                _handed_back(link)
                return None
    if not started:
        _handed_back(link)
        return None
    return _worker_lost(link)


def _handed_back(link: "_Link") -> None:
    """Nothing ran for us; a signal that came meanwhile is this process's own again."""
    link.__exit__()
    for signum in link.forwarded:
        _signal.raise_signal(signum)
    return None


def _worker_lost(link: "_Link") -> int:
    """The worker ended without a status: killed by a signal we passed on (end the same way,
    as a plain run would have), or by something else (an error we cannot explain)."""
    link.__exit__()
    for signum in link.forwarded:
        if signum != _signal.SIGINT:
            _signal.signal(signum, _signal.SIG_DFL)
        _signal.raise_signal(signum)
    sys.stderr.write(
        "guardctl: internal error: the fork server's worker ended without an exit status"
        " (run with GUARDCTL_FORKSERVER=0 to run in this process)\n"
    )
    return 1


def _start_server(path: str) -> None:
    """Start the server in the background for the next commands; this one runs here.

    Not while a server holds the lock file (it is warming up), nor when one took it less
    than START_GRACE_SECONDS ago and is gone (it failed to start, and would again).
    """
    if _server_starting_or_failed(path + ".lock"):
        return
    import subprocess

    # `-P` (Python 3.11+) and the root folder as working directory: no folder the agent
    # happens to be in can put its own `guardctl` on the server's sys.path, and the
    # server keeps no folder busy
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    try:
        subprocess.Popen(
            [sys.executable, *safe_path, "-m", "guardctl.broker.forkserver", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    except OSError:
        pass


def _server_starting_or_failed(lock_path: str) -> bool:
    import fcntl
    import time

    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True  # held: a server is starting
    else:
        return os.fstat(fd).st_mtime > time.time() - START_GRACE_SECONDS
    finally:
        os.close(fd)
