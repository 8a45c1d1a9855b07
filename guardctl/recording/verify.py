"""Reading the audit log back (`records`) and verifying it (`verify`, `VerifyResult`).

The log is written by guardctl.recording.audit, which describes its records; how they are
hashed and keyed, and the key and head files beside the log, is in
guardctl.recording.auditkey. Both readers take a shared `flock` on the log, so no append is
seen half-written; `verify` reads the key and the head under the same lock.

`verify` checks every record's hash, mac, position (`seq`) and link (`prev`), and the log's
end against its head. So it names the line of a record edited (even with its hash
recomputed), forged, re-chained from some record on, moved in from another log or
reordered, of records removed anywhere, of an inserted unreadable line; and reports a
deleted log, a deleted or forged head, a deleted key. It also checks the casts: each
completed invocation's extent by its sha256, no bytes after the last one, and each
invocation must start its cast where the one before on it ended, unless that one never
completed.

What it accepts: incomplete invocations (a "started" record without a completion); casts
removed by `guardctl sessions prune`, which recorded each one ("pruned") before removing it,
and which the OK line counts; a head
that lags behind the log (a writer killed after appending but before rewriting the head),
as long as every record past the head's position has a valid mac; a torn line closed off by
the record after it, which vouches for it (`torn`) — an unreadable line no record vouches
for was put there by someone else. The OK line counts the torn lines closed off; a torn last
line nothing has closed off yet is reported (the next append closes it off).

**Old logs.** Records written before keyed records (format 1, no `mac`) still verify as a
hash chain, and `verify` says they are not authenticated; once keyed records begin, and past
the head's position, every record needs a mac. Unreadable lines among old records are
accepted as before, when the chain goes on past them.
"""

import fcntl
import hashlib
import hmac
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from guardctl.recording import recorder
from guardctl.recording.audit import (
    COMPLETED,
    GENESIS,
    LEGACY_FORMAT,
    PRUNED,
    STARTED,
    record_seq,
)
from guardctl.recording.auditkey import (
    ACCESS_FIX,
    Damaged,
    Head,
    canonical,
    head_path,
    key_path,
    load_head,
    load_key,
    parse,
    record_hash,
    record_mac,
)

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


def record_lines(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(line as written, record) for each readable line of the log; nothing if it is
    missing."""
    try:
        data = _read_locked(path)
    except FileNotFoundError:
        return
    for raw in _lines(data)[0]:
        record = parse(raw)
        if record is not None:
            yield raw, record


def records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each readable line of the log; nothing if it is missing."""
    try:
        data = _read_locked(path)
    except FileNotFoundError:
        return
    for number, raw in enumerate(_lines(data)[0], start=1):
        record = parse(raw)
        if record is not None:
            yield number, record


# --------------------------------------------------------------------------- verifying


class VerifyResult(NamedTuple):
    ok: bool
    first_bad_index: int | None  # 0-based line index of the first bad record
    message: str
    records: int = 0  # records found valid before the first bad one (all, when ok)
    keyed: int = 0  # of those, records authenticated by the key (the rest predate keyed ones)
    # the only fault is a last line cut short, which the next command closes off
    torn_tail: bool = False


# what a last line cut short is called in verify's message (and how its result is told)
TORN_TAIL = "the last line"


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


def _keyed(record: Mapping[str, Any]) -> bool:
    """Whether a record is (or claims to be) of the keyed format."""
    return record.get("v") != LEGACY_FORMAT or "mac" in record


class _Chain:
    """Verification state, fed one line at a time."""

    __slots__ = (
        "cast_root", "key", "key_file", "log_id", "head_count", "at_head", "prev", "count",
        "legacy", "keyed", "junk", "torn", "open_starts", "starts", "ends", "pruned_at",
        "pruned",
    )

    def __init__(
        self, cast_root: Path, key: bytes | None, key_file: Path, head: Head | None,
        pruned_at: Mapping[str, int] | None = None,
    ) -> None:
        self.cast_root = cast_root
        # cast file -> the line of the last "pruned" record naming it (`pruned_lines`)
        self.pruned_at = dict(pruned_at or {})
        self.pruned = 0
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
        self.torn = 0  # torn lines closed off by the record after them, which vouches for them
        self.open_starts: dict[str, tuple[int, dict[str, Any]]] = {}
        # per cast file: the last invocation started on it (offset, index), and the last
        # one completed (size, index, index of its started record)
        self.starts: dict[str, tuple[int, int]] = {}
        self.ends: dict[str, tuple[int, int, int]] = {}

    def line(self, index: int, raw: bytes) -> None:
        record = parse(raw)
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
            self.torn += 1
        elif torn is not None:
            raise _Bad(index, "closed off a torn line that is no longer there (removed)")

    def _position(self, index: int, record: dict[str, Any]) -> None:
        seq, expected = record_seq(record), self.count + 1
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
        elif status == PRUNED:
            ref = record.get("cast")
            name = self._cast_file(index, ref if isinstance(ref, dict) else {})
            # what the cast held is gone: a cast of that name from now on is a new one
            self.starts.pop(name, None)
            self.ends.pop(name, None)
            self.pruned += 1
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
        if self.pruned_at.get(name, -1) > start_index:
            # removed by retention since this invocation started (a keyed "pruned" record
            # says so; prune may take the cast between its end and this record)
            return
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
            raise _Bad(total, "is cut short (a writer stopped mid-write: a crash, or a full "
                              "disk); the next guardctl command closes it off and vouches for "
                              "it in its record", what=TORN_TAIL)
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

    def check_casts(self, sizes: Mapping[str, int]) -> None:
        """Bytes after a cast's last recorded extent are fine only when an invocation
        started on it after that one is still open (running, or killed): anything else was
        added later. `sizes`: the casts' sizes taken with the log (`_cast_sizes`)."""
        for name, (size, index, _) in self.ends.items():
            if self._completed_end(name) is None:
                continue  # checked when it started: at or after this extent's end
            actual = sizes.get(name)
            if actual is not None and actual > size:
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
        key = load_key(key_path(path))
    except Damaged as damaged:
        key_problem = f"{damaged}: " + (
            f"{ACCESS_FIX}, or restore it" if damaged.access else "restore it"
        ) + " from a backup"
    try:
        head = load_head(head_path(path))
    except Damaged as damaged:
        head_problem = str(damaged)
    return _Anchor(key, key_problem, head, head_problem)


def _cast_sizes(cast_root: Path) -> dict[str, int]:
    """The size of each cast file, by name (nothing when the folder is missing)."""
    try:
        with os.scandir(cast_root) as entries:
            return {
                e.name: e.stat(follow_symlinks=False).st_size for e in entries
                if e.is_file(follow_symlinks=False)
            }
    except OSError:
        return {}  # missing or unreadable: reading each cast's extent says which


class _Snapshot(NamedTuple):
    """The log (None when missing), its key and head, and its casts' sizes, read under one
    shared lock on the log. A cast grows only after its invocation's "started" record, which
    an append writes under the exclusive lock: so no cast size seen here belongs to an
    invocation the log read here does not name, even with writers running (sizes taken
    after the lock is dropped would take a new invocation's bytes for bytes added later)."""

    data: bytes | None
    anchor: _Anchor
    sizes: dict[str, int]


def _read_log(path: Path, cast_root: Path) -> _Snapshot:
    try:
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            return _Snapshot(f.read(), _read_anchor(path), _cast_sizes(cast_root))
    except FileNotFoundError:
        return _Snapshot(None, _read_anchor(path), {})


def verify(path: Path, cast_root: Path) -> VerifyResult:
    """Check every record's hash, mac, position and link, the log's end against its head,
    each completed invocation's cast prefix, and that casts did not grow beyond what was
    recorded. Incomplete invocations are fine, and so is a head that lags behind the log
    (a writer stopped between appending and rewriting the head) as long as every record
    past the head's position has a valid mac."""
    try:
        data, anchor, sizes = _read_log(path, cast_root)
    except OSError as exc:
        return VerifyResult(False, None, f"{path}: cannot read the audit log: {exc.strerror}")
    key, head = anchor.key, anchor.head
    key_file, head_file = key_path(path), head_path(path)

    def fail(bad: _Bad, chain: _Chain | None = None) -> VerifyResult:
        count, keyed = (chain.count, chain.keyed) if chain else (0, 0)
        return VerifyResult(False, bad.index, bad.message(path), count, keyed,
                            torn_tail=bad.what == TORN_TAIL)

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
    chain = _Chain(cast_root, key, key_file, head, pruned_lines(lines))
    try:
        for index, raw in enumerate(lines):
            chain.line(index, raw)
        chain.finish(rest, len(lines))
        chain.check_head(head, head_file, len(lines))
        chain.check_casts(sizes)
    except _Bad as bad:
        return fail(bad, chain)
    return VerifyResult(True, None, f"{path}: {_ok_message(chain, head)}", chain.count,
                        chain.keyed)


def pruned_lines(lines: list[bytes]) -> dict[str, int]:
    """Cast file -> the line of the last "pruned" record naming it. Read ahead of the
    chain, so that an extent recorded before its cast was pruned is not read; the records
    themselves are checked in their turn like any other."""
    found: dict[str, int] = {}
    for index, raw in enumerate(lines):
        if b'"status":"pruned"' not in raw:
            continue
        record = parse(raw)
        ref = record.get("cast") if record is not None else None
        if record is not None and record.get("status") == PRUNED and isinstance(ref, dict):
            found[str(ref.get("file"))] = index
    return found


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
    if chain.pruned:
        text += (f", {chain.pruned} cast{'s' if chain.pruned > 1 else ''} pruned by retention "
                 "(their records kept)")
    if chain.torn:
        text += (f", {chain.torn} torn line{'s' if chain.torn > 1 else ''} closed off (a writer "
                 "stopped mid-write)")
    if head is not None and head.count < count:
        behind = count - head.count
        text += (f"; the head is {behind} record{'s' if behind > 1 else ''} behind (a writer "
                 "stopped before updating it; every record past it has a valid mac)")
    return text
