"""The interface between the shipping framework and its sinks.

The framework (guardctl.shipping.shipper) reads batches of records from the local audit log,
past each sink's cursor, and hands them to the sink's `send`; the cursor moves only after
`send` returned, so a sink that fails is handed the same entries again later (`send` must be
idempotent). The local audit.jsonl is the backlog: nothing is dropped when a sink is down.

A sink lives in its own module, named in `SINKS` as "module:function"; that function,
`make(settings) -> Sink`, checks the sink's settings from the config's `ship:` key (an
unknown key or a wrong type: ShipError naming the key and the fix) and imports the sink's
optional dependency lazily (missing: ShipError naming `pip install 'guardctl[EXTRA]'`), so
that nothing here costs an import until a sink is used.
"""

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
        """Ship all `entries` or raise ShipError. Must be idempotent: after a failure the
        same entries are sent again."""

    def close(self) -> None:
        """Release connections and clients; the sink is not used after this."""


# sink name -> "module:function" of its make(settings: Mapping[str, Any]) -> Sink
SINKS: dict[str, str] = {
    "syslog": "guardctl.shipping.syslog:make",
    "otlp": "guardctl.shipping.otlp:make",
    "s3": "guardctl.shipping.s3:make",
}
