"""asciicast v2: the recording format of guardctl's casts (format only, no files).

A cast is newline-delimited JSON: one header object, then one event per line,
`[time, code, data]`, time in seconds since the recording began. Codes: "o" output,
"i" input (guardctl never records input), "m" marker (data is its label), "r" resize
("COLSxROWS").

Compatibility facts this module relies on:

- asciinema 2.4 writes events with `json.dumps(..., ensure_ascii=False, separators=(", ",
  ": "))` and times rounded to 6 decimals; we write the same bytes, so its golden files and
  ours look alike. It stops reading at an empty line: we never write one.
- asciinema 2.4 reads the header with `dict.get` and asciinema 3.x deserializes it into a
  struct without `deny_unknown_fields`: both ignore unknown header keys, so guardctl's own
  metadata lives under the single key "guardctl". asciinema 3.x reads `timestamp` as an
  unsigned integer, so it is written as an int.
- There is no "env" key, ever: a header must not carry the environment.

Several invocations of one session append to one cast; `resume_time` says where the next
invocation's clock starts so that times never go backwards.
"""

import codecs
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, Any, NamedTuple

from guardctl.model import Decision

VERSION = 2
OUTPUT, INPUT, MARKER, RESIZE = "o", "i", "m", "r"
# asciinema 2.4 writes microsecond precision; more digits would only be noise
TIME_DIGITS = 6


class CastError(ValueError):
    """Text that is not a well-formed asciicast v2 header or event."""


class Event(NamedTuple):
    time: float
    code: str
    data: str


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def header(
    width: int,
    height: int,
    timestamp: int,
    *,
    title: str | None = None,
    command: str | None = None,
    idle_time_limit: float | None = None,
    meta: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The header object; guardctl's own keys (`meta`) go under "guardctl"."""
    head: dict[str, Any] = {
        "version": VERSION,
        "width": width,
        "height": height,
        "timestamp": int(timestamp),
    }
    optional = {"idle_time_limit": idle_time_limit, "command": command, "title": title}
    head.update({k: v for k, v in optional.items() if v is not None})
    if meta:
        head["guardctl"] = dict(meta)
    return head


def decision_meta(session: str, decision: Decision | None = None) -> dict[str, object]:
    """guardctl's header keys: the session and, when known, the first invocation's decision."""
    meta: dict[str, object] = {"session": session}
    if decision is not None:
        meta["decision"] = decision.action.value
        meta["rules"] = rule_ids(decision)
    return meta


def rule_ids(decision: Decision) -> list[str]:
    """Every rule id that fired, in order, each once."""
    ids = (hit.id for command in decision.commands for hit in command.hits)
    return list(dict.fromkeys(ids))


def decision_label(decision: Decision) -> str:
    """The marker label at a decision: `decision: deny by delete-namespace`."""
    ids = rule_ids(decision)
    suffix = f" by {', '.join(ids)}" if ids else ""
    return f"decision: {decision.action.value}{suffix}"


# how an approval was given (the approvals' `Outcome.how`), as a replay says it
_HOW = {"queue": "with guardctl approvals", "inline": "at guardctl's terminal"}
COMMAND_PREFIX = "$ "


def approval_label(
    outcome: str,
    approver: str | None = None,
    *,
    how: str = "",
    tty: str | None = None,
    reason: str = "",
) -> str:
    """The marker label at an approval: who answered, where, and what they said.

    `approval: approved by alice with guardctl approvals (approved once)`,
    `approval: declined by bob at /dev/pts/3 (declined at the terminal)`,
    `approval: not given (timed out after 5m)`.
    """
    where = f"at {tty}" if how == "inline" and tty else _HOW.get(how, "")
    words = [f"approval: {outcome}", f"by {approver}" if approver else "", where]
    label = " ".join(w for w in words if w)
    return f"{label} ({reason})" if reason else label


def command_label(line: str) -> str:
    """The marker label when an invocation starts: `$ kubectl get pods`."""
    return COMMAND_PREFIX + line


def command_of(label: str) -> str | None:
    """The command line of a `command_label` marker; None for any other marker."""
    return label[len(COMMAND_PREFIX):] if label.startswith(COMMAND_PREFIX) else None


def onlcr(text: str) -> str:
    """`text` as a terminal's output processing (onlcr, on in cooked mode) shows it: each
    "\\n" is written as "\\r\\n". A bare "\\n" in a cast is a staircase in asciinema
    and asciinema-player: the next line starts where the last one ended."""
    return text.replace("\n", "\r\n")


def encode_header(head: Mapping[str, object]) -> str:
    """One header line, newline included."""
    if "env" in head:
        raise CastError("a cast header must not carry the environment ('env')")
    return _dumps(dict(head)) + "\n"


def encode_event(time: float, code: str, data: str) -> str:
    """One event line, newline included: `[0.5, "o", "text"]`."""
    return _dumps([round(float(time), TIME_DIGITS), code, data]) + "\n"


def read_header(line: str) -> dict[str, Any]:
    """Parse and check the first line of a cast."""
    try:
        head = json.loads(line)
    except ValueError as exc:
        raise CastError(f"the header is not JSON: {exc}") from None
    if not isinstance(head, dict) or head.get("version") != VERSION:
        raise CastError("not an asciicast v2 header")
    for key in ("width", "height"):
        if not _is_int(head.get(key)):
            raise CastError(f"the header's {key!r} is not an integer")
    return head


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode_event(line: str) -> Event:
    """Parse one event line."""
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise CastError(f"an event is not JSON: {exc}") from None
    if not (isinstance(raw, list) and len(raw) == 3):
        raise CastError("an event is not a [time, code, data] array")
    time, code, data = raw
    if isinstance(time, bool) or not isinstance(time, (int, float)) or time < 0:
        raise CastError("an event time is not a non-negative number")
    if not (isinstance(code, str) and code and isinstance(data, str)):
        raise CastError("an event code or data is not a string")
    return Event(float(time), code, data)


def read_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the lines after the header (a text file object works).

    A last line without its newline that does not parse is the torn tail of a write cut
    short (SIGKILL mid-write): the valid prefix before it is returned and the tail dropped.
    Any other malformed line raises CastError with its line number (header = line 1).
    """
    for number, line in enumerate(lines, start=2):
        if not line.endswith("\n"):
            try:
                yield decode_event(line)
            except CastError:
                return
            return
        if line.strip():
            try:
                yield decode_event(line)
            except CastError as exc:
                raise CastError(f"line {number}: {exc}") from None


def split_lines(text: str) -> list[str]:
    """Lines of a cast with their newlines. Only "\\n" ends a line: U+2028, U+0085 and a
    bare "\\r" are data (json.dumps leaves U+2028 raw with ensure_ascii=False), so
    `str.splitlines` would cut events apart."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def resume_time(head: Mapping[str, object], last_time: float, now: float) -> float:
    """Where the next invocation's clock starts in an existing cast.

    Wall time since the header's timestamp, so a replay (with its idle limit) shows the real
    gap between invocations, but never before the last event: a clock set back must not
    make times run backwards.
    """
    started = head.get("timestamp")
    if isinstance(started, bool) or not isinstance(started, int):
        return last_time
    return max(last_time, now - started)


class Writer:
    """Streams events to a text IO, flushing after each so a killed process leaves a valid
    prefix.

    `clock` is read once at construction and at each event; event times are `start` plus
    the clock's progress, never decreasing. `header` is written before the first event, so
    a writer that records nothing writes nothing. Output arrives as bytes per named stream,
    each with its own incremental UTF-8 decoder: a character split across two reads is
    written whole, not as two U+FFFD. With `onlcr` (output read from pipes, not a pty) each
    "\\n" becomes "\\r\\n", as a terminal's output processing would show it.

    Example::

        with Writer(io, time.monotonic, header=header(80, 24, int(time.time()))) as w:
            w.marker("decision: allow")
            w.output(b"NAME   READY\\n")
    """

    def __init__(
        self,
        out: IO[str],
        clock: Callable[[], float],
        *,
        start: float = 0.0,
        header: Mapping[str, object] | None = None,
        onlcr: bool = False,
    ) -> None:
        self._out = out
        self._clock = clock
        self._origin = clock()
        self._start = start
        self._last = start
        self._header = encode_header(header) if header is not None else None
        self._onlcr = onlcr
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}

    @property
    def last_time(self) -> float:
        return self._last

    def output(self, data: bytes | str, stream: str = "stdout", at: float | None = None) -> None:
        """Record output; bytes may end inside a UTF-8 character. `at`: the clock's reading
        when it was printed, for output written later (default: now)."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self._emit_output(self._decoder(stream).decode(raw), at)

    def marker(self, label: str, at: float | None = None) -> None:
        self._event(MARKER, label, at)

    def resize(self, cols: int, rows: int) -> None:
        self._event(RESIZE, f"{cols}x{rows}")

    def close(self) -> None:
        """Write what the decoders still hold (an incomplete character becomes U+FFFD)."""
        for decoder in self._decoders.values():
            self._emit_output(decoder.decode(b"", final=True))

    def __enter__(self) -> "Writer":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _decoder(self, stream: str) -> codecs.IncrementalDecoder:
        if stream not in self._decoders:
            self._decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
        return self._decoders[stream]

    def _emit_output(self, text: str, at: float | None = None) -> None:
        if text:
            self._event(OUTPUT, onlcr(text) if self._onlcr else text, at)

    def _event(self, code: str, data: str, at: float | None = None) -> None:
        now = self._clock() if at is None else at
        self._last = max(self._last, self._start + now - self._origin)
        line = encode_event(self._last, code, data)
        if self._header is not None:
            line, self._header = self._header + line, None
        self._out.write(line)
        self._out.flush()
