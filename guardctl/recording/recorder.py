"""Where casts live and how one invocation appends to its session's cast.

`$GUARDCTL_HOME/casts/<session>.cast` (file 0600, folder 0700). Every invocation of a
session appends to that one file, streaming its events while it holds an exclusive
`flock` on it, so a SIGKILL loses nothing that was already shown. An invocation that finds
the cast locked by another one still running (a `kubectl logs -f` in the background, or a
`guardctl sh -c` whose inner kubectl goes through guardctl again) does not wait for it:
it records into the first free overflow part, `<session>~2.cast`, `~3`, ... The audit
record names the file actually used. There is no limit on parts: a part is busy only while
a live process holds its lock, so a session has at most one more part than it has
invocations running at once, and a read is never refused for bookkeeping.

Order of use, so that a failed audit write leaves no orphan bytes in the cast::

    rec = open_recording(state_dir, session, ...)  # locks; writes nothing yet
    handle = audit_log.start(..., cast=rec.start_ref())
    rec.marker(...); rec.output(...)               # header written with the first event
    audit_log.finish(handle, ..., cast=rec.finish())
"""

import fcntl
import hashlib
import os
import re
import stat
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple

from guardctl.errors import UnsafeError, UsageError
from guardctl.recording import cast

CASTS = "casts"
SUFFIX = ".cast"
# a replay compresses longer pauses (e.g. hours between two invocations of one session)
IDLE_LIMIT = 3.0
# a cast removed (by `sessions prune`) as it is opened is opened again at most this often
MAX_REOPENS = 8
# parts of one session's cast: far more than processes that can run at once (a part is
# busy only while a live process holds it), a bound on the search all the same
MAX_PARTS = 100_000
# how far back from the end we read to find the last event line (events can be long)
TAIL_BLOCK = 64 * 1024
# room kept in a capped invocation's budget for the note of what was left out
NOTE_ROOM = 512
# the stream of guardctl's own text (that note, messages to the agent), apart from kubectl's
# (each stream has its own UTF-8 decoder)
NOTE_STREAM = "guardctl"
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Capped(NamedTuple):
    """The whole output of an invocation whose cast kept only its head and tail."""

    size: int  # bytes of (masked) output
    sha256: str
    left_out: int  # bytes of it not in the cast

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "sha256": self.sha256, "left_out": self.left_out}


class CastExtent(NamedTuple):
    """What one invocation's audit record says about its cast: the first `size` bytes of
    `file` (a name in the casts folder) hash to `sha256`; `output`, when the cast was capped,
    what the whole output was."""

    file: str
    size: int
    sha256: str
    output: Capped | None = None

    def to_json(self) -> dict[str, object]:
        found: dict[str, object] = {"file": self.file, "size": self.size, "sha256": self.sha256}
        if self.output is not None:
            found["output"] = self.output.to_json()
        return found


def cast_dir(state_dir: Path) -> Path:
    return state_dir / CASTS


def check_session_id(session: str) -> str:
    """A session id is a file name: letters, digits, `.`, `_`, `-`; no path, no `~`."""
    if not _SESSION_ID.fullmatch(session):
        raise UsageError(
            f"invalid session id {session!r} (GUARDCTL_SESSION): use 1-128 letters, digits,"
            " '.', '_' or '-', starting with a letter or digit"
        )
    return session


def session_cast(state_dir: Path, session: str) -> Path:
    """The main cast file of a session."""
    return cast_dir(state_dir) / f"{check_session_id(session)}{SUFFIX}"


def session_of(cast_name: str) -> str:
    """The session a cast file belongs to: `s1` for `s1.cast` and `s1~2.cast`."""
    return cast_name.removesuffix(SUFFIX).split("~", 1)[0]


def new_session_id(now: float | None = None) -> str:
    """A fresh id, sortable by time: `20260101T120000Z-1a2b3c4d`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    # os.urandom is what `secrets` draws from; importing `secrets` costs more than a run's
    # audit record
    return f"{stamp}-{os.urandom(4).hex()}"


def sha256_prefix(path: Path, size: int) -> str | None:
    """sha256 of the first `size` bytes of `path`; None when the file is shorter."""
    digest = hashlib.sha256()
    remaining = size
    with open(path, "rb") as f:
        while remaining > 0:
            block = f.read(min(remaining, 1024 * 1024))
            if not block:
                return None
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def _unsafe(path: Path, exc: OSError, started: bool = False) -> UnsafeError:
    consequence = "its recording is incomplete" if started else "the command was not run"
    return UnsafeError(f"cannot write the cast {path}: {exc.strerror or exc}: {consequence}")


def private_dir(folder: Path) -> None:
    """Create `folder` (and parents) as 0700 when missing."""
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)  # mkdir's mode is filtered by the umask


def _open_locked(path: Path) -> int | None:
    """An fd of `path` holding an exclusive lock, or None when another process holds it."""
    for _ in range(MAX_REOPENS):
        # O_NOFOLLOW: a symlink planted at the cast's name must not redirect our writes
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{path} is not a regular file")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _still_named(fd, path):
                os.fchmod(fd, 0o600)
                return fd
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # `sessions prune` removed the file between our open and our lock: what we would
        # write there would be lost, so open the name again (once per prune)
        os.close(fd)
    raise OSError(f"{path} was removed {MAX_REOPENS} times as it was opened")


def _still_named(fd: int, path: Path) -> bool:
    """Whether `path` is still the file open at `fd`."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def lock_if_idle(path: Path) -> int | None:
    """An fd of an existing cast holding its exclusive lock, or None when it is being
    written (or is gone); for `sessions prune`, which must not remove a cast in use."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _still_named(fd, path):
            return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def part_name(session: str, part: int) -> str:
    """The file name of a session's cast part: `S.cast`, then `S~2.cast`, `S~3.cast`, ..."""
    return f"{session}{SUFFIX}" if part == 1 else f"{session}~{part}{SUFFIX}"


def _claim(state_dir: Path, session: str) -> tuple[Path, int]:
    """The first part of the session's cast no live process holds, locked.

    Ends: each busy part is held by a process still running, and the first part nobody
    holds (at worst a new one) is free.
    """
    folder = session_cast(state_dir, session).parent
    private_dir(folder)
    for part in range(1, MAX_PARTS + 1):
        path = folder / part_name(session, part)
        fd = _open_locked(path)
        if fd is not None:
            return path, fd
    raise OSError(f"all {MAX_PARTS} cast files of session {session} are in use")


def _drop_torn_tail(fd: int) -> int:
    """Cut a last line left without its newline by a killed writer; returns the new size.

    Safe for the audit chain: no completed invocation ever recorded bytes past the last
    newline it wrote.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    keep = line_start(fd, size)
    os.ftruncate(fd, keep)
    return keep


def line_start(fd: int, end: int) -> int:
    """Offset just after the last "\\n" before `end` (0 if none), reading backwards."""
    pos = end
    while pos > 0:
        start = max(0, pos - TAIL_BLOCK)
        found = os.pread(fd, pos - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def _existing(fd: int, size: int, path: Path) -> tuple[dict[str, object], float]:
    """The header of a non-empty cast and the time of its last event."""
    first = os.pread(fd, min(size, TAIL_BLOCK), 0).split(b"\n", 1)[0]
    last_start = line_start(fd, size - 1)
    try:
        head = cast.read_header(first.decode("utf-8"))
        if last_start == 0:
            return head, 0.0
        last = os.pread(fd, size - last_start, last_start).decode("utf-8")
        return head, cast.decode_event(last).time
    except (cast.CastError, UnicodeDecodeError) as exc:
        raise UnsafeError(
            f"the cast {path} is not a valid asciicast v2 file ({exc}): the command was not "
            "run; keep a copy for `guardctl audit verify`, then move it away (or use another "
            "GUARDCTL_SESSION)"
        ) from None


class _Tail:
    """The last output of a capped invocation, kept in memory until it finishes: chunks
    (clock reading, stream, bytes) and what they would cost in the cast, oldest dropped
    first once the cost passes `budget`."""

    def __init__(self, budget: int, onlcr: bool) -> None:
        self.budget = budget
        self.onlcr = onlcr
        self.chunks: deque[tuple[float, str, bytes, int]] = deque()
        self.cost = 0
        self.left_out = 0

    def add(self, at: float, stream: str, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        cost = len(cast.encode_event(0.0, cast.OUTPUT, text).encode("utf-8"))
        if self.onlcr:
            cost += 2 * text.count("\n")  # each "\n" is written as "\r\n", escaped
        self.chunks.append((at, stream, data, cost))
        self.cost += cost
        while self.cost > self.budget and self.chunks:
            _, _, dropped, dropped_cost = self.chunks.popleft()
            self.cost -= dropped_cost
            self.left_out += len(dropped)


class Recording:
    """One invocation's events, appended to a locked session cast. Use `open_recording`.

    The first event it writes is the marker of its `command`, when given.

    With a `cap`, once this invocation's events take half of it the output goes to a tail
    kept in memory instead; `finish` writes a note of what was left out, then the tail, so
    the cast keeps the head and the tail (about `cap` bytes in all) and `finish`'s extent
    gives the whole output's size and sha256. A process killed while capped loses the tail.
    """

    def __init__(
        self,
        path: Path,
        fd: int,
        offset: int,
        writer: Callable[[IO[str]], cast.Writer],
        *,
        cap: int | None = None,
        onlcr: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        command: str | None = None,
    ):
        self.path = path
        self.offset = offset  # the cast's size before this invocation
        self._fd = fd
        # errors="replace": a label from argv may hold lone surrogates (undecodable bytes)
        self._text = open(fd, "a", encoding="utf-8", errors="replace", newline="", closefd=False)
        self._writer = writer(self._text)
        self._cap = cap
        self._onlcr = onlcr
        self._monotonic = monotonic
        self._seen = hashlib.sha256()
        self._seen_size = 0
        self._tail: _Tail | None = None
        # the invocation's first event: a replay shows it as the prompt line
        self._opening = cast.command_label(command) if command is not None else None

    def start_ref(self) -> dict[str, object]:
        """The cast part of the audit "started" record."""
        return {"file": self.path.name, "offset": self.offset}

    def output(self, data: bytes | str, stream: str = "stdout") -> None:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self._seen.update(raw)
        self._seen_size += len(raw)
        if self._tail is not None:
            self._tail.add(self._monotonic(), stream, raw)
            return
        self._guard(lambda: self._writer.output(raw, stream))
        if self._cap is not None:
            self._guard(self._check_cap)

    def _check_cap(self) -> None:
        assert self._cap is not None
        if os.fstat(self._fd).st_size - self.offset >= self._cap // 2:
            self._tail = _Tail(self._cap // 2 - NOTE_ROOM, self._onlcr)

    def _write_tail(self, tail: _Tail) -> None:
        """The note saying what was left out, then the tail."""
        if tail.left_out:
            # at the time of the first output kept after the gap, so the tail keeps its timing
            at = tail.chunks[0][0] if tail.chunks else None
            note = f"guardctl: {tail.left_out} bytes of output left out (cast-max-size)"
            self._writer.marker(note, at)
            self._writer.output(self._cooked(f"\n[{note}]\n"), NOTE_STREAM, at)
        for at, stream, data, _ in tail.chunks:
            self._writer.output(data, stream, at)

    def say(self, text: str) -> None:
        """Record guardctl's own text (a message to the agent), as the terminal shows it:
        guardctl writes it while the terminal is in cooked mode, so each "\\n" is shown as
        "\\r\\n" also when kubectl ran in a pty (whose output needs no such change)."""
        self.output(self._cooked(text), NOTE_STREAM)

    def _cooked(self, text: str) -> str:
        # the writer itself turns "\n" into "\r\n" with onlcr
        return text if self._onlcr else cast.onlcr(text)

    def marker(self, label: str) -> None:
        self._guard(lambda: self._writer.marker(label))

    def resize(self, cols: int, rows: int) -> None:
        self._guard(lambda: self._writer.resize(cols, rows))

    def finish(self) -> CastExtent:
        """Flush, fdatasync and hash what this cast holds now; then release the lock."""
        capped = None
        try:
            if self._tail is not None:
                self._write_tail(self._tail)
                capped = Capped(self._seen_size, self._seen.hexdigest(), self._tail.left_out)
            self._writer.close()
            os.fdatasync(self._fd)
            size = os.fstat(self._fd).st_size
            digest = sha256_prefix(self.path, size)
        except OSError as exc:
            raise _unsafe(self.path, exc, started=True) from None
        finally:
            self.close()
        return CastExtent(self.path.name, size, digest or "", capped)

    def close(self) -> None:
        """Release the lock and the file (idempotent; closing the fd drops the flock)."""
        if self._fd >= 0:
            try:
                self._text.close()
            except OSError:
                pass  # every event was flushed when written; a failure there already raised
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Recording":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _guard(self, write: Callable[[], None]) -> None:
        try:
            if self._opening is not None:
                self._writer.marker(self._opening)
                self._opening = None
            write()
        except OSError as exc:
            raise _unsafe(self.path, exc, started=True) from None


def open_recording(
    state_dir: Path,
    session: str,
    *,
    width: int = 80,
    height: int = 24,
    command: str | None = None,
    meta: Mapping[str, object] | None = None,
    onlcr: bool = False,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    cap: int | None = None,
) -> Recording:
    """Lock the session's cast (or a free overflow part) for appending one invocation.

    A new cast gets a header (written with the first event); an existing one is continued,
    its times resumed after its last event. `command` (the invocation's line) is the
    header's command in a new cast, and the label of the invocation's first event, a marker
    `$ COMMAND` (`cast.command_label`). `cap`: about how many bytes this invocation may
    add (see `Recording`; None: no cap). Raises UnsafeError when the cast cannot be written
    or is not a cast, UsageError for an invalid session id.
    """
    check_session_id(session)
    path = session_cast(state_dir, session)
    try:
        path, fd = _claim(state_dir, session)
    except OSError as exc:
        raise _unsafe(path, exc) from None
    try:
        return _recording(
            path, fd, session, width, height, command, meta, onlcr, clock, monotonic, cap
        )
    except BaseException:
        os.close(fd)
        raise


def _recording(
    path: Path,
    fd: int,
    session: str,
    width: int,
    height: int,
    command: str | None,
    meta: Mapping[str, object] | None,
    onlcr: bool,
    clock: Callable[[], float],
    monotonic: Callable[[], float],
    cap: int | None,
) -> Recording:
    try:
        size = _drop_torn_tail(fd)
    except OSError as exc:
        raise _unsafe(path, exc) from None
    now = clock()
    head: Mapping[str, object] | None = None
    start = 0.0
    if size:
        existing, last = _existing(fd, size, path)
        start = cast.resume_time(existing, last, now)
    else:
        head = cast.header(
            width, height, int(now), command=command, idle_time_limit=IDLE_LIMIT,
            meta={"session": session, **(meta or {})},
        )
    return Recording(
        path, fd, size,
        lambda out: cast.Writer(out, monotonic, start=start, header=head, onlcr=onlcr),
        cap=cap, onlcr=onlcr, monotonic=monotonic, command=command,
    )
