"""`guardctl broker serve`: the daemon that alone holds what the agent must not touch.

It runs in the foreground under the account that owns the credentials, rules, approvals,
casts and audit log, and listens on a Unix socket. Each connection gets a worker (forked
from the warm server, as the fork server does): the kernel says who is calling
(`peer.identify`), the broker gives it a role (`peer.Access`) and runs the request with
an environment it built itself — its own variables and settings, never the client's, but
for the few listed in AGENT_VARIABLES — deciding, asking a human, minting the token,
running kubectl, masking and recording exactly as guardctl does for its own user. The
client's standard streams come with the request, so masked output goes straight to them.

The socket is made so that the named agent accounts can connect and nobody else: a POSIX
ACL on the socket lists the agent users and groups (and approver users); where the file
system has no ACLs and the agents are not exactly one group, the socket is left open to
local users and said so — the kernel's peer check refuses everyone else all the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import grp
import os
import pwd
import select
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

from guardctl.accounts import user_name
from guardctl.broker import wire
from guardctl.broker.client import AGENT_VARIABLES
from guardctl.broker.peer import (
    AGENT,
    Access,
    Peer,
    identify,
    receive_exactly,
    receive_with_fds,
)
from guardctl.commands import guardctl_commands
from guardctl.errors import UsageError
from guardctl.routing import flush_standard_streams
from guardctl.signals import exit_on_signal

if TYPE_CHECKING:
    from guardctl.broker.answers import Settings as AnswerSettings
    from guardctl.broker.caller import Caller, Identity
    from guardctl.broker.remote import Link, Tcp
    from guardctl.broker.worker import Commands
    from guardctl.shipping.follower import Follower

# how often the accept loop wakes up to notice that its socket was removed
CHECK_SECONDS = 5.0
# idle workers forked and warmed ahead of requests (see _Pool)
SPARES = 2
# workers alive at once (idle or serving); more clients wait in the socket's backlog
MAX_WORKERS = 64
# of those, the last ones take only the Unix socket (see `_open_to`)
SOCKET_RESERVE = 8
# the signals that stop the server (its `_stop` handler)
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
# how often the server looks for ended workers where it has no pidfd to watch
POLL_SECONDS = 0.05
# how long a worker waits for the request after the client connected
REQUEST_SECONDS = 30.0
BACKLOG = 128

# POSIX ACL xattr (linux/posix_acl_xattr.h): version, then (tag, perm, id) entries
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
_RW = 0o6


# --------------------------------------------------------------------------- settings


class Serving(NamedTuple):
    """What every worker needs: who may use the broker, the broker's own variables, how to
    run guardctl's commands, and the TCP settings (None: the Unix socket only)."""

    access: Access
    environ: dict[str, str]
    commands: Commands
    tcp: Tcp | None


def _resolve(names: Sequence[str], lookup: Callable[[str], int], what: str) -> frozenset[int]:
    """ids of accounts or groups given by name or number; UsageError names one that is not."""
    found = set()
    for name in names:
        try:
            found.add(int(name) if name.isdigit() else lookup(name))
        except KeyError:
            raise UsageError(f"no {what} named {name!r}: give an existing {what} or id") from None
    return frozenset(found)


def resolve_users(names: Sequence[str]) -> frozenset[int]:
    return _resolve(names, lambda name: pwd.getpwnam(name).pw_uid, "user")


def resolve_groups(names: Sequence[str]) -> frozenset[int]:
    return _resolve(names, lambda name: grp.getgrnam(name).gr_gid, "group")


def make_access(
    agent_users: Sequence[str], agent_groups: Sequence[str], approver_users: Sequence[str]
) -> Access:
    owner = os.getuid()
    access = Access(
        owner=owner,
        approvers=resolve_users(approver_users),
        agent_users=resolve_users(agent_users),
        agent_groups=resolve_groups(agent_groups),
    )
    both = access.agent_users & {owner, *access.approvers}
    if both:
        name = user_name(min(both))
        raise UsageError(
            f"{name} cannot be both an agent and an approver: the agent must run under "
            "another account than the one that holds the credentials"
        )
    return access


# --------------------------------------------------------------------------- the socket


def _check_folder(folder: Path) -> None:
    """The socket's folder must be one that only root or the broker's account can change,
    else someone could put their own socket where the agents look (a sticky /tmp is fine:
    nobody can replace our file there)."""
    try:
        info = folder.stat()
    except OSError as err:
        raise UsageError(f"cannot use {folder} for the socket: {err.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{folder} is not a folder")
    writable_by_others = info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
    if info.st_uid not in (0, os.getuid()) or writable_by_others:
        raise UsageError(
            f"{folder} can be changed by other users, who could replace the broker's socket: "
            "put the socket in a folder of the broker's own account (e.g. /run/guardctl, 0755)"
        )


def _acl(users: Sequence[int], groups: Sequence[int]) -> bytes:
    entries = [(_USER_OBJ, _RW, _UNDEFINED_ID)]
    entries += [(_USER, _RW, uid) for uid in sorted(users)]
    entries += [(_GROUP_OBJ, 0, _UNDEFINED_ID)]
    entries += [(_GROUP, _RW, gid) for gid in sorted(groups)]
    entries += [(_MASK, _RW, _UNDEFINED_ID), (_OTHER, 0, _UNDEFINED_ID)]
    data = _ACL_VERSION.to_bytes(4, "little")
    for tag, perm, ident in entries:
        data += tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + ident.to_bytes(4, "little")
    return data


def grant_access(path: Path, access: Access) -> str:
    """Let the agent (and approver) accounts connect to the socket; returns how."""
    users = sorted({*access.agent_users, *access.approvers} - {access.owner})
    groups = sorted(access.agent_groups)
    if not users and not groups:
        os.chmod(path, 0o600)
        return "only the broker's own account can connect"
    try:
        os.chmod(path, 0o600)
        os.setxattr(path, _ACL_XATTR, _acl(users, groups))
    except OSError:
        pass
    else:
        return "a POSIX ACL lets the agent accounts connect"
    if not users and len(groups) == 1:
        with contextlib.suppress(OSError):
            os.chown(path, -1, groups[0])
            os.chmod(path, 0o660)
            return "the agent group may connect"
    os.chmod(path, 0o666)
    return ("this file system has no ACLs: every local user can connect to the socket, and "
            "the broker refuses all but its agents and approvers")


@contextlib.contextmanager
def listening(path: Path, access: Access) -> Iterator[tuple[socket.socket, str]]:
    """The bound socket (and how others may reach it); removed when the block ends."""
    _check_folder(path.parent)
    lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock_fd)
        raise UsageError(f"another broker serves {path}") from None
    try:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise UsageError(f"{path} exists and is not a socket: choose another --socket")
            os.unlink(path)  # a socket left by a broker that was killed
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o177)
        try:
            listener.bind(str(path))
        except OSError as err:
            listener.close()
            raise UsageError(f"cannot listen on {path}: {err.strerror or err}: choose another "
                             "--socket (a shorter path, in a folder of this account)") from None
        finally:
            os.umask(old_mask)
        how = grant_access(path, access)
        listener.listen(BACKLOG)
        owner = os.getpid()
        try:
            yield listener, how
        finally:
            listener.close()
            if os.getpid() == owner:  # never a forked worker's doing
                with contextlib.suppress(OSError):
                    os.unlink(path)
    finally:
        os.close(lock_fd)


# --------------------------------------------------------------------------- serving


def prewarm() -> None:
    """Import and build once what every worker needs (see the fork server's prewarm)."""
    from guardctl.agents import hook, shell
    from guardctl.approvals import flow, grants, queue
    from guardctl.broker import caller, inputs, warm, worker
    from guardctl.recording import audit, recorder, retention, sessions, verify
    from guardctl.running import creds, invoke, kubeconfig, kubectl_env, runner, team_rules

    del hook, shell, flow, grants, queue, caller, inputs, worker, audit, recorder, sessions
    del verify, creds, invoke, kubeconfig, kubectl_env, runner, retention, team_rules
    warm.build()
    gc.freeze()


class _Stop(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop


def serve(
    path: Path | None, access: Access, log: IO[str], commands: Commands, tcp: Tcp | None = None,
    answers: AnswerSettings | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT (or the socket is removed); returns an exit status.

    `path`: the Unix socket (None: TCP only); `tcp`: `--listen` (None: the socket only);
    `answers`: `--answers-listen`, where signed answers arrive (None: no such listener).
    `commands` runs one of guardctl's own commands in a worker (`cli.run`).
    """
    serving = Serving(access, dict(os.environ), commands, tcp)
    follower = _start_shipping(log)
    try:
        return _serve(path, access, log, serving, follower, answers)
    finally:
        if follower is not None:
            follower.stop()


def _start_shipping(log: IO[str]) -> Follower | None:
    """The shipper of the records to the sinks the config's `ship:` names (None: none)."""
    from guardctl.env import Environment
    from guardctl.shipping import follower

    env = Environment()
    started = follower.start(env.state_dir, env.config_path, env.cache_dir, log)
    if started is not None:
        log.write(f"guardctl broker: shipping to {', '.join(started.sinks)} "
                  f"(pid {started.pid})\n")
    return started


def _serve(
    path: Path | None, access: Access, log: IO[str], serving: Serving, follower: Follower | None,
    answers: AnswerSettings | None,
) -> int:
    tcp = serving.tcp
    with contextlib.ExitStack() as stack:
        if answers is not None:  # first: its process must hold none of the other listeners
            _answer_signed(stack, answers, log)
        listeners, where = [], []
        if path is not None:
            listener, how = stack.enter_context(listening(path, access))
            listeners.append(listener)
            where.append(f"{path} ({how})")
        if tcp is not None:
            from guardctl.broker import remote

            listener = stack.enter_context(remote.listen(tcp.host, tcp.port, BACKLOG))
            listeners.append(listener)
            where.append(f"{remote.url(listener)} (TLS; agents by token)")
        for listener in listeners:  # every spare waits on all of them (`_accept`)
            listener.setblocking(False)
        # kubectl runs in the workers' working folder: the root, where no relative path
        # could name the broker's own files
        os.chdir("/")
        prewarm()
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        inode = os.stat(path).st_ino if path is not None else 0
        for warning in _reach_warnings(path, access) if path is not None else []:
            log.write(f"guardctl broker: warning: {warning}\n")
        log.write(
            f"guardctl broker: ready on {' and '.join(where)}; {access.describe()}\n"
        )
        log.flush()
        pool = _Pool(lambda taken: _spare(
            listeners, _open_to(listeners, len(pool.busy), path is not None), taken, serving
        ), on_end=follower.wake if follower is not None else None,
            private=(follower.wake_fd,) if follower is not None else ())
        try:
            while True:
                pool.fill()
                if (not pool.wait(CHECK_SECONDS) and path is not None
                        and not _still_ours(path, inode)):
                    log.write(f"guardctl broker: {path} was removed; stopping\n")
                    return 1
        except _Stop:
            log.write("guardctl broker: stopped\n")
            return 0
        finally:
            pool.stop()


def _answer_signed(stack: contextlib.ExitStack, answers: AnswerSettings, log: IO[str]) -> None:
    """Open the answers listener (`answers`) in a process of its own, for the stack's life."""
    from guardctl.approvals.signed import require_cryptography
    from guardctl.broker import answers as answering
    from guardctl.broker import remote

    require_cryptography()
    listener = remote.listen(answers.host, answers.port, BACKLOG)
    address = answering.url(answers, listener)
    stack.enter_context(answering.serving(answers, listener, lambda line: _journal(2, line)))
    log.write(f"guardctl broker: answers on {address} (POST /v1/approvals/ID, signed by an "
              "approver key)\n")


class _Pool:
    """Workers forked ahead of their requests: each warms itself up, then waits in accept().

    A fork of the warm server shares its memory until it writes, and a Python process writes
    wherever it touches an object (reference counts): the first request a fresh fork serves
    pays a page fault for every page it touches, half of a worker's time before kubectl
    starts. A spare pays that while it waits (`warm_up`), so a request finds a worker ready.
    A spare that takes a connection says so on a pipe, and the server forks the next, but
    not at once: a warm-up takes a CPU from the request that is starting (kubectl's own
    start-up is the longest part of it). While a request runs, only an empty pool is
    refilled; the others follow when no request is running.
    """

    def __init__(
        self, run: Callable[[int], None], spares: int = SPARES, limit: int = MAX_WORKERS,
        on_end: Callable[[], None] | None = None, private: tuple[int, ...] = (),
    ) -> None:
        self._run = run
        # told when a busy worker ended (its request's records are written)
        self._on_end = on_end
        # the server's own descriptors a worker must not keep open (the shipper's pipe)
        self._private = private
        self._spares = spares
        self._limit = limit
        self._taken_read, self._taken_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.spares: set[int] = set()
        self.busy: set[int] = set()
        # a pidfd of each busy worker, readable once it ends (Linux 5.3+; else -1, and
        # `wait` asks every POLL_SECONDS instead)
        self._ends: dict[int, int] = {}

    def fill(self) -> None:
        """Fork spares up to their number, while fewer than `limit` workers live: past it,
        connections wait in the socket's backlog until a worker ends."""
        wanted = self._spares if not self.busy else 1
        while len(self.spares) < wanted and len(self.spares) + len(self.busy) < self._limit:
            # a SIGTERM between the fork and the bookkeeping would stop the server with a
            # spare it does not know of, left waiting in accept() forever: it waits for both
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                pid = os.fork()
                if pid == 0:
                    # a child must never unwind into the server's frames (whose `finally`
                    # blocks would remove the socket): whatever happens, it ends here
                    try:
                        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                        for fd in (self._taken_read, *self._ends.values(), *self._private):
                            if fd >= 0:
                                os.close(fd)
                        self._run(self._taken_write)
                    finally:
                        os._exit(1)
                self.spares.add(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def wait(self, seconds: float) -> bool:
        """Wait for a spare to take a connection or a busy worker to end (True), or for
        `seconds` (False); reap the workers that ended meanwhile."""
        ends = [fd for fd in self._ends.values() if fd >= 0]
        if self.busy and len(ends) < len(self.busy):
            seconds = min(seconds, POLL_SECONDS)
        ready, _, _ = select.select([self._taken_read, *ends], [], [], seconds)
        if self._taken_read in ready:
            try:
                data = os.read(self._taken_read, 4096)
            except BlockingIOError:
                data = b""
            for start in range(0, len(data) - 3, 4):
                self._taken(int.from_bytes(data[start : start + 4], sys.byteorder))
        self._reap()
        return bool(ready)

    def _taken(self, pid: int) -> None:
        if pid not in self.spares:
            return
        self.spares.discard(pid)
        self.busy.add(pid)
        try:
            self._ends[pid] = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux 5.3+, or it ended already
            self._ends[pid] = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.spares.discard(pid)  # a spare that died idle is replaced by `fill`
            if pid in self.busy and self._on_end is not None:
                self._on_end()
            self.busy.discard(pid)
            end = self._ends.pop(pid, -1)
            if end >= 0:
                os.close(end)

    def stop(self) -> None:
        """End the idle spares; workers serving a request finish it."""
        for pid in self.spares:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.spares.clear()


def _spare(
    listeners: list[socket.socket], accept_on: list[socket.socket], taken: int, serving: Serving
) -> None:
    """A spare worker: warm up, take one connection (from `accept_on`), tell the server,
    serve it; never returns."""
    try:
        os.setsid()  # its own session: a Ctrl-C at the broker's terminal stops the server only
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)  # idle: ends quietly
        if not _waiting(accept_on):
            warm_up(serving.environ)
        conn = _accept(accept_on)
        accepted_at = time.clock_gettime(time.CLOCK_BOOTTIME)
        os.write(taken, os.getpid().to_bytes(4, sys.byteorder))
        os.close(taken)
        for listener in listeners:
            listener.close()
    except BaseException:  # noqa: BLE001 - a spare must end here, never in the server's loop
        os._exit(1)
    _worker(conn, serving, accepted_at)


def _waiting(listeners: list[socket.socket]) -> bool:
    """Whether a connection already waits: then a spare takes it at once. Warming up pays
    ahead, while nobody waits, what the request would pay; with requests queued (many agents
    at once) it only delays each of them by a whole warm-up, one spare after another."""
    ready, _, _ = select.select(listeners, [], [], 0)
    return bool(ready)


def _open_to(listeners: list[socket.socket], busy: int, has_socket: bool) -> list[socket.socket]:
    """The listeners a new spare takes connections from (the Unix socket's first): all of
    them, but only the socket once few workers are left, so that TCP clients, which hold a
    worker for a while before they have shown any token, cannot take every worker from the
    local agents and approvers."""
    if has_socket and len(listeners) > 1 and busy >= MAX_WORKERS - SOCKET_RESERVE:
        return listeners[:1]
    return listeners


def _accept(listeners: list[socket.socket]) -> socket.socket:
    """The next connection on any of the (non-blocking) listeners; spares race for it."""
    while True:
        ready, _, _ = select.select(listeners, [], [])
        for listener in ready:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another spare took it
            conn.setblocking(True)
            return conn


def warm_up(environ: dict[str, str]) -> None:
    """Touch, without effects, what a request's worker touches: decide, mask, read settings."""
    import io
    import threading

    from guardctl.broker import inputs
    from guardctl.env import Environment
    from guardctl.masking import detectors, mask
    from guardctl.recording import audit
    from guardctl.running import creds, invoke, kubeconfig, runner

    quiet = io.StringIO()
    env = Environment(stdin=io.StringIO(), stdout=quiet, stderr=quiet, environ=environ)
    argv = ["get", "pods", "-n", "dev", "-o", "wide"]
    with contextlib.suppress(Exception):
        threading.Thread(target=int).start()  # the caller's reader thread starts like this
        decision = invoke.decide_invocation(env, invoke.read_invocation(env, argv))
        call = decision.commands[0].call
        if call is not None:  # what the broker refuses and the files it asks the client for
            inputs.refusal(call)
            inputs.needed(call)
        masker = mask.masker_for(argv, detectors.default_detectors())
        masker.feed(b"NAME   READY   STATUS\nweb    1/1     Running\n")
        masker.flush()
        runner.find_kubectl(env)
        kubeconfig.sweep_stale(env)  # the private folders of killed runs (see invoke._started)
        config = creds.require_config(env)
        cache = creds.kernel_cache(env, config)
        if cache is not None:
            cache.load()
        # the records' own code, written nowhere: a temporary log would sync a key, a head
        # and two records, a third of the warm-up, taken from whatever runs meanwhile
        audit.AuditLog(audit.log_path(env.state_dir)).rehearse(["kubectl", *argv], decision)


def _reach_warnings(path: Path, access: Access) -> list[str]:
    """Folders above the socket that other accounts cannot pass through (the usual reason an
    agent gets "permission denied" although the socket names it)."""
    if not (access.agent_users or access.agent_groups or access.approvers - {access.owner}):
        return []
    closed = [
        str(folder) for folder in path.parents
        if folder.exists() and not folder.stat().st_mode & 0o001
    ]
    return [
        f"{folder} is closed to other accounts (no o+x): agents cannot reach the socket through "
        f"it; `chmod o+x {folder}` or choose another --socket" for folder in closed
    ]


def _still_ours(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


# --------------------------------------------------------------------------- a worker


def _receive(conn: socket.socket) -> tuple[bytes | None, list[int]]:
    """The request frame's body and the three descriptors that came with it."""
    head, fds = receive_with_fds(conn, wire.HEADER, 3)
    if len(head) != wire.HEADER or head[:1] != wire.REQUEST or len(fds) != 3:
        return None, fds
    size = int.from_bytes(head[1:], "big")
    if size > wire.MAX_REQUEST:
        return None, fds
    return receive_exactly(conn, size), fds


def _send(conn: socket.socket, tag: bytes, body: bytes) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(wire.frame(tag, body))


class _Connection:
    """Where a worker's frames go (the client's socket, or over TCP the relay's end) and,
    over TCP, the relay that must send the last of them before the worker exits."""

    def __init__(self, conn: socket.socket) -> None:
        self.frames = conn
        self.link: Link | None = None

    def close(self) -> None:
        if self.link is not None:
            self.link.close()


def _worker(conn: socket.socket, serving: Serving, accepted_at: float) -> None:
    """Serve one request and exit; never returns into the accept loop."""
    code = 13
    reported = False
    connection = _Connection(conn)
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # kubectl's exit must be waited for
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, exit_on_signal)  # `finally` blocks run: records, temp files
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if conn.family == socket.AF_UNIX:
            code = _local_request(conn, serving, accepted_at)
        else:
            code = _remote_request(conn, serving, connection)
        reported = True  # _serve_request sent the exit status in every case
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a worker must end here, never in the accept loop
        code = 1
    try:
        flush_standard_streams()
        if not reported:
            _send(connection.frames, wire.EXIT, b"%d" % code)
    finally:
        try:
            connection.close()
        finally:
            os._exit(code)


def _local_request(conn: socket.socket, serving: Serving, accepted_at: float) -> int:
    """A client on the Unix socket: the kernel says who it is; its streams come as fds."""
    peer = identify(conn, accepted_at)
    role = serving.access.role(peer)
    conn.settimeout(REQUEST_SECONDS)  # a client that connects and says nothing
    try:
        body, fds = _receive(conn)
    except OSError:
        body, fds = None, []
    conn.settimeout(None)
    if body is None or role is None:
        for fd in fds:
            os.close(fd)
        _refuse(conn, peer, role, body is None)
        os._exit(2 if body is None else 13)
    return _serve_request(conn, peer, role, body, fds, serving)


def _remote_request(conn: socket.socket, serving: Serving, connection: _Connection) -> int:
    """A client over TCP: TLS and a token say who it is (always an agent); its streams
    travel as frames through the relay (`remote`)."""
    from guardctl.broker import remote

    assert serving.tcp is not None  # a TCP connection comes only from its listener
    try:
        opened = remote.open_request(conn, serving.tcp, serving.environ)
    except remote.Refusal as refusal:
        _journal(2, str(refusal))
        os._exit(refusal.code)
    link = remote.Link(opened.tls)
    connection.frames, connection.link = link.local, link
    return _serve_request(link.local, opened.agent, AGENT, opened.body, link.fds, serving, link,
                          opened.recheck)


def _refuse(conn: socket.socket, peer: Peer, role: str | None, unreadable: bool) -> None:
    if role is None:
        _journal(2, f"refused {peer.user} (uid {peer.uid}): not an agent or approver")
    if unreadable:
        _unreadable(conn)
        return
    message = (
        f"guardctl: this broker does not serve {peer.user} (uid {peer.uid}): whoever runs it can "
        f"add `--agent-user {peer.user}`"
    )
    _send(conn, wire.SAY, message.encode())
    _send(conn, wire.EXIT, b"13")


def _unreadable(conn: socket.socket) -> None:
    message = "guardctl: the broker could not read the request (a different guardctl version?)"
    _send(conn, wire.SAY, message.encode())
    _send(conn, wire.EXIT, b"2")


def _serve_request(
    conn: socket.socket,
    peer: Identity,
    role: str,
    body: bytes,
    fds: list[int],
    serving: Serving,
    link: Link | None = None,
    recheck: Callable[[], object] | None = None,
) -> int:
    """Run the request whose standard streams are `fds` (over TCP, `link`'s pipes, and
    `recheck` its token while it runs: `remote.watch_token`)."""
    from guardctl.broker.caller import Caller
    from guardctl.broker.worker import run_request

    try:
        cwd, args, environ, launcher = wire.decode_request(body)
    except wire.ProtocolError:
        for fd in fds:
            os.close(fd)
        _unreadable(conn)
        return 2
    journal = os.dup(2)  # the broker's own stderr, before the client's takes its place
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    caller = Caller(
        conn, peer, role, os.fsdecode(cwd), tuple(os.fsdecode(w) for w in launcher),
        before_exit=link.drain if link is not None else None, over_tcp=link is not None,
        journal=lambda line: _journal(journal, line),
    )
    words = [os.fsdecode(a) for a in args]
    if link is not None:
        from guardctl.broker.remote import reads_stdin, watch_token

        if reads_stdin(words):
            caller.send(wire.WANT)
        if recheck is not None:
            watch_token(recheck, lambda why: _end(caller, journal, why))
    started = time.monotonic()
    code = 1
    try:
        environ_now = command_environ(serving.environ, environ)
        code = run_request(caller, words, environ_now, serving.commands)
    except SystemExit as exc:  # a signal ended the command (see exit_on_signal)
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        caller.report(code)
        _journal(journal, f"{caller.describe()}: {_summary(words)} -> exit {code} "
                          f"({time.monotonic() - started:.2f} s)")
    return code


def _end(caller: Caller, journal: int, why: str) -> None:
    """End a TCP agent's request whose token no longer names it (`remote.watch_token`)."""
    if caller.end(f"the broker ended this command: {why}; get a new token from "
                  "`guardctl broker token create`"):
        _journal(journal, f"ended {caller.describe()}'s request: {why}")


def _summary(words: list[str]) -> str:
    """What a request ran, for the broker's log: the command, and kubectl's verb, never the
    arguments (they may hold values the audit log masks)."""
    first = words[0] if words else ""
    if first != "kubectl" and (first in guardctl_commands() or not first):
        return f"guardctl {first}".strip()
    from guardctl.firewall.normalize import normalize
    from guardctl.model import SimpleCommand

    kubectl_words = words[1:] if first == "kubectl" else words
    verb = normalize(SimpleCommand(argv=("kubectl", *kubectl_words))).verb
    return f"kubectl {verb}".strip()


def _journal(fd: int, line: str) -> None:
    """One line on the broker's stderr (a terminal, or systemd's journal)."""
    with contextlib.suppress(OSError):
        os.write(fd, f"guardctl broker: {line}\n".encode("utf-8", "replace"))


def command_environ(broker_environ: dict[str, str], requested: list[bytes]) -> dict[str, str]:
    """The variables a request's command sees: the broker's own, plus the few a client may
    choose (`AGENT_VARIABLES`); the client's others are never read."""
    environ = dict(broker_environ)
    for item in requested:
        name, _, value = item.partition(b"=")
        if os.fsdecode(name) in AGENT_VARIABLES:
            environ[os.fsdecode(name)] = os.fsdecode(value)
    environ.pop("GUARDCTL_BROKER", None)
    return environ
