"""Frames between a TLS connection and the code that speaks the broker's wire format.

An `ssl.SSLSocket` must not be read in one thread while another writes it (one OpenSSL
object, no lock), and both sides of the broker read and write from several threads (the
caller's reader, the command, signal handlers). So one thread, the relay, owns the TLS
socket; the rest of the code talks to the other end of a Unix socket pair, exactly as it
talks to a broker over a Unix socket. The relay also carries the standard streams, which a
TCP connection cannot pass as descriptors (see `wire`): bytes read from `sources` become
frames (STDOUT/STDERR on the broker's side, STDIN on the client's) and the bodies of frames
named in `sinks` are written to their descriptor (an empty body closes it, when the relay
owns its descriptors: the broker's pipes, not the client's own streams). A WANT frame is
taken by the relay itself: from then on it reads `wanted` (the client's stdin) as STDIN.
With `in_order` (the client), a frame for the local side waits until what came before it for
the sinks was written: the exit status never overtakes the last of the output.

Both directions are bounded: a side is not read while what it sent waits to be written.

Used by the client on every command over TCP: built-in and standard modules only.
"""

import os
import select
import socket
import ssl
import threading

from guardctl.broker import wire

CHUNK = 65536
# bytes waiting for one destination before its sources are no longer read
BACKLOG = 1 << 20
# one write to a pipe or terminal select() called writable never blocks up to this size
PIPE_CHUNK = 4096


class _Frames:
    """Whole frames out of a byte stream (a frame is only passed on whole)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> "list[tuple[bytes, bytes]]":
        self.buffer += data
        found = []
        while len(self.buffer) >= wire.HEADER:
            size = int.from_bytes(self.buffer[1 : wire.HEADER], "big")
            if size > wire.MAX_FRAME:
                raise wire.ProtocolError("frame too large")
            if len(self.buffer) < wire.HEADER + size:
                break
            tag = bytes(self.buffer[:1])
            found.append((tag, bytes(self.buffer[wire.HEADER : wire.HEADER + size])))
            del self.buffer[: wire.HEADER + size]
        return found


class Relay:
    """The relay thread's state; `start()` runs it, `join()` waits for its end."""

    def __init__(
        self, tls: ssl.SSLSocket, local: socket.socket, *,
        sources: "dict[int, bytes] | None" = None, sinks: "dict[bytes, int] | None" = None,
        wanted: "int | None" = None, owns_fds: bool = True, in_order: bool = False,
    ) -> None:
        self.tls = tls
        self.local = local
        self.sources = dict(sources or {})  # fd -> the tag its bytes travel under
        self.sinks = dict(sinks or {})  # tag -> fd its bodies are written to
        self.wanted = wanted
        self.owns_fds = owns_fds
        self.in_order = in_order
        self.held = bytearray()  # in order: frames for the local side behind sink data
        self.to_tls = bytearray()
        self.to_local = bytearray()
        self.to_sink: dict[int, bytearray] = {fd: bytearray() for fd in self.sinks.values()}
        self.closing: set[int] = set()  # sinks to close once written
        self.from_tls = _Frames()
        self.from_local = _Frames()
        self.tls_wants_write = False  # OpenSSL must write before it can read (rare)
        self.local_open = True
        self.tls_open = True
        self.sources_done = threading.Event()  # every source reached its end
        if not self.sources:
            self.sources_done.set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.tls.setblocking(False)
        self.local.setblocking(False)
        self._thread.start()

    def join(self, seconds: float) -> None:
        self._thread.join(seconds)

    # ---- the loop

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except (OSError, wire.ProtocolError):
            pass
        finally:
            for fd in (*self.to_sink, *self.sources):
                self._close(fd)
            try:
                self.local.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sources_done.set()

    def _step(self) -> bool:
        """One round of select and transfers; False when the relay is done."""
        if not self.local_open and not self.to_tls:
            self._close_tls()
            return False
        sinks_pending = any(self.to_sink.values())
        if self.held and not sinks_pending:
            self.to_local += self.held
            self.held.clear()
        if not self.tls_open and not self.to_local and not self.held and not sinks_pending:
            return False  # the other side ended, and everything it sent was passed on
        readers: list[socket.socket | int] = []
        writers: list[socket.socket | int] = []
        sinks_full = any(len(b) > BACKLOG for b in self.to_sink.values())
        if self.tls_open and len(self.to_local) + len(self.held) < BACKLOG and not sinks_full:
            readers.append(self.tls)
        if len(self.to_tls) < BACKLOG:
            if self.local_open:
                readers.append(self.local)
            readers.extend(self.sources)
        if self.tls_open and (self.to_tls or self.tls_wants_write):
            writers.append(self.tls)
        if self.to_local:
            writers.append(self.local)
        writers.extend(fd for fd, data in self.to_sink.items() if data)
        pending = self.tls in readers and self.tls.pending() > 0
        ready_r, ready_w, _ = select.select(readers, writers, [], 0 if pending else None)
        if pending or self.tls in ready_r or (self.tls_wants_write and self.tls in ready_w):
            self.tls_open = self._read_tls()
        if self.local in ready_r:
            self._read_local()
        for fd in list(self.sources):
            if fd in ready_r:
                self._read_source(fd)
        if self.tls in ready_w and self.to_tls:
            self._write_tls()
        if self.local in ready_w:
            del self.to_local[: self.local.send(self.to_local[:CHUNK])]
        for fd in list(self.to_sink):
            if fd in ready_w:
                self._write_sink(fd)
        return True

    def _read_tls(self) -> bool:
        """Take what the TLS side sent; False when it ended (the other side is gone)."""
        self.tls_wants_write = False
        while True:
            try:
                data = self.tls.recv(CHUNK)
            except ssl.SSLWantReadError:
                return True
            except ssl.SSLWantWriteError:
                self.tls_wants_write = True
                return True
            except (ssl.SSLError, OSError):
                data = b""
            if not data:
                return False
            for tag, body in self.from_tls.feed(data):
                self._route(tag, body)

    def _route(self, tag: bytes, body: bytes) -> None:
        if tag in self.sinks:
            fd = self.sinks[tag]
            if fd in self.to_sink and fd not in self.closing:
                if body:
                    self.to_sink[fd] += body
                else:
                    self.closing.add(fd)
                    self._write_sink(fd)
        elif tag == wire.WANT and self.wanted is not None:
            self.sources[self.wanted] = wire.STDIN
            self.wanted = None
        elif self.in_order and any(self.to_sink.values()):
            self.held += wire.frame(tag, body)
        else:
            self.to_local += wire.frame(tag, body)

    def _read_local(self) -> None:
        data = self.local.recv(CHUNK)
        if not data:
            self.local_open = False
            return
        for tag, body in self.from_local.feed(data):
            self.to_tls += wire.frame(tag, body)

    def _read_source(self, fd: int) -> None:
        try:
            data = os.read(fd, CHUNK)
        except OSError:
            data = b""
        tag = self.sources[fd]
        self.to_tls += wire.frame(tag, data)
        if not data:  # its end: an empty frame says so
            del self.sources[fd]
            self._close(fd)
            if not self.sources:
                self.sources_done.set()

    def _write_tls(self) -> None:
        try:
            sent = self.tls.send(self.to_tls[:CHUNK])
        except ssl.SSLWantWriteError:
            return
        except ssl.SSLWantReadError:
            return  # it reads when select says so; the write is tried again then
        del self.to_tls[:sent]

    def _write_sink(self, fd: int) -> None:
        data = self.to_sink.get(fd)
        if data is None:
            return
        if data:
            try:
                del data[: os.write(fd, data[:PIPE_CHUNK])]
            except OSError:  # nobody reads it any more: drop what comes for it
                data.clear()
                self.closing.add(fd)
        if not data and fd in self.closing:
            del self.to_sink[fd]
            self._close(fd)

    def _close(self, fd: int) -> None:
        if self.owns_fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _close_tls(self) -> None:
        """Everything was sent: say so (close_notify), without waiting for the peer's."""
        try:
            self.tls.unwrap()
        except (OSError, ValueError):
            pass
