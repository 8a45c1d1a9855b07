"""The audit log: `$GUARDCTL_HOME/audit.jsonl`, one hash-chained, keyed JSON record per line.

Each invocation writes two records, ahead of and after the command:

- "started" (before the command runs): time, session, user, cwd, line, argv, decision,
  rule ids, reason, approver, and the cast file with the offset its events start at;
- "completed": the started record's hash, exit code, duration, approver, and the cast's
  extent (`size` bytes and their sha256) when the invocation finished.

Lines are only ever appended. A process killed mid-run leaves its "started" record without
a completion: `sessions` shows it as incomplete and `verify` accepts it. Every record holds
`prev` (the previous record's hash; 64 zeros for the first) and `hash`, the sha256 of the
record's canonical JSON (sorted keys, no spaces, UTF-8) without `hash` and `mac`; each line
is written in exactly that canonical form, so `verify` also rejects a record re-serialized
by hand.

**Keyed records (format 2).** Anyone who can write the file can recompute sha256 hashes, so
each record also holds `log` (the log's identity), `seq` (its position, 1 for the first
record of the file) and `mac`: HMAC-SHA256 over the log identity and the record's hash,
with a key only the log's owner holds. Beside the log live:

- `audit.key`: 32 random bytes as hex, mode 0600, created (O_EXCL, O_NOFOLLOW) by the first
  append and never rewritten. A key file that cannot be read, is not a key or not a
  regular file stops every append with UnsafeError; it is never replaced, since a new key
  would leave every record the old one signed unverifiable.
- `audit.head`: `{"log": ID, "count": N, "last": HASH, "mac": HMAC(log|count|last)}`, the
  log's identity (16 random bytes, made when the key is, or when a head is started anew),
  how many records the log holds and the hash of the last one. It is rewritten atomically
  (temp file, fdatasync, rename) after every append while the append still holds the log's
  lock, so it anchors the log's end: records cut off the end and a deleted log show.

So `verify` names the line of a record edited (even with its hash recomputed), forged,
re-chained from some record on, moved in from another log or reordered, of records removed
anywhere, of an inserted unreadable line; and reports a deleted log, a deleted or forged
head, a deleted key. (Casts are checked as before — each completed invocation's extent by
its sha256, no bytes after the last one — and each invocation must start its cast where
the one before on it ended, unless that one never completed.)

A head may lag behind the log — a writer killed after appending but before rewriting the
head leaves it behind — which is fine as long as every record past the head's position has
a valid mac; the next append brings it up to date. A writer killed
mid-write leaves a torn last line: the next append closes it off with a newline (it is never
rewritten) and vouches for it in its own record (`torn`, the sha256 of its bytes); an
unreadable line no record vouches for was put there by someone else.

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
as they were at that moment (not for what they said before). Unreadable lines among old
records are accepted as before, when the chain goes on past them.

**What the key does not protect against.** Whoever holds the key can rewrite the log and
its head at will and `verify` will find nothing: the broker's account, or in same-user mode
the user and any agent running as that user (the default policy denies writing guardctl's
state, but reading a file is not a write). That is why the broker keeps the key, and should
keep the head, under another uid than the agent's. Files alone also cannot show that all of
them were rolled back together to an earlier consistent state (the log cut at a record,
the head of that moment copied back, the casts cut to match), or that log, head and key
were all deleted: the casts usually give such a rollback away (bytes past a cast's last
recorded extent, or the next invocation on that cast starting past it), but only an anchor
out of the writer's reach settles it.

Appends take an exclusive `flock` on the log, write one O_APPEND `write` and fdatasync, so
concurrent guardctl processes interleave whole records and the chain stays linear. If the
log cannot be written the caller gets UnsafeError and must not run the command.
"""

import errno
import fcntl
import hashlib
import hmac
import json
import os
import pwd
import re
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from guardctl.bundled import data_text
from guardctl.errors import UnsafeError
from guardctl.masking.mask import mask_text, placeholder
from guardctl.model import Decision
from guardctl.recording import recorder

if TYPE_CHECKING:
    from datetime import datetime

LOG_NAME = "audit.jsonl"
GENESIS = "0" * 64
FORMAT = 2  # keyed records
LEGACY_FORMAT = 1  # records written before keyed records: hash chain only
KEY_BYTES = 32
LOG_ID_BYTES = 16
# how long an append waits for another guardctl process holding the log's lock
LOCK_TIMEOUT = 10.0
LOCK_POLL = 0.01
STARTED, COMPLETED = "started", "completed"
_T = TypeVar("_T")
_ACCESS_FIX = "give it back to the user guardctl records as (mode 0600)"
# the key and head files are a few hundred bytes; more is not one of ours
_SMALL_FILE = 4096
_KEY_TEXT = re.compile(rb"[0-9a-f]{64}\n?")
_HASH = re.compile(r"[0-9a-f]{64}")
_LOG_ID = re.compile(r"[0-9a-f]{32}")


def log_path(state_dir: Path) -> Path:
    return state_dir / LOG_NAME


def key_path(log: Path) -> Path:
    """The key file of the log at `log`: `audit.key` beside `audit.jsonl`."""
    return log.with_suffix(".key")


def head_path(log: Path) -> Path:
    """The head file of the log at `log`: `audit.head` beside `audit.jsonl`."""
    return log.with_suffix(".head")


# --------------------------------------------------------------------------- hashing


def canonical(record: Mapping[str, object]) -> bytes:
    """The one byte form of a record: sorted keys, no spaces, UTF-8."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def record_hash(record: Mapping[str, object]) -> str:
    """sha256 over the canonical JSON of the record without its `hash` and `mac` keys."""
    body = {k: v for k, v in record.items() if k != "hash" and k != "mac"}
    return hashlib.sha256(canonical(body)).hexdigest()


def _hmac(key: bytes, purpose: bytes, text: str) -> str:
    # surrogatepass: a log id read back from a forged record may hold lone surrogates
    message = purpose + b"\0" + text.encode("utf-8", "surrogatepass")
    return hmac.digest(key, message, "sha256").hex()


def record_mac(key: bytes, log: str, digest: str) -> str:
    """A record's `mac`: HMAC-SHA256 over the log's identity and the record's hash."""
    return _hmac(key, b"guardctl audit record", f"{log}\0{digest}")


def head_mac(key: bytes, log: str, count: int, last: str) -> str:
    """The head's `mac`: HMAC-SHA256 over log identity, record count and last hash."""
    return _hmac(key, b"guardctl audit head", f"{log}|{count}|{last}")


# --------------------------------------------------------------------------- key and head


class Head:
    """`audit.head`: which log, how many records it holds, the last one's hash, and the mac
    over the three."""

    __slots__ = ("log", "count", "last", "mac")
    FIELDS = ("log", "count", "last", "mac")

    def __init__(self, log: str, count: int, last: str, mac: str) -> None:
        self.log, self.count, self.last, self.mac = log, count, last, mac

    def to_bytes(self) -> bytes:
        return canonical({name: getattr(self, name) for name in self.FIELDS}) + b"\n"

    def signed_by(self, key: bytes) -> bool:
        return hmac.compare_digest(self.mac, head_mac(key, self.log, self.count, self.last))


def _make_head(key: bytes, log: str, count: int, last: str) -> Head:
    return Head(log, count, last, head_mac(key, log, count, last))


class _Damaged(Exception):
    """A key or head file that exists but cannot be used; the message says why. `access`:
    it may be fine, only not readable by this user."""

    def __init__(self, why: str, access: bool = False) -> None:
        super().__init__(why)
        self.access = access


def _read_small(path: Path) -> bytes | None:
    """The bytes of a small regular file, never through a symlink; None if it is missing."""
    try:
        # O_NONBLOCK: a FIFO planted at the name must not hang the open
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Damaged("is a symbolic link, not a regular file") from None
        raise _Damaged(f"cannot be read ({exc.strerror or exc})", access=True) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Damaged("is not a regular file")
        return os.read(fd, _SMALL_FILE + 1)
    except OSError as exc:
        raise _Damaged(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _load_key(path: Path) -> bytes | None:
    """The key in `path`; None when there is none. Raises _Damaged."""
    data = _read_small(path)
    if data is None:
        return None
    if not _KEY_TEXT.fullmatch(data):
        raise _Damaged(f"is not a key (it must hold {KEY_BYTES * 2} lowercase hex digits)")
    return bytes.fromhex(data.decode("ascii"))


def _load_head(path: Path) -> Head | None:
    """The head in `path` as written (its mac unchecked); None when there is none.
    Raises _Damaged."""
    data = _read_small(path)
    if data is None:
        return None
    fields = _parse(data) if len(data) <= _SMALL_FILE else None
    if fields is None or set(fields) != set(Head.FIELDS):
        raise _Damaged("is not a head (a JSON object with log, count, last and mac)")
    log, count, last, mac = (fields[name] for name in Head.FIELDS)
    if not (
        isinstance(log, str) and _LOG_ID.fullmatch(log)
        and isinstance(count, int) and not isinstance(count, bool) and count >= 0
        and isinstance(last, str) and _HASH.fullmatch(last)
        and isinstance(mac, str)
    ):
        raise _Damaged("is not a head (a field has the wrong form)")
    return Head(log, count, last, mac)


def _write_all(fd: int, data: bytes) -> None:
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_key(path: Path) -> bytes:
    """Make the key file (O_EXCL: never over another); returns the key in it."""
    key = os.urandom(KEY_BYTES)
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except FileExistsError:
        # made meanwhile by a process outside our lock, or a symlink: use it or say why not
        existing = _load_key(path)
        if existing is None:
            raise _Damaged("appeared and vanished while it was being created") from None
        return existing
    try:
        try:
            os.fchmod(fd, 0o600)  # the mode given to open is filtered by the umask
            _write_all(fd, key.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        # the records it signs must not outlive it: make its name durable too
        _fsync_dir(path.parent)
    except BaseException:
        path.unlink(missing_ok=True)  # nothing was signed with it yet
        raise
    return key


def _write_head(path: Path, head: Head, *, first: bool = False) -> None:
    """Replace the head atomically: a private temp file beside it, fsynced, renamed over it.

    Called only under the log's exclusive lock, so one fixed temp name serves. The folder is
    fsynced only for the `first` head: after a power loss an earlier head may come back,
    which is a lagging head, but no head at all would stop appends.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        os.unlink(tmp)  # left by a writer killed here; unlink never follows a symlink
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            _write_all(fd, head.to_bytes())
            os.fdatasync(fd)  # the bytes and size before the rename: no half-written head
        finally:
            os.close(fd)
        os.replace(tmp, path)  # replaces a symlink at `path` itself, never its target
        if first:
            _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        end = recorder.line_start(fd, size) if torn else size
        tail = _last_record(fd, end)
        key, head = self._anchor(fd, end, tail)
        seq, prev = _continue_from(head, tail)
        record.update(log=head.log, seq=seq + 1, prev=prev)
        if torn:
            # a torn last line (a writer killed mid-write) is closed off, never extended, and
            # this record vouches for it, so that verify can tell it from a line put there
            record["torn"] = hashlib.sha256(os.pread(fd, size - end, end)).hexdigest()
        digest = record_hash(record)
        record["hash"] = digest
        record["mac"] = record_mac(key, head.log, digest)
        _write_all(fd, (b"\n" if torn else b"") + canonical(record) + b"\n")
        # Once write() returns, a crash of guardctl loses nothing; fdatasync also keeps the
        # record through a power loss or kernel crash, which the command's effect on the
        # cluster survives too (the data and the file's new size: what reading it back needs;
        # fsync would add the times). It is kept for "started" as well: an appended line costs
        # one journal commit, far below a kubectl call.
        os.fdatasync(fd)
        # still under the lock, so heads are written in the order records are; its temp file
        # and rename cost a second journal commit, and a head never runs ahead of the log
        self._write_head(_make_head(key, head.log, seq + 1, digest))
        return digest

    def _anchor(self, fd: int, end: int, tail: Mapping[str, Any] | None) -> tuple[bytes, Head]:
        """The key and the head to append under, made when the log has none yet."""
        key = self._file(_load_key, self.key_path, self._key_fix())
        head = self._file(_load_head, self.head_path, self._head_fix())
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
                key = self._file(_create_key, self.key_path, self._key_fix())
            except OSError as exc:
                raise _Refused(
                    f"cannot create the key {self.key_path} ({exc.strerror or exc})"
                ) from None
        last = tail.get("hash") if tail is not None else None
        head = _make_head(
            key, os.urandom(LOG_ID_BYTES).hex(), count, last if isinstance(last, str) else GENESIS
        )
        # written before the first keyed record: should we die in between, the head lags
        self._write_head(head, first=True)
        return key, head

    def _write_head(self, head: Head, *, first: bool = False) -> None:
        try:
            _write_head(self.head_path, head, first=first)
        except OSError as exc:
            raise _Refused(
                f"cannot write the head {self.head_path} ({exc.strerror or exc})"
            ) from None

    def _file(self, load: Callable[[Path], _T], path: Path, fix: str) -> _T:
        try:
            return load(path)
        except _Damaged as damaged:
            what = "key" if path == self.key_path else "head"
            if damaged.access:
                fix = f"{_ACCESS_FIX}, or {fix}"
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


def _rule_ids(decision: Decision | None) -> list[str]:
    if decision is None:
        return []
    return list(dict.fromkeys(h.id for c in decision.commands for h in c.hits))


def _seq(record: Mapping[str, Any]) -> int | None:
    seq = record.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _continue_from(head: Head, tail: Mapping[str, Any] | None) -> tuple[int, str]:
    """(count, hash) the next record follows: the last record's, or the head's when the log
    holds fewer records than the head says (cut off: going on from the head keeps the gap
    visible to verify), or when the last record is from before keyed records."""
    if tail is not None:
        seq, digest = _seq(tail), tail.get("hash")
        if seq is not None and seq >= head.count and isinstance(digest, str):
            return seq, digest
    return head.count, head.last


def _keyed(record: Mapping[str, Any]) -> bool:
    """Whether a record is (or claims to be) of the keyed format."""
    return record.get("v") != LEGACY_FORMAT or "mac" in record


def _last_record(fd: int, end: int) -> dict[str, Any] | None:
    """The last readable record before offset `end` (None if none)."""
    while end > 0:
        start = recorder.line_start(fd, end - 1)
        record = _parse(os.pread(fd, end - start, start).rstrip(b"\n"))
        if record is not None and isinstance(record.get("hash"), str):
            return record
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
            record = _parse(raw)
            if record is not None:
                count += 1
                keyed = keyed or "mac" in record
    return count, keyed


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
    keyed: int = 0  # of those, records authenticated by the key (the rest predate keyed ones)


class _Bad(Exception):
    """The line at `index` (None: no line in particular) is bad because of `why`; `what`
    is what the message says is bad ("record" for a line of the log)."""

    def __init__(self, index: int | None, why: str, what: str = "record") -> None:
        super().__init__(why)
        self.index = index
        self.what = what

    def message(self, path: Path) -> str:
        where = "" if self.index is None else f"line {self.index + 1}: "
        return f"{path}: {where}{self.what + ' ' if self.what else ''}{self}"


# a cast is named relative to the casts folder: one plain file name, no path
_CAST_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")


class _Chain:
    """Verification state, fed one line at a time."""

    __slots__ = (
        "cast_root", "key", "key_file", "log_id", "head_count", "at_head", "prev", "count",
        "legacy", "keyed", "junk", "open_starts", "starts", "ends",
    )

    def __init__(
        self, cast_root: Path, key: bytes | None, key_file: Path, head: Head | None
    ) -> None:
        self.cast_root = cast_root
        self.key = key
        self.key_file = key_file
        # the identity every keyed record must carry: the head's, else the first record's
        self.log_id = head.log if head else None
        self.head_count = head.count if head else None
        self.at_head: tuple[int | None, str] = (None, GENESIS)  # record number head_count
        self.prev = GENESIS
        self.count = 0
        self.legacy = 0  # records from before keyed records
        self.keyed = 0
        # unreadable lines since the last record: a torn write the next record closed off,
        # or lines put there by someone else
        self.junk: list[tuple[int, bytes]] = []
        self.open_starts: dict[str, tuple[int, dict[str, Any]]] = {}
        # per cast file: the last invocation started on it (offset, index), and the last
        # one completed (size, index, index of its started record)
        self.starts: dict[str, tuple[int, int]] = {}
        self.ends: dict[str, tuple[int, int, int]] = {}

    def line(self, index: int, raw: bytes) -> None:
        record = _parse(raw)
        if record is None:
            self.junk.append((index, raw))
            return
        # once keyed records begin, and past the head's position, every record needs a mac
        past_head = self.head_count is not None and self.count >= self.head_count
        if self.keyed or past_head or _keyed(record):
            self._keyed_record(index, raw, record)
            self.keyed += 1
        else:
            self._legacy_record(index, raw, record)
            self.legacy += 1
        self._status(index, record)
        self.prev, self.junk = record["hash"], []
        self.count += 1
        if self.count == self.head_count:
            self.at_head = (index, self.prev)

    def _legacy_record(self, index: int, raw: bytes, record: dict[str, Any]) -> None:
        if record.get("prev") != self.prev:
            if self.junk:
                raise _Bad(self.junk[0][0], "is not a readable record")
            raise _Bad(index, "does not follow the previous record (deleted, inserted or moved)")
        if record.get("hash") != record_hash(record):
            raise _Bad(index, "does not match its hash (edited)")
        if canonical(record) != raw:
            raise _Bad(index, "is not in canonical form (edited)")

    def _keyed_record(self, index: int, raw: bytes, record: dict[str, Any]) -> None:
        if record.get("hash") != record_hash(record):
            raise _Bad(index, "does not match its hash (edited)")
        if canonical(record) != raw:
            raise _Bad(index, "is not in canonical form (edited)")
        self._authenticate(index, record)
        self._closes_off(index, record)
        self._position(index, record)
        if record.get("prev") != self.prev:
            raise _Bad(index, "does not follow the previous record (deleted, inserted or moved)")

    def _authenticate(self, index: int, record: dict[str, Any]) -> None:
        if self.key is None:
            raise _Bad(
                index, f"is keyed, but the key {self.key_file} is missing (deleted?): "
                "restore it to verify the log"
            )
        mac, log = record.get("mac"), record.get("log")
        if not isinstance(mac, str):
            raise _Bad(index, "has no mac: it was not written by this log's key (forged)")
        if not isinstance(log, str):
            raise _Bad(index, "names no log: it was not written by this log's key (forged)")
        if self.log_id is None:
            self.log_id = log
        if log != self.log_id:
            raise _Bad(index, f"belongs to another audit log ({log}, not {self.log_id})")
        if not hmac.compare_digest(mac, record_mac(self.key, log, str(record["hash"]))):
            raise _Bad(
                index, "has a wrong mac: it was not written by this log's key "
                "(edited and re-hashed, or forged)"
            )

    def _closes_off(self, index: int, record: dict[str, Any]) -> None:
        """Unreadable lines before a keyed record are fine only as the one torn line that
        record says it closed off."""
        torn = record.get("torn")
        if self.junk:
            last = self.junk[-1][1]
            if len(self.junk) > 1 or torn != hashlib.sha256(last).hexdigest():
                raise _Bad(self.junk[0][0], "is not a readable record (inserted or damaged)")
        elif torn is not None:
            raise _Bad(index, "closed off a torn line that is no longer there (removed)")

    def _position(self, index: int, record: dict[str, Any]) -> None:
        seq, expected = _seq(record), self.count + 1
        if seq == expected:
            return
        if seq is None:
            raise _Bad(index, f"has no position (seq) where record {expected} belongs")
        if seq is not None and seq > expected:
            missing = f"records {expected}-{seq - 1} are"
            if seq == expected + 1:
                missing = f"record {expected} is"
            raise _Bad(index, f"record {seq} stands where record {expected} belongs: {missing} "
                              "missing (deleted or moved)", what="")
        raise _Bad(index, f"record {seq} stands where record {expected} belongs (moved or "
                          "copied)", what="")

    def _status(self, index: int, record: dict[str, Any]) -> None:
        status = record.get("status")
        if status == STARTED:
            self.open_starts[record["hash"]] = (index, record)
            ref = record.get("cast")
            if isinstance(ref, dict):
                self._started_cast(index, ref)
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
        if self.ends.get(name, (0, 0, -1))[2] < start_index:  # completions may come out of order
            self.ends[name] = (size, index, start_index)

    def _started_cast(self, index: int, ref: Mapping[str, Any]) -> None:
        """An invocation starts where the one before on the same cast ended; after one that
        never completed (killed, or completing later) anywhere past where that started."""
        name = self._cast_file(index, ref)
        offset = ref.get("offset")
        offset = offset if isinstance(offset, int) and not isinstance(offset, bool) else -1
        before = self.starts.get(name)
        if before is not None:
            end = self._completed_end(name)
            if end is not None and offset != end:
                raise _Bad(index, f"starts cast {name} at byte {offset}, but the invocation "
                                  f"before on it ended at byte {end}: "
                                  + ("bytes in between are named by no record (records "
                                     "removed?)" if offset > end else "they overlap"))
            if end is None and offset < before[0]:
                raise _Bad(index, f"starts cast {name} at byte {offset}, before the "
                                  f"invocation before on it (byte {before[0]})")
        self.starts[name] = (offset, index)

    def _completed_end(self, name: str) -> int | None:
        """Where the last invocation started on cast `name` ended; None while it is open."""
        start, end = self.starts.get(name), self.ends.get(name)
        if start is None or end is None or end[2] != start[1]:
            return None
        return end[0]

    def finish(self, rest: bytes, total: int) -> None:
        """The end of the lines: a torn last line, unreadable lines no record closed off."""
        if rest:
            raise _Bad(total, "is truncated (the last line is incomplete)")
        if self.junk:
            raise _Bad(self.junk[0][0], "is not a readable record")

    def check_head(self, head: Head | None, head_file: Path, total: int) -> None:
        """The log's end against the head (which `verify` has checked against the key)."""
        if head is None:
            if self.key is None:
                return  # a log from before keyed records: keyed ones failed on the way
            if self.keyed:
                raise _Bad(None, f"is missing (deleted) while the log has {self.keyed} keyed "
                                 "records", what=f"the head {head_file}")
            raise _Bad(None, f"is missing while the key {self.key_file} exists (deleted along "
                             "with the keyed records, or guardctl was stopped while creating "
                             "the key)", what=f"the head {head_file}")
        if head.count > self.count:
            removed = f"record {head.count} was" if head.count == self.count + 1 else (
                f"records {self.count + 1}-{head.count} were"
            )
            raise _Bad(total, f"{removed} removed from the end: the head {head_file} says "
                              f"{head.count} records, the log holds {self.count}", what="")
        index, last = self.at_head
        if last != head.last:
            raise _Bad(index, f"{head.count} is not the one the head {head_file} names "
                              "(replaced, or the log re-chained)")

    def check_casts(self) -> None:
        """Bytes after a cast's last recorded extent are fine only when an invocation
        started on it after that one is still open (running, or killed): anything else was
        added later."""
        for name, (size, index, _) in self.ends.items():
            if self._completed_end(name) is None:
                continue  # checked when it started: at or after this extent's end
            try:
                actual = (self.cast_root / name).stat().st_size
            except OSError:
                continue  # the prefix check has read it; a race with removal is not ours
            if actual > size:
                raise _Bad(index, f"cast {name} has {actual - size} bytes added after recording")


class _Anchor(NamedTuple):
    """The key and head files as `verify` found them."""

    key: bytes | None
    key_problem: str | None
    head: Head | None
    head_problem: str | None

    @property
    def present(self) -> bool:
        return any(part is not None for part in self)


def _read_anchor(path: Path) -> _Anchor:
    key: bytes | None = None
    head: Head | None = None
    key_problem = head_problem = None
    try:
        key = _load_key(key_path(path))
    except _Damaged as damaged:
        key_problem = f"{damaged}: " + (
            f"{_ACCESS_FIX}, or restore it" if damaged.access else "restore it"
        ) + " from a backup"
    try:
        head = _load_head(head_path(path))
    except _Damaged as damaged:
        head_problem = str(damaged)
    return _Anchor(key, key_problem, head, head_problem)


def _read_log(path: Path) -> tuple[bytes | None, _Anchor]:
    """The log (None when missing) and, read under the same shared lock so that no append
    falls in between, its key and head."""
    try:
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            return f.read(), _read_anchor(path)
    except FileNotFoundError:
        return None, _read_anchor(path)


def verify(path: Path, cast_root: Path) -> VerifyResult:
    """Check every record's hash, mac, position and link, the log's end against its head,
    each completed invocation's cast prefix, and that casts did not grow beyond what was
    recorded. Incomplete invocations are fine, and so is a head that lags behind the log
    (a writer stopped between appending and rewriting the head) as long as every record
    past the head's position has a valid mac."""
    try:
        data, anchor = _read_log(path)
    except OSError as exc:
        return VerifyResult(False, None, f"{path}: cannot read the audit log: {exc.strerror}")
    key, head = anchor.key, anchor.head
    key_file, head_file = key_path(path), head_path(path)

    def fail(bad: _Bad, chain: _Chain | None = None) -> VerifyResult:
        count, keyed = (chain.count, chain.keyed) if chain else (0, 0)
        return VerifyResult(False, bad.index, bad.message(path), count, keyed)

    if anchor.key_problem is not None:
        return fail(_Bad(None, f"{anchor.key_problem}; no keyed record can be verified "
                               "without it", what=f"the key {key_file}"))
    if data is None:
        if anchor.present:
            names = " and ".join(
                p.name for p, there in ((key_file, key is not None),
                                        (head_file, head is not None or anchor.head_problem))
                if there
            )
            return fail(_Bad(None, f"the audit log was deleted ({names} still there)", what=""))
        return VerifyResult(True, None, f"{path}: no audit log yet (0 records)")
    if anchor.head_problem is not None:
        return fail(_Bad(None, anchor.head_problem, what=f"the head {head_file}"))
    if head is not None and key is None:
        return fail(_Bad(None, f"is missing (deleted?) while the head {head_file} exists: "
                               "restore it to verify the log", what=f"the key {key_file}"))
    if head is not None and key is not None and not head.signed_by(key):
        return fail(_Bad(None, "was not written by this log's key (its mac does not match: "
                               "replaced or forged)", what=f"the head {head_file}"))
    lines, rest = _lines(data)
    chain = _Chain(cast_root, key, key_file, head)
    try:
        for index, raw in enumerate(lines):
            chain.line(index, raw)
        chain.finish(rest, len(lines))
        chain.check_head(head, head_file, len(lines))
        chain.check_casts()
    except _Bad as bad:
        return fail(bad, chain)
    return VerifyResult(True, None, f"{path}: {_ok_message(chain, head)}", chain.count,
                        chain.keyed)


def _ok_message(chain: _Chain, head: Head | None) -> str:
    count, legacy = chain.count, chain.legacy
    text = f"OK, {count} records"
    if legacy and not chain.keyed:
        text += ", not authenticated (written before keyed records)"
    elif legacy:
        text += (f"; the first {legacy} were written before keyed records (authenticated only "
                 "as they were when keyed records began)")
    if chain.open_starts:
        text += f", {len(chain.open_starts)} incomplete"
    if head is not None and head.count < count:
        behind = count - head.count
        text += (f"; the head is {behind} record{'s' if behind > 1 else ''} behind (a writer "
                 "stopped before updating it; every record past it has a valid mac)")
    return text


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
