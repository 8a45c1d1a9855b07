"""The shipping interface: what a sink is handed and what it must do (placeholder of the
`ship` helper's module, identical to the agreed interface; the lead keeps theirs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class ShipError(Exception):
    """One-line reason a batch could not be shipped (the message names the fix)."""


@dataclass(frozen=True)
class Entry:
    seq: int  # the record's position in audit.jsonl, 1-based (its "seq")
    line: bytes  # the record's line exactly as in audit.jsonl, no newline
    record: Mapping[str, Any]  # the parsed record


@dataclass(frozen=True)
class ShipContext:
    log_path: Path  # audit.jsonl
    cast_root: Path  # the casts folder (records name cast files relative to it)
    head: bytes | None  # the audit.head file's bytes read after the batch (signed head)


class Sink(Protocol):
    name: str  # "syslog" | "otlp" | "s3"

    def send(self, entries: Sequence[Entry], ctx: ShipContext) -> None:
        """All entries or raise ShipError; idempotent: after a failure the same entries are
        sent again."""

    def close(self) -> None: ...


SINKS: dict[str, str] = {
    "syslog": "guardctl.shipping.syslog:make",
    "otlp": "guardctl.shipping.otlp:make",
    "s3": "guardctl.shipping.s3:make",
}
