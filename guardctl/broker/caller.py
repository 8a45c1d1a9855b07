"""The worker's view of the client that called the broker: who it is, and its connection.

A worker serves one request. Its `Caller` says who asked (the kernel's peer identity and the
role the broker gave it, the working directory the client reported) and carries the
connection: local inputs fetched from the client (`fetch`), the grant for `sh -c`, files
put on the client's side (`kubectl cp` from a pod). One thread reads the client's frames
for the whole request: files go into the one input being fetched (bounded as the client
bounds them; files nobody asked for are dropped), bash's status to its queue, signals the
client got are raised in the worker, and the client's end (killed, gone) is a SIGTERM, as it
would be to a guardctl running in the client's own process.
"""

import contextlib
import os
import queue
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

from guardctl.broker import inputs, wire
from guardctl.broker.localfiles import MAX_BYTES, MAX_COPY_BYTES, MAX_FILES, InputError
from guardctl.broker.peer import AGENT, APPROVER
from guardctl.model import KubectlCall
from guardctl.routing import flush_standard_streams
from guardctl.status import ExitStatus

# signals a client may pass on; anything else it sends is ignored
RELAYED_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH})
# how long a fetch waits for the client to send one input
FETCH_TIMEOUT = 120.0


class _Input(NamedTuple):
    entries: list[tuple[str, bytes]]
    error: str | None


class _Receiving:
    """One input on its way from the client: its files, bounded as the client bounds them
    (a client that sends more, or sends files nobody asked for, only loses them)."""

    def __init__(self, path: str, mode: str) -> None:
        self.path = path
        self.limit = MAX_COPY_BYTES if mode == "copy" else MAX_BYTES
        self.entries: list[tuple[str, bytes]] = []
        self.size = 0
        self.error: str | None = None
        self.done = threading.Event()

    def add(self, data: bytes) -> None:
        name, _, content = data.partition(b"\0")
        self.size += len(content)
        if self.error is not None:
            return
        if self.size > self.limit or len(self.entries) >= MAX_FILES:
            self.error = f"{self.path}: more than {self.limit} bytes or {MAX_FILES} files of input"
            self.entries.clear()
            return
        self.entries.append((os.fsdecode(name), content))

    def end(self, status: str) -> None:
        if self.error is None and status != "ok":
            self.error = status
        self.done.set()

    def result(self) -> _Input:
        return _Input([], self.error) if self.error is not None else _Input(self.entries, None)


class Identity(Protocol):
    """Who called: a local peer (`peer.Peer`, the kernel's word) or an agent that connected
    over TCP with a token (`remote.RemoteAgent`)."""

    @property
    def user(self) -> str: ...

    @property
    def name(self) -> str: ...

    def describe(self, role: str) -> str: ...


class Caller:
    """Who called, and the open connection to them (see the module docstring).

    `before_exit` runs before the exit status is sent: over TCP (`over_tcp`) it sends what
    is left of the command's output first (`remote.Link.drain`). `journal` writes one line
    on the broker's own log (the process's stderr is the client's)."""

    def __init__(
        self, conn: socket.socket, peer: Identity, role: str, cwd: str,
        launcher: tuple[str, ...], before_exit: Callable[[], None] | None = None,
        over_tcp: bool = False, journal: Callable[[str], None] | None = None,
    ) -> None:
        self.peer = peer
        self.journal = journal
        self.role = role
        self.cwd = cwd
        self.launcher = launcher
        self._conn = conn
        self._before_exit = before_exit
        self.over_tcp = over_tcp
        self._send_lock = threading.Lock()
        self._receiving: _Receiving | None = None  # the input being fetched, if any
        self._bash: queue.Queue[int | None] = queue.Queue()
        self._fetched: dict[tuple[str, str, bool], _Input] = {}
        self._download: tuple[str, Path] | None = None  # kubectl cp from a pod: (local, copy)
        self._reported = False
        self._ended: str | None = None  # why the broker ended the request (`end`)
        self._end_lock = threading.Lock()
        self._gone = False  # the client closed the connection
        self._granted = False  # a line was handed to the client's bash; its status is due
        self.finished = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def user(self) -> str:
        return self.peer.user

    @property
    def is_approver(self) -> bool:
        return self.role == APPROVER

    @property
    def agent(self) -> str | None:
        """The agent's name for the audit log (its account, or its token's name); None for
        an approver."""
        return self.peer.name if self.role == AGENT else None

    def describe(self) -> str:
        """`alice (uid 1001, agent)`: for the human and the audit log."""
        return self.peer.describe(self.role)

    # ---- frames

    def send(self, tag: bytes, body: bytes = b"") -> None:
        with self._send_lock:
            self._conn.sendall(wire.frame(tag, body))

    def _read(self) -> None:
        reader = wire.Reader(self._conn.recv)
        try:
            while True:
                tag, body = reader.next()
                receiving = self._receiving
                if tag == wire.FILE and receiving is not None:
                    receiving.add(body)
                elif tag == wire.DONE and receiving is not None:
                    receiving.end(body.decode("utf-8", "replace"))
                elif tag == wire.SIGNAL and body and body[0] in RELAYED_SIGNALS:
                    os.kill(os.getpid(), body[0])
                elif tag == wire.BASH and body.isdigit() and self._granted:
                    self._granted = False  # one status per line run
                    self._bash.put(int(body))
        except (EOFError, OSError, wire.ProtocolError):
            pass
        if self._receiving is not None:
            self._receiving.end(f"{self._receiving.path}: the client went away")
        self._gone = True
        self._bash.put(None)
        if not self.finished.is_set():
            os.kill(os.getpid(), signal.SIGTERM)  # the client is gone: stop as it would

    # ---- inputs

    def fetch(self, path: str, mode: str, expand: bool = False) -> list[tuple[str, bytes]]:
        """The client's copy of a local input; InputError says why there is none.

        Asked once per (path, mode): what the decision read is what kubectl gets.
        """
        key = (path, mode, expand)
        if key not in self._fetched:
            self._fetched[key] = self._ask(path, mode, expand)
        found = self._fetched[key]
        if found.error is not None:
            raise InputError(found.error)
        return found.entries

    def fetched(self) -> dict[tuple[str, str], list[tuple[str, bytes]]]:
        """(path, mode) -> entries of every input fetched without an error."""
        return {(p, m): f.entries for (p, m, _), f in self._fetched.items() if f.error is None}

    def _ask(self, path: str, mode: str, expand: bool) -> _Input:
        receiving = _Receiving(path, mode)
        if self._gone:
            return _Input([], f"{path}: the client went away")
        self._receiving = receiving
        try:
            body = b"\0".join((mode.encode(), b"1" if expand else b"0", os.fsencode(path)))
            self.send(wire.NEED, body)
            if not receiving.done.wait(FETCH_TIMEOUT):
                return _Input([], f"{path}: the client did not send it in time")
            return receiving.result()
        finally:
            self._receiving = None

    # ---- kubectl's inputs (see broker.inputs)

    def reader(self, expand: bool) -> Callable[[str, bool], list[tuple[str, str]] | None]:
        """The policy's manifest reader: files come from the client, read as the agent."""
        return inputs.text_reader(self.fetch, expand)

    def renderer(self, expand: bool, cache_dir: Path) -> Callable[[str], str | None]:
        """The policy's kustomize renderer: the folder comes from the client, read as the
        agent, and is rendered from a private copy (renders kept in the broker's
        `cache_dir`)."""
        return inputs.tree_renderer(self.fetch, expand, cache_dir)

    def refusal(self, call: KubectlCall, plugins: frozenset[str] = frozenset()) -> str | None:
        if self.over_tcp:
            from guardctl.broker.remote import tty_refusal

            reason = tty_refusal(call)
            if reason is not None:
                return reason
        return inputs.refusal(call, plugins)

    def prefetch(self, call: KubectlCall) -> str | None:
        """Fetch every local input of `call`; why one cannot be had, or None."""
        for need in inputs.needed(call):
            try:
                self.fetch(need.path, need.mode)
            except InputError as err:
                return str(err)
        return None

    def rewrites(self, call: KubectlCall) -> bool:
        """Whether `kubectl_argv` changes `call`'s words: a local input to copy, or the local
        destination of a `kubectl cp` from a pod."""
        return bool(inputs.needed(call)) or inputs.cp_sides(call) is not None

    def kubectl_argv(self, call: KubectlCall, argv: tuple[str, ...], root: Path) -> tuple[str, ...]:
        """kubectl's arguments with each local input replaced by its copy under `root`, and
        the local destination of a `kubectl cp` from a pod by a private folder there. (A
        `-k DIR` stays: kubectl gets the kustomization rendered for the decision instead.)"""
        needs = [need for need in inputs.needed(call) if need.flag != "kustomize"]
        for need in needs:
            self.fetch(need.path, need.mode)  # the copy already made when it was decided
        words = inputs.materialize(argv, needs, self.fetched(), root)
        sides = inputs.cp_sides(call)
        if sides is None or sides.upload:
            return words
        target = inputs.download_target(root, call)
        self._download = (sides.local, target)
        index = call.arg_words[sides.position]
        return (*words[:index], str(target), *words[index + 1 :])

    def deliver(self) -> str | None:
        """After a `kubectl cp` from a pod: send what it copied to the client, which writes
        it as the agent. Why it could not, or None."""
        if self._download is None:
            return None
        destination, target = self._download
        try:
            files = inputs.copied_files(target, MAX_COPY_BYTES)
        except (OSError, ValueError) as err:
            return f"cannot hand over the copy: {err}"
        for name, data in files:
            self.send(wire.PUT, b"\0".join((os.fsencode(destination), os.fsencode(name), data)))
        return None

    # ---- sh -c

    def grant(self, token: str, line: str) -> None:
        """Let the client run `line` with bash, its kubectl calls covered by `token`."""
        line_bytes = line.encode("utf-8", "surrogateescape")
        self._granted = True
        self.send(wire.GRANT, token.encode("ascii") + b"\0" + line_bytes)

    def wait_bash(self) -> int | None:
        """bash's exit status once the client reports it; None when the client went away."""
        return self._bash.get()

    # ---- the end

    def say(self, message: str) -> None:
        self.send(wire.SAY, message.encode("utf-8", "replace"))

    def report(self, code: int) -> None:
        """Send the command's exit status, once (later calls do nothing): the client goes on
        while the worker still writes the records that follow a run. A request the broker
        ended (`end`) exits 13, after a line saying why."""
        with self._end_lock:
            if self._reported:
                return
            self._reported = True
        self.finished.set()
        flush_standard_streams()
        if self._before_exit is not None:
            self._before_exit()
        with contextlib.suppress(OSError):
            if self._ended is not None:
                self.say(f"guardctl: {self._ended}")
                code = ExitStatus.UNSAFE
            self.send(wire.EXIT, b"%d" % code)

    def end(self, why: str) -> bool:
        """End the request from another thread, as a SIGTERM from the client would (kubectl
        is stopped, the records are written), and tell the client `why` with its exit
        status; False when its status was sent already (nothing is left to end)."""
        with self._end_lock:
            if self._reported:
                return False
            self._ended = why
            os.kill(os.getpid(), signal.SIGTERM)
            return True
