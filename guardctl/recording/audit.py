"""The audit log: `$GUARDCTL_HOME/audit.jsonl`, one hash-chained JSON record per line.

Each invocation writes two records, ahead of and after the command:

- "started" (before the command runs): time, session, user, cwd, line, argv, decision,
  rule ids, reason, approver, and the cast file with the offset its events start at;
- "completed": the started record's hash, exit code, duration, approver, and the cast's
  extent (`size` bytes and their sha256) when the invocation finished.

Lines are only ever appended. A process killed mid-run leaves its "started" record without
a completion: `sessions` shows it as incomplete and `verify` accepts it. Every record holds
`prev` (the previous record's hash; 64 zeros for the first) and `hash`, the sha256 of the
record's canonical JSON (sorted keys, no spaces, UTF-8) without `hash`; each line is written
in exactly that canonical form, so `verify` also rejects a record re-serialized by hand.

Appends take an exclusive `flock` on the log, write one O_APPEND `write` and fsync, so
concurrent guardctl processes interleave whole records and the chain stays linear. If the
log cannot be written the caller gets UnsafeError and must not run the command.

The chain is not keyed: it detects edits, deletions, reordering and truncation in the
middle of the log, not someone who rewrites the whole chain from some record on, and not
records removed from the end at a line boundary (that needs an anchor kept elsewhere).
"""

import fcntl
import hashlib
import json
import os
import pwd
import re
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from guardctl.bundled import data_text
from guardctl.errors import UnsafeError
from guardctl.masking.mask import mask_text, placeholder
from guardctl.model import Decision
from guardctl.recording import recorder

if TYPE_CHECKING:
    from datetime import datetime

LOG_NAME = "audit.jsonl"
GENESIS = "0" * 64
FORMAT = 1
# how long an append waits for another guardctl process holding the log's lock
LOCK_TIMEOUT = 10.0
LOCK_POLL = 0.01
STARTED, COMPLETED = "started", "completed"


def log_path(state_dir: Path) -> Path:
    return state_dir / LOG_NAME


# --------------------------------------------------------------------------- hashing


def canonical(record: Mapping[str, object]) -> bytes:
    """The one byte form of a record: sorted keys, no spaces, UTF-8."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def record_hash(record: Mapping[str, object]) -> str:
    """sha256 over the canonical JSON of the record without its `hash` key."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


# --------------------------------------------------------------------------- masking


class _SecretFlag(NamedTuple):
    name: str
    keep_key: bool


@lru_cache(maxsize=1)
def _secret_flags() -> dict[str, _SecretFlag]:
    raw = json.loads(data_text("secret_flags.json"))
    flags = (_SecretFlag(f["name"], bool(f["keep_key"])) for f in raw["flags"])
    return {f.name: f for f in flags}


def _clean(text: str) -> str:
    # argv from the OS may hold lone surrogates (undecodable bytes); JSON in UTF-8 cannot
    return text.encode("utf-8", "replace").decode("utf-8")


def _masked_value(flag: _SecretFlag, value: str) -> str:
    if flag.keep_key and "=" in value:
        key = value.split("=", 1)[0]
        return f"{key}={placeholder('flag-' + flag.name)}"
    return placeholder("flag-" + flag.name)


def _mask_words(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """argv with secret flag values masked, and the raw values that were masked."""
    flags = _secret_flags()
    out: list[str] = []
    hidden: list[str] = []
    pending: _SecretFlag | None = None  # a secret flag whose value is the next word
    for word in argv:
        if pending is not None:
            out.append(_masked_value(pending, word))
            hidden.append(word)
            pending = None
            continue
        name, eq, value = word.partition("=")
        flag = flags.get(name[2:]) if name.startswith("--") else None
        if flag is not None and eq:
            out.append(f"{name}={_masked_value(flag, value)}")
            hidden.append(value)
        else:
            pending = flag
            out.append(word)
    return out, hidden


def mask_argv(argv: Sequence[str]) -> list[str]:
    """argv as the audit log stores it: values of secret flags (--token, --password,
    --from-literal=KEY=..., see data/secret_flags.json) replaced by a placeholder, then
    every word through the output masker's detectors."""
    # detectors first: they would re-mask our placeholder in `--token=«masked:…»`
    return _mask_words([mask_text(_clean(w)) for w in argv])[0]


def mask_line(line: str, argv: Sequence[str]) -> str:
    """The shell line as stored: each secret flag value found in `argv` removed from it.

    A value the line spells differently (quoted, escaped, built by the shell) cannot be
    found for sure, so then the whole line is replaced: fail closed.
    """
    _, hidden = _mask_words([_clean(w) for w in argv])
    original = _clean(line)
    text = mask_text(original)
    for value in sorted(hidden, key=len, reverse=True):
        if value not in original:
            return placeholder("line")
        text = text.replace(value, placeholder("flag"))
    return text


# --------------------------------------------------------------------------- writing


class Approver(NamedTuple):
    user: str
    tty: str | None
    at: float  # seconds since the epoch

    def to_json(self) -> dict[str, object]:
        return {"user": self.user, "tty": self.tty, "at": iso_time(self.at)}


class Handle(NamedTuple):
    """What `finish` needs of a started record."""

    hash: str
    session: str
    started: float  # monotonic clock reading at start


def iso_time(seconds: float) -> str:
    """UTC with milliseconds, `2026-01-01T12:00:00.123Z` (as datetime's isoformat would write
    it; without importing datetime on every run)."""
    whole, micros = divmod(round(seconds * 1_000_000), 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros // 1000:03d}Z"


def _user() -> str:
    # the uid's name, not $USER: the environment is the agent's to set
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "?"


class AuditLog:
    """Appends records to one audit log file. Clocks and lock timing are injectable."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self.path = path
        self._clock = clock
        self._monotonic = monotonic
        self._lock_timeout = lock_timeout

    def start(
        self,
        *,
        session: str,
        argv: Sequence[str],
        line: str | None = None,
        decision: Decision | None = None,
        approver: Approver | None = None,
        cast: Mapping[str, object] | None = None,
        user: str | None = None,
        cwd: str | None = None,
    ) -> Handle:
        """Append the "started" record; raises UnsafeError when it cannot be written."""
        record: dict[str, object] = {
            "v": FORMAT,
            "status": STARTED,
            "time": iso_time(self._clock()),
            "session": session,
            "user": user if user is not None else _user(),
            "cwd": cwd if cwd is not None else _cwd(),
            "argv": mask_argv(argv),
            "line": mask_line(line, argv) if line is not None else None,
            "decision": decision.action.value if decision else None,
            "rules": _rule_ids(decision),
            "reason": _clean(decision.reason) if decision else None,
            "approver": approver.to_json() if approver else None,
            "cast": dict(cast) if cast else None,
        }
        started = self._monotonic()
        written = self._append(record, "the command was not run")
        return Handle(hash=written, session=session, started=started)

    def finish(
        self,
        handle: Handle,
        exit_code: int,
        *,
        approver: Approver | None = None,
        cast: recorder.CastExtent | None = None,
    ) -> str:
        """Append the "completed" record for `handle`; returns its hash."""
        record: dict[str, object] = {
            "v": FORMAT,
            "status": COMPLETED,
            "time": iso_time(self._clock()),
            "session": handle.session,
            "started": handle.hash,
            "exit_code": exit_code,
            "duration": round(self._monotonic() - handle.started, 3),
            "approver": approver.to_json() if approver else None,
            "cast": cast.to_json() if cast else None,
        }
        return self._append(record, "the command ran but its completion is not recorded")

    def _append(self, record: dict[str, object], consequence: str) -> str:
        try:
            recorder.private_dir(self.path.parent)
            fd = os.open(
                self.path,
                os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError as exc:
            raise self._unsafe(exc, consequence) from None
        try:
            self._lock(fd)
            return self._write_record(fd, record)
        except OSError as exc:
            raise self._unsafe(exc, consequence) from None
        finally:
            os.close(fd)  # drops the lock too

    def _lock(self, fd: int) -> None:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{self.path} is not a regular file")
        deadline = self._monotonic() + self._lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if self._monotonic() >= deadline:
                    raise OSError(
                        f"another process held its lock for {self._lock_timeout}s"
                    ) from None
                time.sleep(LOCK_POLL)

    def _write_record(self, fd: int, record: dict[str, object]) -> str:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        record["prev"] = _last_hash(fd, recorder.line_start(fd, size) if torn else size)
        record["hash"] = record_hash(record)
        # a torn last line (a writer killed mid-write) is closed off, never extended
        data = (b"\n" if torn else b"") + canonical(record) + b"\n"
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        # Once write() returns, a crash of guardctl loses nothing; fsync also keeps the record
        # through a power loss or kernel crash, which the command's effect on the cluster
        # survives too. It is kept for "started" as well: an appended line costs one journal
        # commit (about 0.1 ms on the ext4 SSD we measure on), far below a kubectl call.
        os.fsync(fd)
        return str(record["hash"])

    def _unsafe(self, exc: OSError, consequence: str) -> UnsafeError:
        reason = exc.strerror or str(exc)
        return UnsafeError(f"cannot write the audit log {self.path}: {reason}: {consequence}")


def _rule_ids(decision: Decision | None) -> list[str]:
    if decision is None:
        return []
    return list(dict.fromkeys(h.id for c in decision.commands for h in c.hits))


def _last_hash(fd: int, end: int) -> str:
    """The hash of the last readable record before offset `end` (GENESIS if none)."""
    while end > 0:
        start = recorder.line_start(fd, end - 1)
        record = _parse(os.pread(fd, end - start, start).rstrip(b"\n"))
        if record is not None and isinstance(record.get("hash"), str):
            return str(record["hash"])
        end = start
    return GENESIS


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------- reading


def _read_locked(path: Path) -> bytes:
    """The whole log, read under a shared lock so no append is seen half-written."""
    with open(path, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        return f.read()


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines, and the torn rest after the last newline (b"" when none)."""
    *lines, rest = data.split(b"\n")
    return lines, rest


def records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each readable line of the log; nothing if it is missing."""
    try:
        data = _read_locked(path)
    except FileNotFoundError:
        return
    for number, raw in enumerate(_lines(data)[0], start=1):
        record = _parse(raw)
        if record is not None:
            yield number, record


# --------------------------------------------------------------------------- verifying


class VerifyResult(NamedTuple):
    ok: bool
    first_bad_index: int | None  # 0-based line index of the first bad record
    message: str
    records: int = 0  # records found valid before the first bad one (all, when ok)


class _Bad(Exception):
    """The line at `index` is bad because of `why`."""

    def __init__(self, index: int, why: str) -> None:
        super().__init__(why)
        self.index = index


# a cast is named relative to the casts folder: one plain file name, no path
_CAST_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")


class _Chain:
    """Verification state, fed one line at a time."""

    __slots__ = ("cast_root", "prev", "count", "unreadable", "open_starts", "extents", "pending")

    def __init__(self, cast_root: Path) -> None:
        self.cast_root = cast_root
        self.prev = GENESIS
        self.count = 0
        # index of a non-JSON line not yet shown to be a torn write
        self.unreadable: int | None = None
        self.open_starts: dict[str, tuple[int, dict[str, Any]]] = {}
        self.extents: dict[str, tuple[int, int]] = {}  # file -> (size, index)
        self.pending: dict[str, tuple[int, int]] = {}  # file -> (offset, index)

    def line(self, index: int, raw: bytes) -> None:
        record = _parse(raw)
        if record is None:
            # a torn write that the next append closed off: fine if the chain goes on past it
            if self.unreadable is None:
                self.unreadable = index
            return
        self._link(index, raw, record)
        self._status(index, record)
        self.prev, self.unreadable = record["hash"], None
        self.count += 1

    def _link(self, index: int, raw: bytes, record: dict[str, Any]) -> None:
        if record.get("prev") != self.prev:
            if self.unreadable is not None:
                raise _Bad(self.unreadable, "is not a readable record")
            raise _Bad(index, "does not follow the previous record (deleted, inserted or moved)")
        if record.get("hash") != record_hash(record):
            raise _Bad(index, "does not match its hash (edited)")
        if canonical(record) != raw:
            raise _Bad(index, "is not in canonical form (edited)")

    def _status(self, index: int, record: dict[str, Any]) -> None:
        status = record.get("status")
        if status == STARTED:
            self.open_starts[record["hash"]] = (index, record)
            ref = record.get("cast")
            if isinstance(ref, dict):
                offset = ref.get("offset")
                self.pending[self._cast_file(index, ref)] = (
                    offset if isinstance(offset, int) else -1, index
                )
        elif status == COMPLETED:
            started = self.open_starts.pop(str(record.get("started")), None)
            if started is None:
                raise _Bad(index, "completes no open started record")
            self._completed_cast(index, record, *started)
        else:
            raise _Bad(index, f"has an unknown status {status!r}")

    def _cast_file(self, index: int, ref: Mapping[str, Any]) -> str:
        name = ref.get("file")
        if not (isinstance(name, str) and _CAST_FILE.fullmatch(name)):
            raise _Bad(index, f"names an invalid cast file {name!r}")
        return name

    def _completed_cast(
        self, index: int, record: dict[str, Any], start_index: int, started: dict[str, Any]
    ) -> None:
        ref = record.get("cast")
        if not isinstance(ref, dict):
            return
        name = self._cast_file(index, ref)
        start_ref = started.get("cast")
        if isinstance(start_ref, dict) and start_ref.get("file") != name:
            raise _Bad(index, "names another cast than its started record")
        size = ref.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _Bad(index, "has an invalid cast size")
        try:
            digest = recorder.sha256_prefix(self.cast_root / name, size)
        except OSError as exc:
            raise _Bad(index, f"names cast {name}, which cannot be read ({exc.strerror})") from None
        if digest != ref.get("sha256"):
            raise _Bad(index, f"cast {name} no longer matches its recorded sha256 (changed)")
        self.extents[name] = (size, index)
        if self.pending.get(name, (0, -1))[1] == start_index:
            del self.pending[name]

    def finish(self, rest: bytes, total: int) -> None:
        if rest:
            raise _Bad(total, "is truncated (the last line is incomplete)")
        if self.unreadable is not None:
            raise _Bad(self.unreadable, "is not a readable record")
        self._cast_growth()

    def _cast_growth(self) -> None:
        """Bytes after a cast's last recorded extent are fine only when an invocation still
        open (running, or killed) started right there; anything else was added later."""
        for name, (size, index) in self.extents.items():
            try:
                actual = (self.cast_root / name).stat().st_size
            except OSError:
                continue  # the prefix check has read it; a race with removal is not ours
            offset, open_index = self.pending.get(name, (-1, -1))
            if actual > size and not (offset == size and open_index > index):
                raise _Bad(index, f"cast {name} has {actual - size} bytes added after recording")


def verify(path: Path, cast_root: Path) -> VerifyResult:
    """Check every record's hash and link, each completed invocation's cast prefix, and
    that casts did not grow beyond what was recorded. Incomplete invocations are fine."""
    try:
        data = _read_locked(path)
    except FileNotFoundError:
        return VerifyResult(True, None, f"{path}: no audit log yet (0 records)")
    except OSError as exc:
        return VerifyResult(False, None, f"{path}: cannot read the audit log: {exc.strerror}")
    lines, rest = _lines(data)
    chain = _Chain(cast_root)
    try:
        for index, raw in enumerate(lines):
            chain.line(index, raw)
        chain.finish(rest, len(lines))
    except _Bad as bad:
        message = f"{path}: line {bad.index + 1}: record {bad}"
        return VerifyResult(False, bad.index, message, chain.count)
    incomplete = len(chain.open_starts)
    note = f", {incomplete} incomplete" if incomplete else ""
    return VerifyResult(True, None, f"{path}: OK, {chain.count} records{note}", chain.count)


# --------------------------------------------------------------------------- listing


def _row(number: int, record: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("time", "session", "user", "cwd", "line", "argv", "decision", "rules", "reason")
    row = {k: record.get(k) for k in keep}
    row.update(
        line_number=number, status="incomplete", exit_code=None, duration=None,
        approver=record.get("approver"), cast=record.get("cast"),
    )
    return row


def _complete(row: dict[str, Any], record: Mapping[str, Any]) -> None:
    row.update(status=COMPLETED, exit_code=record.get("exit_code"))
    row["duration"] = record.get("duration")
    row["approver"] = record.get("approver") or row["approver"]
    row["cast"] = record.get("cast") or row["cast"]


def _since_ok(row: Mapping[str, Any], since: "datetime | None") -> bool:
    if since is None:
        return True
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(str(row["time"]).replace("Z", "+00:00"))
    except ValueError:
        return True  # an unreadable time is shown rather than hidden
    return when >= (since if since.tzinfo else since.replace(tzinfo=timezone.utc))


def sessions(
    path: Path,
    since: "datetime | None" = None,
    decision: str | None = None,
    session: str | None = None,
) -> list[dict[str, Any]]:
    """One row per invocation (started record joined with its completion), oldest first.

    `status` is "completed" or "incomplete" (still running, or killed before finishing).
    """
    rows: dict[str, dict[str, Any]] = {}
    for number, record in records(path):
        if record.get("status") == STARTED:
            rows[str(record.get("hash"))] = _row(number, record)
        elif record.get("status") == COMPLETED and str(record.get("started")) in rows:
            _complete(rows[str(record["started"])], record)
    return [
        row for row in rows.values()
        if (decision is None or row["decision"] == decision)
        and (session is None or row["session"] == session)
        and _since_ok(row, since)
    ]


_COLUMNS = ("TIME", "SESSION", "DECISION", "EXIT", "STATUS", "COMMAND")


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    command = row["line"] or " ".join(row["argv"] or [])
    exit_code = "" if row["exit_code"] is None else str(row["exit_code"])
    rules = ",".join(row["rules"] or [])
    verdict = f"{row['decision'] or '?'}" + (f" ({rules})" if rules else "")
    return (str(row["time"]), str(row["session"]), verdict, exit_code, row["status"], command)


def format_sessions(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table, one line per invocation, columns aligned."""
    table = [_COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS) - 1)]
    padded = ("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) for line in table)
    # the command is last and not padded: zip stops at the narrower widths list
    return "\n".join(f"{cells}  {line[-1]}" for cells, line in zip(padded, table, strict=True))


def sessions_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """JSON Lines, one object per invocation."""
    return "\n".join(json.dumps(dict(r), ensure_ascii=False, sort_keys=True) for r in rows)
