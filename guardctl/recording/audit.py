"""The audit log's writer: `$GUARDCTL_HOME/audit.jsonl`, one hash-chained, keyed JSON record
per line.

Each invocation writes two records, ahead of and after the command (`AuditLog.start`,
`AuditLog.finish`), and `guardctl sessions prune` one per cast it removes (`AuditLog.pruned`:
"pruned", with the cast's name, size and sha256 and the retention rule's reason):

- "started" (before the command runs): time, session, user, cwd, line, argv, decision,
  rule ids, reason, approver, and the cast file with the offset its events start at;
- "completed": the started record's hash, exit code, duration, approver, and the cast's
  extent (`size` bytes and their sha256) when the invocation finished.

A broker adds `agent` to both when it ran the command for an agent: the agent's account, or
the name of the token it connected with over TCP.

Argv and the shell line are masked before they are stored (`mask_argv`, `mask_line`): both
go through the output masker's detectors, and values of secret flags (--token, --password,
..., see data/secret_flags.json) are replaced by a placeholder; a line that spells such a
value differently than argv does is replaced whole (fail closed).

Lines are only ever appended. A process killed mid-run leaves its "started" record without
a completion: `sessions` shows it as incomplete and `verify` accepts it. Every record is
chained to the one before (`prev`, `hash`) and keyed (`log`, `seq`, `mac`), and the key
(`audit.key`) and the head (`audit.head`) live beside the log: how records are hashed and
signed, and what the key does and does not protect against, is in
guardctl.recording.auditkey. Reading the log back and verifying it is
guardctl.recording.verify; listing invocations, guardctl.recording.sessions.

A head may lag behind the log — a writer killed after appending but before rewriting the
head leaves it behind — which is fine as long as every record past the head's position has
a valid mac; the next append brings it up to date. A writer killed
mid-write leaves a torn last line: the next append closes it off with a newline (it is never
rewritten) and vouches for it in its own record (`torn`, the sha256 of its bytes); an
unreadable line no record vouches for was put there by someone else. A last line that is a
whole record without its newline (a write one byte short: a full disk) is ended and
followed like any record.

An append reads the last record, the key and the head, never the whole log (only when it
creates the key or starts a head it counts the records, once). It refuses, with
UnsafeError, to build on what it cannot vouch for: a damaged key; a key missing while a
head or keyed records exist; a head missing while keyed records exist, damaged, or not
written by the key. When the log holds fewer records than the head says, it goes on from
the head's count and hash, so the gap stays visible to `verify`.

**Old logs.** Records written before keyed records (format 1, no `mac`) still verify as a
hash chain, and `verify` says they are not authenticated. The first append to such a log
creates the key and a head counting the old records, and keyed records go on from there:
the first one's `prev` is the last old record's hash, so its mac vouches for the old records
as they were at that moment (not for what they said before).

Appends take an exclusive `flock` on the log, write one O_APPEND `write` and fdatasync, so
concurrent guardctl processes interleave whole records and the chain stays linear. If the
log cannot be written the caller gets UnsafeError and must not run the command.
"""

import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from guardctl.accounts import user_name
from guardctl.atomic import write_all
from guardctl.bundled import data_text
from guardctl.errors import UnsafeError
from guardctl.locks import acquire
from guardctl.masking.mask import mask_text, placeholder
from guardctl.model import Decision
from guardctl.recording import recorder
from guardctl.recording.auditkey import (
    ACCESS_FIX,
    KEY_BYTES,
    LOG_ID_BYTES,
    Damaged,
    Head,
    canonical,
    create_key,
    head_path,
    key_path,
    load_head,
    load_key,
    make_head,
    parse,
    record_hash,
    record_mac,
    write_head,
)

LOG_NAME = "audit.jsonl"
GENESIS = "0" * 64
FORMAT = 2  # keyed records
LEGACY_FORMAT = 1  # records written before keyed records: hash chain only
# how long an append waits for another guardctl process holding the log's lock
LOCK_TIMEOUT = 10.0
LOCK_POLL = 0.01
STARTED, COMPLETED = "started", "completed"
# a cast removed by `guardctl sessions prune`: the records naming it stay, verify skips it
PRUNED = "pruned"
_T = TypeVar("_T")


def log_path(state_dir: Path) -> Path:
    return state_dir / LOG_NAME


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


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "?"


class _Refused(Exception):
    """The log's key or head is in a state an append must not build on; the message names
    the file and the fix."""


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
        self.key_path = key_path(path)
        self.head_path = head_path(path)
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
        agent: str | None = None,
    ) -> Handle:
        """Append the "started" record; raises UnsafeError when it cannot be written.
        `agent`: the agent a broker ran the command for (its account, or its token's name)."""
        record = self._started(session, argv, line, decision, approver, cast, user, cwd, agent)
        started = self._monotonic()
        written = self._append(record, "the command was not run")
        return Handle(hash=written, session=session, started=started)

    def _started(
        self, session: str, argv: Sequence[str], line: str | None, decision: Decision | None,
        approver: Approver | None, cast: Mapping[str, object] | None, user: str | None,
        cwd: str | None, agent: str | None,
    ) -> dict[str, object]:
        record: dict[str, object] = {
            "v": FORMAT,
            "status": STARTED,
            "time": iso_time(self._clock()),
            "session": session,
            "user": user if user is not None else user_name(os.getuid()),
            "cwd": cwd if cwd is not None else _cwd(),
            "argv": mask_argv(argv),
            "line": mask_line(line, argv) if line is not None else None,
            "decision": decision.action.value if decision else None,
            "rules": _rule_ids(decision),
            "reason": _clean(decision.reason) if decision else None,
            "approver": approver.to_json() if approver else None,
            "cast": dict(cast) if cast else None,
        }
        if agent is not None:
            record["agent"] = agent
        return record

    def finish(
        self,
        handle: Handle,
        exit_code: int,
        *,
        approver: Approver | None = None,
        cast: recorder.CastExtent | None = None,
        agent: str | None = None,
    ) -> str:
        """Append the "completed" record for `handle`; returns its hash."""
        record = self._completed(handle, exit_code, approver, cast, agent)
        return self._append(record, "the command ran but its completion is not recorded")

    def _completed(
        self, handle: Handle, exit_code: int, approver: Approver | None,
        cast: recorder.CastExtent | None, agent: str | None,
    ) -> dict[str, object]:
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
        if agent is not None:
            record["agent"] = agent
        return record

    def rehearse(self, argv: Sequence[str], decision: Decision | None) -> None:
        """Make a "started" and a "completed" record as `start` and `finish` do, hashed and
        signed with a throwaway key, and write nothing. A warm server's spare worker runs
        this ahead of its request (`broker.server.warm_up`): the code a record takes, without
        a temporary log's key, head and syncs."""
        key, log = os.urandom(KEY_BYTES), os.urandom(LOG_ID_BYTES).hex()
        started = self._started("warm", argv, None, decision, None, None, None, None, None)
        digest, _ = _sealed(started, key, log, 1, GENESIS)
        completed = self._completed(Handle(digest, "warm", self._monotonic()), 0, None, None, None)
        digest, _ = _sealed(completed, key, log, 2, digest)
        make_head(key, log, 2, digest).to_bytes()

    def pruned(self, extent: recorder.CastExtent, reason: str, user: str | None = None) -> str:
        """Append a "pruned" record: the cast `extent.file`, whole as described, is about to
        be removed by the retention policy (`reason`). Returns its hash."""
        record: dict[str, object] = {
            "v": FORMAT,
            "status": PRUNED,
            "time": iso_time(self._clock()),
            "session": recorder.session_of(extent.file),
            "user": user if user is not None else user_name(os.getuid()),
            "reason": reason,
            "cast": extent.to_json(),
        }
        return self._append(record, "the cast was not removed")

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
        except _Refused as refused:
            raise UnsafeError(
                f"cannot write the audit log {self.path}: {refused}: {consequence}"
            ) from None
        except OSError as exc:
            raise self._unsafe(exc, consequence) from None
        finally:
            os.close(fd)  # drops the lock too

    def _lock(self, fd: int) -> None:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{self.path} is not a regular file")
        if not acquire(fd, fcntl.LOCK_EX, self._lock_timeout, first_poll=LOCK_POLL,
                       max_poll=LOCK_POLL, clock=self._monotonic):
            raise OSError(f"another process held its lock for {self._lock_timeout}s")

    def _write_record(self, fd: int, record: dict[str, object]) -> str:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        end = recorder.line_start(fd, size) if torn else size
        cut = os.pread(fd, size - end, end) if torn else b""
        if torn and _is_record(cut):
            end = size  # a whole record that lost only its newline (a full disk): it counts
        tail = _last_record(fd, end)
        key, head = self._anchor(fd, end, tail)
        seq, prev = _continue_from(head, tail)
        if end < size:
            # a torn last line (a writer killed mid-write) is closed off, never extended, and
            # this record vouches for it, so that verify can tell it from a line put there
            record["torn"] = hashlib.sha256(cut).hexdigest()
        digest, line = _sealed(record, key, head.log, seq + 1, prev)
        write_all(fd, (b"\n" if torn else b"") + line + b"\n")
        # Once write() returns, a crash of guardctl loses nothing; fdatasync also keeps the
        # record through a power loss or kernel crash, which the command's effect on the
        # cluster survives too (the data and the file's new size: what reading it back needs;
        # fsync would add the times). It is kept for "started" as well: an appended line costs
        # one journal commit, far below a kubectl call.
        os.fdatasync(fd)
        # still under the lock, so heads are written in the order records are; its temp file
        # and rename cost a second journal commit, and a head never runs ahead of the log
        self._write_head(make_head(key, head.log, seq + 1, digest))
        return digest

    def _anchor(self, fd: int, end: int, tail: Mapping[str, Any] | None) -> tuple[bytes, Head]:
        """The key and the head to append under, made when the log has none yet."""
        key = self._file(load_key, self.key_path, self._key_fix())
        head = self._file(load_head, self.head_path, self._head_fix())
        if key is not None and head is not None:
            if not head.signed_by(key):
                raise _Refused(
                    f"the head {self.head_path} was not written by this log's key "
                    f"(replaced or forged): {self._head_fix()}"
                )
            return key, head
        if head is not None:
            raise _Refused(
                f"the key {self.key_path} is missing while the head {self.head_path} exists: "
                f"restore the key from a backup, or {self._new_log()}"
            )
        # no head: a log from before keyed records, a new one, or one whose head was lost
        count, keyed = _count_records(fd, end)
        if keyed and key is None:
            raise _Refused(
                f"the key {self.key_path} is missing while the log has keyed records: "
                f"restore the key from a backup, or {self._new_log()}"
            )
        if keyed:
            raise _Refused(
                f"the head {self.head_path} is missing while the log has keyed records: "
                f"{self._head_fix()}"
            )
        if key is None:
            try:
                key = self._file(create_key, self.key_path, self._key_fix())
            except OSError as exc:
                raise _Refused(
                    f"cannot create the key {self.key_path} ({exc.strerror or exc})"
                ) from None
        last = tail.get("hash") if tail is not None else None
        head = make_head(
            key, os.urandom(LOG_ID_BYTES).hex(), count, last if isinstance(last, str) else GENESIS
        )
        # written before the first keyed record: should we die in between, the head lags
        self._write_head(head, first=True)
        return key, head

    def _write_head(self, head: Head, *, first: bool = False) -> None:
        try:
            write_head(self.head_path, head, first=first)
        except OSError as exc:
            raise _Refused(
                f"cannot write the head {self.head_path} ({exc.strerror or exc})"
            ) from None

    def _file(self, load: Callable[[Path], _T], path: Path, fix: str) -> _T:
        try:
            return load(path)
        except Damaged as damaged:
            what = "key" if path == self.key_path else "head"
            if damaged.access:
                fix = f"{ACCESS_FIX}, or {fix}"
            raise _Refused(f"the {what} {path} {damaged}: {fix}") from None

    def _new_log(self) -> str:
        return (
            f"keep a copy of {self.path.parent} for investigation, then move "
            f"{self.path.name} and {self.head_path.name} away to start a new log"
        )

    def _key_fix(self) -> str:
        return (
            f"restore it from a backup, or move it away together with {self.path.name} and "
            f"{self.head_path.name} to start a new log (a new key alone would leave every "
            "record the old one signed unverifiable)"
        )

    def _head_fix(self) -> str:
        return f"run `guardctl audit verify`; {self._new_log()}"

    def _unsafe(self, exc: OSError, consequence: str) -> UnsafeError:
        reason = exc.strerror or str(exc)
        return UnsafeError(f"cannot write the audit log {self.path}: {reason}: {consequence}")


def _sealed(
    record: dict[str, object], key: bytes, log: str, seq: int, prev: str
) -> tuple[str, bytes]:
    """`record` placed in its log (`log`, `seq`, the hash before it), hashed and signed with
    `key`: its hash, and its line as written."""
    record.update(log=log, seq=seq, prev=prev)
    digest = record_hash(record)
    record["hash"] = digest
    record["mac"] = record_mac(key, log, digest)
    return digest, canonical(record)


def _rule_ids(decision: Decision | None) -> list[str]:
    if decision is None:
        return []
    return list(dict.fromkeys(h.id for c in decision.commands for h in c.hits))


def record_seq(record: Mapping[str, Any]) -> int | None:
    seq = record.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _continue_from(head: Head, tail: Mapping[str, Any] | None) -> tuple[int, str]:
    """(count, hash) the next record follows: the last record's, or the head's when the log
    holds fewer records than the head says (cut off: going on from the head keeps the gap
    visible to verify), or when the last record is from before keyed records."""
    if tail is not None:
        seq, digest = record_seq(tail), tail.get("hash")
        if seq is not None and seq >= head.count and isinstance(digest, str):
            return seq, digest
    return head.count, head.last


def _is_record(raw: bytes) -> bool:
    record = parse(raw)
    return record is not None and isinstance(record.get("hash"), str)


def _last_record(fd: int, end: int) -> dict[str, Any] | None:
    """The last readable record before offset `end` (None if none)."""
    while end > 0:
        start = recorder.line_start(fd, end - 1)
        raw = os.pread(fd, end - start, start).rstrip(b"\n")
        if _is_record(raw):
            return parse(raw)
        end = start
    return None


def _count_records(fd: int, end: int) -> tuple[int, bool]:
    """How many readable records the first `end` bytes hold, and whether any has a mac.
    Reads the whole log: only done when a head is made."""
    count, keyed, offset, rest = 0, False, 0, b""
    while offset < end:
        block = os.pread(fd, min(1 << 20, end - offset), offset)
        if not block:
            break
        offset += len(block)
        *lines, rest = (rest + block).split(b"\n")
        for raw in lines:
            record = parse(raw)
            if record is not None:
                count += 1
                keyed = keyed or "mac" in record
    return count, keyed
