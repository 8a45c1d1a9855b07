"""The audit log as each sink's backlog: where a sink's cursor stands, and the records past it,
read in bounded batches.

A cursor is a byte offset into audit.jsonl (always just after a line's newline) plus what
names the line before it: its sha256, and the log's id. Appends never change what lies
before the offset, so when that line is no longer there the log is another one (moved away
and a new one started): shipping then starts again from the new log's first record.

Only whole lines count: a line without its newline is still being written, or torn (then
the next append closes it off, and it is skipped as the unreadable line it is). A batch holds
at most `max_records` records and about `max_bytes` of them, however far behind the sink is.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from guardctl.recording.audit import record_seq
from guardctl.recording.auditkey import parse
from guardctl.recording.recorder import line_start
from guardctl.shipping.base import Entry

BLOCK = 1 << 16


@dataclass(frozen=True)
class Cursor:
    """What a sink has shipped of the log."""

    offset: int = 0  # bytes of audit.jsonl shipped, ending just after a newline
    seq: int = 0  # the last shipped record's seq
    count: int = 0  # records shipped from this log
    log: str = ""  # the log's id (its records' "log"); "" before its first keyed record
    last: str = ""  # sha256 of the line that ends at `offset`

    @classmethod
    def of(cls, data: Any) -> Cursor | None:
        """The cursor a state file held (None: not one)."""
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            return None
        fields = (data["offset"], data["seq"], data["count"], data["log"], data["last"])
        kinds = (int, int, int, str, str)
        if not all(isinstance(v, k) and not isinstance(v, bool)
                   for v, k in zip(fields, kinds, strict=True)):
            return None
        return cls(*fields)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def still_there(path: Path, cursor: Cursor) -> bool:
    """Whether the log at `path` still holds, just before `cursor.offset`, the line the cursor
    names (False: this is another log)."""
    if cursor.offset == 0:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_size < cursor.offset:
            return False
        start = line_start(fd, cursor.offset - 1)
        raw = os.pread(fd, cursor.offset - 1 - start, start)
        return os.pread(fd, 1, cursor.offset - 1) == b"\n" and _digest(raw) == cursor.last
    finally:
        os.close(fd)


def _lines(path: Path, offset: int) -> Iterator[tuple[bytes, int]]:
    """Each whole line from `offset` on, with the offset just after it; holds one block and
    one line at a time."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the generator's end
    except FileNotFoundError:
        return
    with handle:
        handle.seek(offset)
        rest = b""  # what was read past the last whole line; starts at `offset`
        while block := handle.read(BLOCK):
            rest += block
            start = 0
            while (end := rest.find(b"\n", start)) >= 0:
                yield rest[start:end], offset + end + 1
                start = end + 1
            offset += start
            rest = rest[start:]


def _advanced(cursor: Cursor, raw: bytes, offset: int, record: dict[str, Any] | None) -> Cursor:
    moved = replace(cursor, offset=offset, last=_digest(raw))
    if record is None:
        return moved
    count = cursor.count + 1
    seq = record_seq(record)
    log = record.get("log")
    return replace(moved, count=count, seq=seq if seq is not None else count,
                   log=log if isinstance(log, str) else cursor.log)


def _record(raw: bytes) -> dict[str, Any] | None:
    """The record on a line (None: not one, as a torn line closed off by the next append)."""
    record = parse(raw)
    return record if record is not None and isinstance(record.get("hash"), str) else None


def read_batch(
    path: Path, cursor: Cursor, max_records: int, max_bytes: int
) -> tuple[list[Entry], Cursor]:
    """The next records past `cursor` (at most `max_records`, about `max_bytes`) and the
    cursor after them; lines that are not records are passed over."""
    entries: list[Entry] = []
    size = 0
    for raw, offset in _lines(path, cursor.offset):
        record = _record(raw)
        cursor = _advanced(cursor, raw, offset, record)
        if record is not None:
            entries.append(Entry(cursor.seq, raw, record))
            size += len(raw)
            if len(entries) >= max_records or size >= max_bytes:
                break
    return entries, cursor


def nanoseconds(text: object) -> int | None:
    """`2026-01-01T12:00:00.123Z` (audit.iso_time) as ns since the epoch; None if not one."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    whole, _, fraction = text[:-1].partition(".")
    try:
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        nanos = int((fraction or "0").ljust(9, "0")[:9])
    except ValueError:
        return None
    return seconds * 1_000_000_000 + nanos


def pending(path: Path, cursor: Cursor) -> tuple[int, str | None]:
    """How many records lie past `cursor`, and the time of the first of them."""
    count, first = 0, None
    for raw, _ in _lines(path, cursor.offset):
        record = _record(raw)
        if record is not None:
            count += 1
            if first is None:
                first = str(record.get("time", "?"))
    return count, first


def cast_files_past(path: Path, cursor: Cursor) -> set[str]:
    """The cast files named by the records past `cursor`."""
    found: set[str] = set()
    for raw, _ in _lines(path, cursor.offset):
        record = _record(raw)
        cast = record.get("cast") if record is not None else None
        if isinstance(cast, dict) and isinstance(cast.get("file"), str):
            found.add(cast["file"])
    return found
