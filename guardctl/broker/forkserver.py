"""The fork server: a warm guardctl that forks one worker per command (see `forkclient`).

    python -m guardctl.broker.forkserver SOCKET_PATH

Started in the background by the first command that finds no server, it imports the
paths an agent's commands take (kubectl runs, `check`, the Claude Code hook), compiles
the secret detectors and loads the bundled policy, then waits on a Unix socket in a
private folder. Per connection it forks; the worker adopts the client's working
directory, umask, environment and standard streams and runs `guardctl.main.main` as the
client would have. Everything read from the environment or from files (rules, config,
tokens, the audit log) is read again by each worker, so the server holds no state of its
own beyond what it imported and compiled, and that is checked: when a module or data
file of guardctl changes on disk, the server stops instead of serving old code.

A worker serves only a client of the same user in the same namespaces (a client in a
container or sandbox gets no way out of it through the server), and only the commands
that never need a terminal; any other request is answered "local", and the client runs
it itself. The server exits after IDLE_SECONDS without a request.
"""

import fcntl
import gc
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import NamedTuple

from guardctl.broker import forkclient
from guardctl.broker.peer import identify, receive_exactly, receive_with_fds
from guardctl.routing import flush_standard_streams
from guardctl.runtime import private_folder

IDLE_SECONDS = 600.0
# how often an idle server checks that its socket and its code are still there: a demo's
# or a test's temporary folder, or a removed venv, should not keep it for IDLE_SECONDS
CHECK_SECONDS = 5.0
REQUEST_MAX = 16 * 1024 * 1024


class Request(NamedTuple):
    cwd: bytes
    umask: int
    args: list[str]
    environ: dict[bytes, bytes]


class BadRequest(Exception):
    """A request this server cannot read: the client runs the command itself."""


def decode_request(body: bytes) -> Request:
    words = body.split(b"\0")
    if len(words) < 4 or words[0] != forkclient.PROTOCOL:
        raise BadRequest("unknown protocol")
    try:
        umask, count = int(words[2]), int(words[3])
    except ValueError:
        raise BadRequest("malformed numbers") from None
    if count < 0 or len(words) < 4 + count:
        raise BadRequest("argument count out of range")
    args = [os.fsdecode(w) for w in words[4 : 4 + count]]
    environ: dict[bytes, bytes] = {}
    for item in words[4 + count :]:
        name, sep, value = item.partition(b"=")
        if not sep or not name:
            raise BadRequest("malformed environment entry")
        environ[name] = value
    return Request(words[1], umask & 0o777, args, environ)


# --------------------------------------------------------------------------- the server


def code_stamps() -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of guardctl's modules and data files, to notice an upgrade."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folders = [package, *(os.path.join(package, name) for name in _names(package))]
    paths = [
        os.path.join(folder, name)
        for folder in folders
        if os.path.isdir(folder) and not folder.endswith("__pycache__")
        for name in _names(folder)
        if name != "__pycache__"  # bytecode written as modules are first imported
    ]
    stamps: dict[str, tuple[int, int]] = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            stamps[path] = (-1, -1)
        else:
            stamps[path] = (info.st_mtime_ns, info.st_size)
    return stamps


def _names(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return ["(gone)"]


def prewarm() -> None:
    """Import and build, once, what every worker would otherwise build again."""
    from guardctl import cli
    from guardctl.agents import hook
    from guardctl.broker import warm
    from guardctl.recording import audit, recorder, retention
    from guardctl.running import creds, invoke, kubeconfig, runner, team_rules

    # imported is enough
    del audit, cli, creds, hook, invoke, kubeconfig, recorder, retention, runner, team_rules
    warm.build()
    # what was built stays for the server's life: the collector need not walk it in every
    # worker, and a worker's collections then do not copy the pages it lies on
    gc.freeze()


def _listen(path: str) -> tuple[socket.socket, int] | None:
    """The bound socket and the lock file held for the server's life; None when another
    server holds the lock."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not private_folder(folder):
        raise SystemExit(f"guardctl fork server: {folder} is not a private folder of this user")
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return None
    os.utime(lock)  # clients wait START_GRACE_SECONDS before starting another server
    os.ftruncate(lock, 0)
    os.write(lock, b"%d\n" % os.getpid())
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    return listener, lock


def serve(path: str) -> None:
    signal.signal(signal.SIGTERM, _stop)
    listening = _listen(path)
    if listening is None:
        return
    listener, lock_fd = listening
    _log_to(path + ".log")
    bound = os.stat(path).st_ino
    try:
        prewarm()
        stamps = code_stamps()
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
        listener.settimeout(CHECK_SECONDS)
        idle = 0.0
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                idle += CHECK_SECONDS
                if idle >= IDLE_SECONDS or not _still_current(path, bound, stamps):
                    break
                continue
            idle = 0.0
            if code_stamps() != stamps:
                conn.close()  # the client runs the command itself, with the new code
                break
            conn.settimeout(None)
            if os.fork() == 0:
                listener.close()
                os.close(lock_fd)
                _worker(conn)  # never returns
            conn.close()
    except _Stop:
        pass
    finally:
        _unbind(path, bound)
        listener.close()
        os.close(lock_fd)


def _still_current(path: str, inode: int, stamps: dict[str, tuple[int, int]]) -> bool:
    """The socket is still this server's, and guardctl's files are as it loaded them."""
    try:
        if os.stat(path).st_ino != inode:
            return False
    except OSError:
        return False
    return code_stamps() == stamps


def _log_to(path: str) -> None:
    """The server's stderr (started with none): why it stopped, if it ever fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)


class _Stop(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop


def _unbind(path: str, inode: int) -> None:
    """Remove the socket (and the lock file), unless a newer server's is there already."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
            os.unlink(path + ".lock")
    except OSError:
        pass


# --------------------------------------------------------------------------- a worker


def _worker(conn: socket.socket) -> None:
    """Serve one request and exit; never returns into the server's loop."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # kubectl's exit must be waited for
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        request, fds = _receive(conn)
        client = _same_client(conn)
        if (request is None or client is None or not forkclient.served(request.args)
                or not _adopt_limits(client)):
            _send(conn, b"local\n")
            os._exit(0)
        _adopt(request, fds)
        _send(conn, b"started\n")
        done = threading.Event()
        threading.Thread(target=_relay_signals, args=(conn, done), daemon=True).start()
        code = _run(request.args)
        done.set()
        _send(conn, b"exit %d\n" % code)
    except BaseException:  # noqa: BLE001 - a worker must end here, never in the server loop
        pass
    os._exit(code)


def _receive(conn: socket.socket) -> tuple[Request | None, list[int]]:
    """The request and its three descriptors; (None, []) for anything unreadable."""
    head, fds = receive_with_fds(conn, 4, 3)
    if len(head) != 4 or len(fds) != 3:
        return None, fds
    size = int.from_bytes(head, "big")
    if size > REQUEST_MAX:
        return None, fds
    body = receive_exactly(conn, size)
    if body is None:
        return None, fds
    try:
        return decode_request(body), fds
    except BadRequest:
        return None, fds


def _same_client(conn: socket.socket) -> int | None:
    """The peer's pid, if it is this user in this server's namespaces (proven as the broker
    proves it) with this server's privileges."""
    peer = identify(conn)
    if peer.uid != os.getuid() or not peer.same_namespaces:
        return None
    return peer.pid if _privileges(str(peer.pid)) == _privileges("self") else None


# what a process may do beyond its uid, as /proc/PID/status says: ids, groups, capabilities,
# no_new_privs and seccomp. A client with less (setpriv, a sandbox) is not served by a worker
# that has more; it runs its command itself.
_PRIVILEGE_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                     "NoNewPrivs", "Seccomp")


def _privileges(pid: str) -> tuple[list[str], str] | None:
    """The privilege lines of /proc/PID/status and the process's cgroups (its limits)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            fields = [line for line in status if line.split(":", 1)[0] in _PRIVILEGE_FIELDS]
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as cgroup:
            return fields, cgroup.read()
    except OSError:
        return None


def _adopt_limits(pid: int) -> bool:
    """Take the client's resource limits (`ulimit`: file size, memory, open files, CPU…), as
    its own child would have them; False if they cannot be read or held (run it there)."""
    import resource

    for name in dir(resource):
        if not name.startswith("RLIMIT_"):
            continue
        which = getattr(resource, name)
        try:
            resource.setrlimit(which, resource.prlimit(pid, which))
        except (OSError, ValueError):
            return False
    return True


def _adopt(request: Request, fds: list[int]) -> None:
    """Become the client: its streams, working directory, umask and environment."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request.cwd)
    os.umask(request.umask)
    os.environb.clear()
    os.environb.update(request.environ)


def _relay_signals(conn: socket.socket, done: threading.Event) -> None:
    """Signals the client got are raised here; the client's end is a SIGTERM, as an agent
    killing its guardctl would be to a plain run."""
    while True:
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        if done.is_set():
            return
        if not data:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        for signum in data:
            if signum in forkclient.FORWARDED_SIGNALS:
                os.kill(os.getpid(), signum)


def _run(args: list[str]) -> int:
    from guardctl.main import main

    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    flush_standard_streams()
    return code


def _send(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError:
        pass


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m guardctl.broker.forkserver SOCKET_PATH\n")
        return 2
    if forkclient.socket_path(os.environ) != argv[0]:
        # another interpreter or another copy of guardctl: it has its own socket
        sys.stderr.write("guardctl fork server: the socket path is not this guardctl's\n")
        return 2
    serve(argv[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
