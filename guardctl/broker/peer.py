"""Who is calling the broker, in the kernel's words, and in which role the broker sees them.

The kernel tells the broker who connected (`SO_PEERCRED`: pid, uid, gid; `SO_PEERGROUPS`:
supplementary groups); nothing the peer says about itself counts. Roles:

* **approver**: the broker's own uid, or an `--approver-user`, in the broker's own
  namespaces. Approvals, windows, sessions, replay, audit, credentials, rules.
* **agent**: an `--agent-user`, a member of an `--agent-group`, or a process of an approver
  account that runs in other user, mount, PID, network, IPC or UTS namespaces (a sandboxed
  agent of the same person, e.g. under bubblewrap). kubectl runs, `check`, `mask`, the hook.
* anyone else is refused.

"In the broker's namespaces" must be proven, not assumed: the peer's namespace links are read
from /proc while a pidfd of the peer (`SO_PEERPIDFD`) shows the process is still the one that
connected, so a pid reused by another process cannot lend its namespaces. Where the kernel
has no SO_PEERPIDFD, the process's start time must not be after the connection was accepted.
Anything that cannot be read counts as "other namespaces": at most an agent.
"""

import os
import signal
import socket
import sys
import time
from collections.abc import Iterable
from typing import NamedTuple

from guardctl.accounts import group_name, user_name

APPROVER, AGENT = "approver", "agent"
# the namespaces a peer must share to count as "in the broker's namespaces"; cgroups are
# left out (resource limits, not reach), and so is `time`, which older kernels lack
NAMESPACES = ("user", "mnt", "pid", "net", "ipc", "uts")
# Linux socket options Python does not name on every version
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)
MAX_GROUPS = 65536


class Peer(NamedTuple):
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]
    # True only when every namespace link of the peer was read and equals the broker's
    same_namespaces: bool

    @property
    def user(self) -> str:
        return user_name(self.uid)

    @property
    def name(self) -> str:
        """The name an agent goes by in the audit log: its account."""
        return self.user

    def describe(self, role: str) -> str:
        """`alice (uid 1001, agent)`: for the human and the audit log."""
        return f"{self.user} (uid {self.uid}, {role})"


def _groups(conn: socket.socket) -> tuple[int, ...]:
    size = 256 * 4
    while size <= MAX_GROUPS * 4:
        try:
            raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as err:
            if err.errno == 34:  # ERANGE: more groups than the buffer holds
                size *= 4
                continue
            return ()
        return tuple(
            int.from_bytes(raw[i : i + 4], sys.byteorder) for i in range(0, len(raw) - 3, 4)
        )
    return ()


def _pidfd(conn: socket.socket) -> int | None:
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4)
    except OSError:
        return None
    return int.from_bytes(raw, sys.byteorder, signed=True)


def _namespaces_equal(pid: int) -> bool:
    try:
        return all(
            os.readlink(f"/proc/{pid}/ns/{name}") == os.readlink(f"/proc/self/ns/{name}")
            for name in NAMESPACES
        )
    except OSError:
        return False


def _alive(pidfd: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except OSError:
        return False
    return True


def _started_by(pid: int, moment: float) -> bool:
    """The process `pid` started no later than `moment` (CLOCK_BOOTTIME seconds)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            fields = stat_file.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return False
    # fields after the command name start at field 3; starttime (clock ticks) is field 22
    ticks = int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None
    if ticks is None:
        return False
    return ticks / os.sysconf("SC_CLK_TCK") <= moment


def identify(conn: socket.socket, accepted_at: float | None = None) -> Peer:
    """The peer of an accepted connection. `accepted_at` is CLOCK_BOOTTIME at accept()."""
    if accepted_at is None:
        accepted_at = time.clock_gettime(time.CLOCK_BOOTTIME)
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid, gid = (int.from_bytes(creds[i : i + 4], sys.byteorder) for i in (0, 4, 8))
    pidfd = _pidfd(conn)
    try:
        same = _namespaces_equal(pid) if pid > 0 else False
        if same:
            same = _alive(pidfd) if pidfd is not None else _started_by(pid, accepted_at)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return Peer(pid=pid, uid=uid, gid=gid, groups=_groups(conn), same_namespaces=same)


def receive_with_fds(conn: socket.socket, size: int, count: int) -> tuple[bytes, list[int]]:
    """The first `size` bytes of a message and the file descriptors sent with it
    (SCM_RIGHTS); the caller checks that there are `count` of them, and closes them."""
    from array import array

    fds: list[int] = []
    head, ancillary, _flags, _addr = conn.recvmsg(
        size, socket.CMSG_SPACE(count * array("i").itemsize)
    )
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array("i")
            received.frombytes(data[: len(data) - len(data) % received.itemsize])
            fds.extend(received)
    return head, fds


def receive_exactly(conn: socket.socket, size: int) -> bytes | None:
    """The next `size` bytes from `conn`; None when the peer stops sending before that."""
    body = bytearray()
    while len(body) < size:
        chunk = conn.recv(min(size - len(body), 1 << 16))
        if not chunk:
            return None
        body += chunk
    return bytes(body)


class Access(NamedTuple):
    """Who may use a broker: its owner, `--approver-user`s, `--agent-user`s, `--agent-group`s."""

    owner: int
    approvers: frozenset[int] = frozenset()
    agent_users: frozenset[int] = frozenset()
    agent_groups: frozenset[int] = frozenset()

    def role(self, peer: Peer) -> str | None:
        """APPROVER, AGENT, or None (refused)."""
        people = {self.owner, *self.approvers}
        if peer.uid in people and peer.same_namespaces:
            return APPROVER
        if peer.uid in people:
            return AGENT  # an approver's account in a sandbox: the agent it runs
        if peer.uid in self.agent_users:
            return AGENT
        if peer.gid in self.agent_groups or self.agent_groups.intersection(peer.groups):
            return AGENT
        return None

    def describe(self) -> str:
        def users(uids: Iterable[int]) -> str:
            return ", ".join(sorted(user_name(u) for u in uids)) or "none"

        groups = ", ".join(sorted(group_name(g) for g in self.agent_groups)) or "none"
        return (
            f"approvers: {users({self.owner, *self.approvers})}; "
            f"agents: users {users(self.agent_users)}, groups {groups}"
        )
