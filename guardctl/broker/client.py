"""The agent's side of the broker: a thin client that sends the command and waits.

When a broker is configured (`GUARDCTL_BROKER=PATH`, or `broker: PATH` in guardctl's config
file), every guardctl command goes to it and nothing runs here: kubectl invocations,
`check`, `mask`, the hook, and (for an approver) approvals, sessions, replay, audit, creds
and rules. The client sends its argv, working directory, the few variables a broker takes
(`server.AGENT_VARIABLES`) and its three standard streams; it answers the broker's requests
for local inputs (`localfiles`), passes on the signals it gets, and exits with the status
the broker sends. A broker that is configured but cannot be reached means exit 13 with one
line saying so: there is no falling back to running here.

`GUARDCTL_BROKER=https://HOST:PORT` reaches a broker over TCP (`broker.remote`): TLS 1.2 or
later, the broker's certificate verified against `GUARDCTL_BROKER_CA` (a PEM file; the
system's CAs when unset) and its host name; the token read from the file
`GUARDCTL_BROKER_TOKEN_FILE` names (never from a variable, which every child would inherit).
The standard streams travel as frames (`tlsrelay`).

Only these run in this process: `--help`/`--version`, `broker serve` (the broker itself),
`devserver`, `demo`, `shim`, `completion`, `uninstall` (this account's own files), `mcp` (an
adapter whose tools are clients again) and `doctor` (which reports on this side and asks the
broker how it sees us). `sh -c` is both: the broker decides the line and holds the grant, and
bash runs here, as the agent, its kubectl calls coming back through the broker.

Imports only interpreter built-ins, like the fork client: it is on every command's path.
"""

import _signal
import _socket
import os
import sys

from guardctl.broker import wire
from guardctl.runtime import SignalRelay, launcher

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import socket

# the client's variables a request carries; the broker takes these and no others (they choose
# nothing of the policy, credentials or records: the session a command is recorded in, and
# the one-time grant of a line a human approved)
AGENT_VARIABLES = ("GUARDCTL_SESSION", "GUARDCTL_PREAPPROVED")
LOCAL_COMMANDS = frozenset({"devserver", "demo", "shim", "mcp", "doctor", "completion",
                            "uninstall"})
LOCAL_OPTIONS = frozenset({"-h", "--help", "--version"})
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGWINCH)
STANDARD_FDS = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
UNSAFE = 13


def runs_here(args: "list[str]") -> bool:
    """True for the commands this process runs itself even with a broker (see above)."""
    if not args:
        return False
    if args[0] in LOCAL_OPTIONS or args[0] in LOCAL_COMMANDS:
        return True
    # `approvals sign` reads the signer's private key: never in the broker's process
    return args[:2] in (["broker", "serve"], ["approvals", "sign"])


def _error(message: str) -> int:
    sys.stderr.write(f"guardctl: {message}\n")
    sys.stderr.flush()
    return UNSAFE


def _unreachable(path: str, err: OSError) -> str:
    import errno

    if err.errno in (errno.EACCES, errno.EPERM):
        return (f"the broker at {path} does not let this account connect (permission denied); "
                "nothing was run. Whoever runs it can add `--agent-user` for this account")
    return (f"the broker at {path} cannot be reached ({err.strerror or err}); nothing was run. "
            f"Start it with `guardctl broker serve --socket {path}`, or ask whoever runs it")


class _Connection(SignalRelay):
    """The socket to the broker, and the signals passed on over it (SIGNAL frames)."""

    signals = FORWARDED_SIGNALS

    def send(self, tag: bytes, body: bytes = b"") -> None:
        self.sock.sendall(wire.frame(tag, body))

    def forward(self, signum: int, _frame: object) -> None:
        try:
            self.send(wire.SIGNAL, bytes((signum,)))
        except OSError:
            pass


def run(args: "list[str]", path: str) -> int:
    """Run `guardctl ARGS` through the broker at `path`; its exit status. Never raises:
    whatever goes wrong here is one line and exit 13 (130 for Ctrl-C)."""
    try:
        return _run(args, path)
    except KeyboardInterrupt:
        sys.stderr.write("guardctl: interrupted\n")
        return 130
    except Exception as err:  # noqa: BLE001 - the client's one error boundary
        return _error(f"the broker client failed ({type(err).__name__}: {err}); nothing more ran")


def _run(args: "list[str]", path: str) -> int:
    remote = "://" in path
    sock: _socket.socket
    if remote:
        opened = _connect_tls(path)  # a socket.socket is a _socket.socket
        if isinstance(opened, str):
            return _error(opened)
        sock = opened
    else:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as err:
            sock.close()
            return _error(_unreachable(path, err))
    try:
        cwd = os.fsencode(os.getcwd())
    except OSError:
        cwd = b"?"
    environ = [
        os.fsencode(name) + b"=" + os.fsencode(os.environ[name])
        for name in AGENT_VARIABLES
        if name in os.environ
    ]
    # the words that start this guardctl, for a line the hook rewrites to `guardctl sh`
    starts = [os.fsencode(w) for w in launcher()] if args[:1] == ["hook"] else []
    request = wire.encode_request(cwd, [os.fsencode(a) for a in args], environ, starts)
    with _Connection(sock) as link:
        try:
            if remote:  # the token went first; the streams travel as frames
                sock.sendall(request)
            else:
                sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, STANDARD_FDS)])
        except OSError as err:
            return _error(f"the broker at {path} refused the request ({err.strerror or err})")
        return _serve(link, path)


def _connect_tls(url: str) -> "socket.socket | str":
    """The local end of a relay to the broker at `url` (`https://HOST:PORT`), its token sent;
    or the one line saying why there is none."""
    import socket
    import ssl

    from guardctl.broker.tlsrelay import Relay

    scheme, _, rest = url.partition("://")
    host, _, port = rest.rstrip("/").rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if scheme != "https" or not host or not port.isdigit() or "/" in rest.rstrip("/"):
        return (f"GUARDCTL_BROKER={url} is neither a socket path nor https://HOST:PORT (a broker "
                "is reached over TCP with TLS only); nothing was run")
    token = _token()
    if not isinstance(token, bytes):
        return token
    ca = os.environ.get("GUARDCTL_BROKER_CA")
    try:
        context = ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as err:
        return f"cannot read GUARDCTL_BROKER_CA={ca}: {getattr(err, 'strerror', None) or err}"
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        raw = socket.create_connection((host, int(port)), timeout=30)
    except OSError as err:
        return (f"the broker at {url} cannot be reached ({err.strerror or err}); nothing was run. "
                "Ask whoever runs it")
    try:
        tls = context.wrap_socket(raw, server_hostname=host)
        tls.settimeout(None)
        tls.sendall(wire.frame(wire.AUTH, token))
    except ssl.SSLCertVerificationError as err:
        raw.close()
        return (f"the broker at {url} could not be verified ({err.verify_message}); nothing was "
                "run. Set GUARDCTL_BROKER_CA to the CA file that signed its certificate")
    except (OSError, ssl.SSLError) as err:
        raw.close()
        return f"no TLS session with the broker at {url} ({err}); nothing was run"
    local, far = socket.socketpair()
    Relay(tls, far, sinks={wire.STDOUT: 1, wire.STDERR: 2}, wanted=0, owns_fds=False,
          in_order=True).start()
    return local


def _token() -> "bytes | str":
    """The token in the file GUARDCTL_BROKER_TOKEN_FILE names (empty when unset: the broker
    refuses, and logs it); or the one line saying why it cannot be read."""
    path = os.environ.get("GUARDCTL_BROKER_TOKEN_FILE")
    if not path:
        return b""
    try:
        with open(path, "rb") as token_file:
            return token_file.read(4096).strip()
    except OSError as err:
        return (f"cannot read the token file GUARDCTL_BROKER_TOKEN_FILE={path} "
                f"({err.strerror or err}); nothing was run")


def _serve(link: _Connection, path: str) -> int:
    """Answer the broker's frames until it sends the exit status."""
    reader = wire.Reader(link.sock.recv)
    while True:
        try:
            tag, body = reader.next()
        except (EOFError, OSError, wire.ProtocolError):
            return _error(f"the broker at {path} ended without an exit status")
        if tag == wire.EXIT:
            return int(body) if body.isdigit() else UNSAFE
        if tag == wire.SAY:
            sys.stderr.write(body.decode("utf-8", "replace") + "\n")
            sys.stderr.flush()
        elif tag == wire.NEED:
            _send_input(link, body)
        elif tag == wire.GRANT:
            _run_line(link, body)
        elif tag == wire.PUT:
            _put(link, body)


def _send_input(link: _Connection, body: bytes) -> None:
    from guardctl.broker.localfiles import InputError, collect

    mode, expand, path = body.split(b"\0", 2)
    try:
        entries = collect(os.fsdecode(path), mode.decode("ascii"), expand == b"1")
    except (InputError, UnicodeDecodeError, ValueError) as err:
        link.send(wire.DONE, str(err).encode("utf-8", "replace"))
        return
    for name, data in entries:
        link.send(wire.FILE, os.fsencode(name) + b"\0" + data)
    link.send(wire.DONE, b"ok")


def _run_line(link: _Connection, body: bytes) -> None:
    """`sh -c`: the broker decided (and had a human approve) the line; bash runs it here."""
    from guardctl.agents.bash import run_line

    token, _, line = body.partition(b"\0")
    status = run_line(os.fsdecode(line), token.decode("ascii"))
    link.send(wire.BASH, b"%d" % status)


def _put(link: _Connection, body: bytes) -> None:
    """`kubectl cp` from a pod: write one file the broker copied, as the agent."""
    from guardctl.broker.localfiles import InputError, put

    target, name, data = body.split(b"\0", 2)
    try:
        put(os.fsdecode(target), os.fsdecode(name), data)
    except (InputError, OSError) as err:
        _error(f"cannot write {os.fsdecode(target)}: {err}")
