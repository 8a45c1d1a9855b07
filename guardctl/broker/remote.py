"""The broker over TCP: TLS, a bearer token per agent, the standard streams as frames.

`broker serve --listen HOST:PORT --tls-cert F --tls-key F` accepts agents over TCP beside (or
instead of) the Unix socket. A connection must complete a TLS handshake (TLS 1.2 or later)
and open with an AUTH frame holding a token that `broker token create` made (`tokens`); the
agent is then named by the token and is always an agent, never an approver: no kernel says
who is on the other end of a TCP connection, so approving stays on the broker's own host. A
missing, unknown, revoked or expired token is refused: one line to the client, exit 13, and
one line in the broker's log (never the token). A request keeps its token under watch while it
runs (`watch_token`): once the token is revoked or expires, what it runs is ended, as a
signal to the client would end it (a `logs -f` or an approval wait would otherwise outlive
the token). Refusals are not written to the audit log:
whoever can reach the port could otherwise fill the log, and take its lock, without any
credential; the audit log holds what agents did.

No descriptor crosses TCP, so the worker gives the command pipes for its standard streams,
and `tlsrelay.Relay` carries them as frames: output as STDOUT/STDERR, and stdin as STDIN,
which the client reads only when the broker asks for it (WANT: `reads_stdin`), so a command
that takes no input leaves the agent's stdin alone. An interactive terminal (`exec -t`,
`attach -t`, `run -t`) needs the client's terminal itself, and is refused over TCP.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from guardctl.broker import tokenreview, tokens, wire
from guardctl.broker.peer import receive_exactly
from guardctl.broker.tlsrelay import Relay
from guardctl.errors import UsageError
from guardctl.model import KubectlCall

# how long a TCP client has for the TLS handshake, its token and its request, all together:
# until then it holds a worker without having shown any credential
HELLO_SECONDS = 10.0
# how long the worker waits for the rest of its output before it sends the exit status
DRAIN_SECONDS = 30.0
# how long a finished worker waits for the relay to send the last frames
CLOSE_SECONDS = 30.0
# how often a running request checks that its token still names its agent
RECHECK_SECONDS = 2.0
# guardctl's own commands that read their stdin (`check` only with --batch)
STDIN_COMMANDS = frozenset({"mask", "hook"})
TTY_REFUSAL = (
    "an interactive terminal (-t) cannot cross the broker's TCP connection; run the command "
    "without -t, or through the broker's Unix socket"
)


class Tcp(NamedTuple):
    """`--listen HOST:PORT` with its TLS context, where the agents' tokens are kept, and the
    ServiceAccounts (`system:serviceaccount:NS:NAME`) whose own tokens are accepted."""

    host: str
    port: int
    context: ssl.SSLContext
    tokens: Path
    service_accounts: frozenset[str] = frozenset()


class RemoteAgent(NamedTuple):
    """An agent that connected over TCP, named by its token (or its ServiceAccount). Its
    `user` (the audit record's "user") says so, so that no token name reads as a local
    account (`root`): `token:NAME`, or the ServiceAccount's `system:serviceaccount:NS:NAME`."""

    name: str
    address: str  # host:port it connected from, for the broker's log

    @property
    def user(self) -> str:
        return self.name if ":" in self.name else f"token:{self.name}"

    def describe(self, role: str) -> str:
        return f"{self.name} (token, from {self.address}, {role})"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:PORT` for IPv6) -> (host, port); UsageError otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text!r} is not HOST:PORT (e.g. 0.0.0.0:8443)")
    return host, int(port)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.2 or later with this certificate chain and key; UsageError names the problem."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise UsageError(f"cannot use --tls-cert {cert} with --tls-key {key}: "
                         f"{getattr(err, 'strerror', None) or err}") from None
    return context


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on host:port; UsageError when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        listener = socket.socket(family, kind, proto)
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port}: {err}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(backlog)
    except OSError as err:
        listener.close()
        raise UsageError(f"cannot listen on {host}:{port}: {err.strerror or err}: choose "
                         "another --listen") from None
    return listener


def url(listener: socket.socket) -> str:
    """`https://HOST:PORT` of a listening socket (the port it was given, when 0 was asked)."""
    host, port = listener.getsockname()[:2]
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _address(conn: socket.socket) -> str:
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return "?"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Opened(NamedTuple):
    tls: ssl.SSLSocket
    agent: RemoteAgent
    body: bytes  # the request frame's body
    # checks the token again (tokens.Refused once it no longer names the agent); None for a
    # ServiceAccount's token, which the cluster vouched for when the connection opened
    recheck: Callable[[], object] | None


class Refusal(Exception):
    """The connection is not served: `log` for the broker's log, `say` (if any) for the
    client, `code` for the worker's exit."""

    def __init__(self, log: str, say: str | None = None, code: int = 13) -> None:
        super().__init__(log)
        self.say = say
        self.code = code


def _frame(tls: ssl.SSLSocket, tag: bytes, limit: int, keep: bool = True) -> bytes:
    """The body of the next frame, which must be `tag`; read and dropped unless `keep`."""
    head = receive_exactly(tls, wire.HEADER)
    if head is None or head[:1] != tag:
        raise Refusal("did not speak the broker's protocol", "guardctl: the broker could not "
                      "read the request (a different guardctl version?)", 2)
    size = int.from_bytes(head[1:], "big")
    if size > limit:
        raise Refusal("sent an unreadable request", None, 2)
    if not keep:
        while size > 0:
            chunk = tls.recv(min(size, 65536))
            if not chunk:
                break
            size -= len(chunk)
        return b""
    body = receive_exactly(tls, size)
    if body is None:
        raise Refusal("sent an unreadable request", None, 2)
    return body


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the block after `seconds` in all (a socket timeout bounds each
    read only: a client sending a byte now and then would hold the worker forever)."""

    def expire(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"no request within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def open_request(conn: socket.socket, tcp: Tcp, environ: dict[str, str],
                 seconds: float = HELLO_SECONDS) -> Opened:
    """TLS handshake, token and request within `seconds` in all; Refusal says why not (and
    the client was told, when it got as far as a TLS session). `environ`: the broker's own
    variables (a TokenReview runs kubectl with its credential)."""
    with _deadline(seconds):
        return _open(conn, tcp, environ, seconds)


def _reviewed(token: str, tcp: Tcp) -> bool:
    """Whether the cluster checks this token (a TokenReview), not the broker's own list."""
    return bool(tcp.service_accounts) and tokenreview.looks_like_jwt(token)


def identify(token: str, tcp: Tcp, environ: dict[str, str]) -> str:
    """The agent a token names: a Kubernetes token of an `--agent-service-account` by a
    TokenReview, any other by the broker's own tokens; tokens.Refused when none."""
    if _reviewed(token, tcp):
        return tokenreview.review(environ, token, tcp.service_accounts)
    return tokens.verify(tcp.tokens, token)


def watch_token(
    recheck: Callable[[], object], end: Callable[[str], None], seconds: float = RECHECK_SECONDS
) -> None:
    """Call `recheck` every `seconds` in a thread of the worker's; the first time it refuses
    (the token was revoked or expired, or the broker's tokens cannot be read: closed, as a
    new connection would be), `end(why)`, and stop watching. The thread ends with the
    worker."""

    def run() -> None:
        while True:
            time.sleep(seconds)
            try:
                recheck()
            except (tokens.Refused, UsageError) as why:
                end(str(why))
                return

    threading.Thread(target=run, name="token-watch", daemon=True).start()


def _open(conn: socket.socket, tcp: Tcp, environ: dict[str, str], seconds: float) -> Opened:
    address = _address(conn)
    conn.settimeout(seconds)
    try:
        tls = tcp.context.wrap_socket(conn, server_side=True)
    except (OSError, ssl.SSLError) as err:
        raise Refusal(f"refused {address}: no TLS handshake ({err})", None, 2) from None
    try:
        token = _frame(tls, wire.AUTH, 4096).decode("utf-8", "replace")
        try:
            name = identify(token, tcp, environ)
        except tokens.Refused:
            # nothing of an unknown caller is kept; the request is read only so that the
            # refusal reaches the client before the connection closes
            _frame(tls, wire.REQUEST, wire.MAX_REQUEST, keep=False)
            raise
        body = _frame(tls, wire.REQUEST, wire.MAX_REQUEST)
    except tokens.Refused as why:
        _say(tls, f"guardctl: the broker refused this agent: {why}; nothing was run. Put a "
                  "valid token from `guardctl broker token create` in the file "
                  "GUARDCTL_BROKER_TOKEN_FILE names")
        raise Refusal(f"refused {address} over TCP: {why}") from None
    except Refusal as refusal:
        if refusal.say is not None:
            _say(tls, refusal.say, refusal.code)
        raise Refusal(f"refused {address} over TCP: {refusal}", None, refusal.code) from None
    except (OSError, UsageError) as err:
        raise Refusal(f"refused {address} over TCP: {err}", None, 2) from None
    tls.settimeout(None)
    recheck = None if _reviewed(token, tcp) else functools.partial(tokens.verify, tcp.tokens,
                                                                   token)
    return Opened(tls, RemoteAgent(name, address), body, recheck)


def _say(tls: ssl.SSLSocket, line: str, code: int = 13) -> None:
    """The refusal, then the end (no close_notify: waiting for the client's would hold the
    worker; the client has its exit status before it sees the connection close)."""
    try:
        tls.sendall(wire.frame(wire.SAY, line.encode()) + wire.frame(wire.EXIT, b"%d" % code))
    except OSError:
        pass


class Link:
    """One TCP request's plumbing in the worker: the socket pair its code speaks frames on,
    pipes for the command's standard streams, and the relay between them and TLS."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.local, far = socket.socketpair()
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        # the worker puts these on its fds 0, 1 and 2 (and closes them)
        self.fds = [stdin_r, stdout_w, stderr_w]
        self.relay = Relay(tls, far, sources={stdout_r: wire.STDOUT, stderr_r: wire.STDERR},
                           sinks={wire.STDIN: stdin_w})
        self.relay.start()

    def drain(self) -> None:
        """Before the exit status: let go of the output pipes' last writers (fds 1 and 2 of
        the worker; kubectl ended) and wait until the relay sent all they held."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        self.relay.sources_done.wait(DRAIN_SECONDS)

    def close(self) -> None:
        """The worker is done: the relay sends what is left and ends the TLS session."""
        try:
            self.local.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.relay.join(CLOSE_SECONDS)


def reads_stdin(args: list[str]) -> bool:
    """Whether the command `guardctl ARGS` reads its stdin: `mask`, the hook, `check
    --batch`, and kubectl with `-i` or a `-` among its flag values (`-f -`)."""
    first = args[0] if args else ""
    if first in STDIN_COMMANDS:
        return True
    if first == "check":
        return "--batch" in args
    from guardctl.routing import is_kubectl

    if not first or not is_kubectl(first):
        return False
    call = _call(args[1:] if first == "kubectl" else args)
    return "true" in call.flags.get("stdin", ()) or any(
        "-" in values for values in call.flags.values()
    )


def _call(words: list[str]) -> KubectlCall:
    from guardctl.firewall.normalize import normalize
    from guardctl.model import SimpleCommand

    return normalize(SimpleCommand(argv=("kubectl", *words)))


def tty_refusal(call: KubectlCall) -> str | None:
    """Why a kubectl call is refused over TCP: it asks for a terminal (`-t`)."""
    return TTY_REFUSAL if "true" in call.flags.get("tty", ()) else None
