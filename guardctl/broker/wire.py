"""The broker's wire format: tagged frames on a Unix stream socket, or on TLS over TCP.

A frame is one ASCII tag byte, a 4-byte big-endian length and that many bytes. The client
opens with a request frame (`REQUEST`) sent together with its standard streams (SCM_RIGHTS,
fds 0, 1 and 2): the broker's worker writes masked output straight into the agent's own
pipes or terminal and reads its stdin, so no output is relayed twice. The request body is
NUL-separated words (no argument or variable can hold a NUL):

    PROTOCOL, cwd, n, arg_1 … arg_n, m, NAME=value_1 … NAME=value_m, k, launcher_1 … launcher_k

Then, while the command runs:

    broker -> client  NEED    mode NUL path: send me these local inputs (see `broker.inputs`)
    client -> broker  FILE    relative name NUL contents (one per file of the input)
    client -> broker  DONE    "ok", or why the input could not be read
    client -> broker  SIGNAL  one byte: a signal the client got (SIGINT, SIGTERM, SIGHUP, SIGWINCH)
    broker -> client  GRANT   `sh -c`: the one-time grant token for the line's bash (may be empty)
    client -> broker  BASH    `sh -c`: bash's exit status, after it ended
    broker -> client  PUT     `cp` from a pod: relative name NUL contents, written by the client
    broker -> client  SAY     a line for the client to print on its stderr (a refusal)
    broker -> client  EXIT    the exit status, in decimal; the last frame

Over TCP (`broker.remote`) no descriptor can be passed: the client opens with an AUTH frame
(its token, possibly empty) before the request, and the standard streams travel as frames:

    client -> broker  AUTH    the bearer token; the first frame
    broker -> client  WANT    the command reads stdin: send it (only then does the client read it)
    client -> broker  STDIN   a chunk of the client's stdin; empty at its end
    broker -> client  STDOUT  a chunk of the command's (masked) stdout
    broker -> client  STDERR  a chunk of its stderr

Read by the client on every command, so with interpreter built-ins alone.
"""

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROTOCOL = b"guardctl-broker-1"
REQUEST, NEED, FILE, DONE, SIGNAL, GRANT, BASH, PUT, SAY, EXIT = (
    b"Q", b"N", b"F", b"D", b"S", b"G", b"B", b"P", b"M", b"X"
)
AUTH, WANT, STDIN, STDOUT, STDERR = b"A", b"I", b"0", b"1", b"2"
HEADER = 5
# a request is argv, a few variables and launcher words; inputs come in FILE frames
MAX_REQUEST = 4 * 1024 * 1024
# one FILE or PUT frame: one file of at most an input's whole budget, with its name
MAX_FRAME = 64 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something this side cannot read; the connection is dropped."""


def frame(tag: bytes, body: bytes = b"") -> bytes:
    return tag + len(body).to_bytes(4, "big") + body


def encode_request(
    cwd: bytes, args: "Sequence[bytes]", environ: "Sequence[bytes]", launcher: "Sequence[bytes]"
) -> bytes:
    words = [
        PROTOCOL,
        cwd,
        b"%d" % len(args),
        *args,
        b"%d" % len(environ),
        *environ,
        b"%d" % len(launcher),
        *launcher,
    ]
    return frame(REQUEST, b"\0".join(words))


def decode_request(body: bytes) -> "tuple[bytes, list[bytes], list[bytes], list[bytes]]":
    """(cwd, args, NAME=value items, launcher words); ProtocolError for anything else."""
    words = body.split(b"\0")
    if len(words) < 2 or words[0] != PROTOCOL:
        raise ProtocolError("unknown protocol")
    cwd, rest = words[1], words[2:]
    sections: list[list[bytes]] = []
    for _ in range(3):
        if not rest or not rest[0].isdigit():
            raise ProtocolError("malformed count")
        count = int(rest[0])
        if len(rest) < 1 + count:
            raise ProtocolError("count out of range")
        sections.append(rest[1 : 1 + count])
        rest = rest[1 + count :]
    if rest:
        raise ProtocolError("trailing words")
    args, environ, launcher = sections
    for item in environ:
        name, sep, _value = item.partition(b"=")
        if not sep or not name:
            raise ProtocolError("malformed variable")
    return cwd, args, environ, launcher


class Reader:
    """Frames from a socket (or anything with `recv`), one at a time."""

    def __init__(self, recv: "Callable[[int], bytes]", limit: int = MAX_FRAME) -> None:
        self._recv = recv
        self._limit = limit
        self._buffer = b""

    def _exactly(self, size: int) -> bytes:
        if len(self._buffer) < size:
            parts = [self._buffer]
            have = len(self._buffer)
            while have < size:
                chunk = self._recv(max(65536, min(size - have, 1 << 20)))
                if not chunk:
                    raise EOFError("the peer closed the connection")
                parts.append(chunk)
                have += len(chunk)
            self._buffer = b"".join(parts)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def next(self) -> "tuple[bytes, bytes]":
        """(tag, body) of the next frame; EOFError at the end, ProtocolError when too big."""
        head = self._exactly(HEADER)
        size = int.from_bytes(head[1:], "big")
        if size > self._limit:
            raise ProtocolError("frame too large")
        return head[:1], self._exactly(size)
