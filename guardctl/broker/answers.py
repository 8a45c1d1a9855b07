"""`broker serve --answers-listen HOST:PORT`: where signed answers from off the machine arrive.

`POST /v1/approvals/ID` with an answer `guardctl approvals sign` made (`signed`): taken when a
registered approver key signed it over the digest of request ID as it waits, else refused
with a 4xx status and one line. Any other method is 405: a chat button that merely calls the
address answers nothing. Every answer, taken or refused, is one line in the broker's log.

The listener runs in a process of its own, forked by the broker at start: it shares nothing
with the workers but the state folder, where `queue.answer` takes the request's lock as the
local `guardctl approvals` does. It serves one connection at a time, each bounded in time
and size (an answer is a few hundred bytes). With the broker's `--tls-cert`/`--tls-key` it
speaks HTTPS (TLS 1.2 or later), else plain HTTP: keep it on loopback or a trusted network
then, since a signed answer needs no secrecy but the listener's address does no good to
strangers.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from guardctl.approvals.signed import MAX_ANSWER_BYTES, receive

PATH = re.compile(r"/v1/approvals/([A-Za-z0-9]{1,64})")
# how long one connection may take, from accept to the last byte of its answer
CONNECTION_SECONDS = 10.0


class Settings(NamedTuple):
    host: str
    port: int
    tls: ssl.SSLContext | None
    state_dir: Path


class _Server(http.server.HTTPServer):
    """An HTTPServer on a socket bound already, handshaking TLS on each connection."""

    def __init__(self, listener: socket.socket, settings: Settings,
                 journal: Callable[[str], None]) -> None:
        super().__init__(listener.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.settings = settings
        self.journal = journal

    def get_request(self) -> tuple[socket.socket, object]:
        conn, address = self.socket.accept()
        conn.settimeout(CONNECTION_SECONDS)
        if self.settings.tls is not None:
            try:
                conn = self.settings.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()
                raise
        return conn, address

    def handle_error(self, request: object, client_address: object) -> None:
        self.journal(f"answers: a connection from {_address(client_address)} failed")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "guardctl"
    sys_version = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        found = PATH.fullmatch(self.path)
        if found is None:
            self._reply(404, "not an answer's address: POST /v1/approvals/ID")
            return
        try:
            size = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            size = -1
        if not 0 < size <= MAX_ANSWER_BYTES:
            self._answered(found[1], 411 if size <= 0 else 413, "give the answer's JSON, "
                           "as `guardctl approvals sign` makes it")
            return
        body = self.rfile.read(size)
        reply = receive(self.server.settings.state_dir, found[1], body, time.time())
        self._answered(found[1], reply.status, reply.message)

    def _refuse_method(self) -> None:
        found = PATH.fullmatch(self.path)
        message = "answers must be POSTed and signed (`guardctl approvals sign`)"
        if found is None:
            self._reply(405, message)
        else:
            self._answered(found[1], 405, message)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _refuse_method  # noqa: N815

    def _answered(self, request_id: str, status: int, message: str) -> None:
        verdict = message if status < 300 else f"refused: {message}"
        self.server.journal(f"answer to {request_id[:12]} from "
                            f"{_address(self.client_address)}: {verdict} (HTTP {status})")
        self._reply(status, message)

    def _reply(self, status: int, message: str) -> None:
        data = (message + "\n").encode("utf-8", "replace")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - its name
        pass  # `_answered` writes the line that matters


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "?"


def url(settings: Settings, listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    scheme = "https" if settings.tls is not None else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@contextlib.contextmanager
def serving(
    settings: Settings, listener: socket.socket, journal: Callable[[str], None]
) -> Iterator[int]:
    """Serve answers on `listener` in a forked process for the block; yields its pid. The
    process dies with the broker, even one killed outright (`lifeline`)."""
    from guardctl.running.lifeline import die_with_this_process

    tie = die_with_this_process()
    pid = os.fork()
    if pid == 0:
        try:
            if tie is not None:
                tie()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            _Server(listener, settings, journal).serve_forever()
        finally:
            os._exit(1)
    listener.close()
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
