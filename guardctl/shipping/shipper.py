"""Shipping the audit log's records to the sinks the config's `ship:` key names.

```yaml
ship:
  syslog: {address: 'udp://logs.example:514'}    # guardctl.shipping.syslog
  otlp: {endpoint: 'https://otel.example:4318/v1/logs'}   # guardctl.shipping.otlp
```

Each sink has a cursor in the state folder (`ship/NAME.cursor`, see `backlog`): records past
it are read in batches of at most BATCH_RECORDS (about BATCH_BYTES), handed to the sink, and
the cursor moves only once the sink took the whole batch. A sink that fails keeps its cursor
and the reason (`ship/NAME.error`); the records wait in audit.jsonl, which is the backlog, and
go at the next try: `guardctl audit ship` (same-user mode: a cron job or systemd timer), or
the broker's shipper, which retries with a doubling pause. One shipper at a time per sink
(`ship/NAME.lock`): two would send the same records twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from guardctl.atomic import write_atomic
from guardctl.config import load_recording
from guardctl.errors import UsageError
from guardctl.recording.audit import iso_time, log_path
from guardctl.recording.auditkey import head_path
from guardctl.recording.recorder import cast_dir, private_dir
from guardctl.shipping.backlog import Cursor, cast_files_past, pending, read_batch, still_there
from guardctl.shipping.base import SINKS, ShipContext, ShipError, Sink

KEY = "ship"
BATCH_RECORDS = 256
BATCH_BYTES = 4 << 20
SHIP_DIR = "ship"
EXAMPLE = "e.g. ship: {syslog: {address: 'udp://127.0.0.1:514'}}"


# --------------------------------------------------------------------------- settings


def sink_settings(config: Path, cache_dir: Path | None = None) -> dict[str, Mapping[str, Any]]:
    """The `ship:` key of the config file at `config`, its shape checked (the sinks check
    their own settings in `open_sinks`); empty when it has none."""
    raw = load_recording(config, cache_dir).get(KEY)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"{config}: 'ship' must map sink names ({', '.join(sorted(SINKS))}) "
                         f"to their settings, {EXAMPLE}")
    for name, settings in raw.items():
        if name not in SINKS:
            raise UsageError(f"{config}: ship.{name}: no such sink; the sinks are "
                             f"{', '.join(sorted(SINKS))}")
        if not isinstance(settings, dict):
            raise UsageError(f"{config}: ship.{name} must be a mapping of its settings, "
                             f"{EXAMPLE}")
    return raw


def make_sink(config: Path, name: str, settings: Mapping[str, Any]) -> Sink:
    """The sink `name` with its settings; UsageError names the key and the fix."""
    module_name, _, function = SINKS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise UsageError(f"{config}: ship.{name}: this guardctl has no {name} sink; "
                         "upgrade guardctl") from None
    try:
        sink: Sink = getattr(module, function)(settings)
    except ShipError as err:
        raise UsageError(f"{config}: ship.{name}: {err}") from None
    return sink


def open_sinks(config: Path, cache_dir: Path | None = None) -> list[Sink]:
    """Every configured sink, made (UsageError: the first bad setting)."""
    sinks: list[Sink] = []
    try:
        for name, settings in sink_settings(config, cache_dir).items():
            sinks.append(make_sink(config, name, settings))
    except BaseException:
        close_all(sinks)
        raise
    return sinks


def checked_names(config: Path, cache_dir: Path | None = None) -> list[str]:
    """The configured sinks' names, after each checked its settings."""
    sinks = open_sinks(config, cache_dir)
    close_all(sinks)
    return [sink.name for sink in sinks]


def close_all(sinks: Sequence[Sink]) -> None:
    for sink in sinks:
        with contextlib.suppress(Exception):
            sink.close()


# --------------------------------------------------------------------------- state files


def _path(state_dir: Path, name: str, suffix: str) -> Path:
    return state_dir / SHIP_DIR / f"{name}.{suffix}"


def load_cursor(state_dir: Path, name: str) -> Cursor:
    """Where sink `name` stands (the start, when it never shipped or its file is damaged)."""
    try:
        data = json.loads(_path(state_dir, name, "cursor").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Cursor()
    return Cursor.of(data) or Cursor()


class Failure(NamedTuple):
    error: str
    at: str  # when it last failed (UTC)
    failures: int  # tries that failed in a row


def load_failure(state_dir: Path, name: str) -> Failure | None:
    try:
        data = json.loads(_path(state_dir, name, "error").read_text(encoding="utf-8"))
        return Failure(str(data["error"]), str(data["at"]), int(data["failures"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_failure(state_dir: Path, name: str, error: str) -> None:
    before = load_failure(state_dir, name)
    failure = Failure(error, iso_time(time.time()), (before.failures if before else 0) + 1)
    write_atomic(_path(state_dir, name, "error"), json.dumps(failure._asdict()) + "\n")


@contextlib.contextmanager
def _locked(state_dir: Path, name: str) -> Iterator[bool]:
    """Whether this process got sink `name`'s lock (held for the block)."""
    private_dir(state_dir / SHIP_DIR)
    fd = os.open(_path(state_dir, name, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- shipping


class Outcome(NamedTuple):
    """What one pass of shipping to a sink did."""

    sink: str
    shipped: int
    error: str | None = None  # the sink's one-line reason; the records wait for the next try
    pending: int = 0  # records left when it failed
    new_log: bool = False  # the cursor named another log: shipped from the new one's start
    busy: bool = False  # another process ships to this sink now


def ship_pending(state_dir: Path, sink: Sink) -> Outcome:
    """Ship every record past the sink's cursor, batch by batch, until none is left or the
    sink fails. Never raises for the sink's sake: its failure is in the outcome (and
    `ship/NAME.error`, for doctor)."""
    with _locked(state_dir, sink.name) as mine:
        if not mine:
            return Outcome(sink.name, 0, busy=True)
        return _ship_locked(state_dir, sink)


def _ship_locked(state_dir: Path, sink: Sink) -> Outcome:
    log = log_path(state_dir)
    cursor = load_cursor(state_dir, sink.name)
    new_log = not still_there(log, cursor)
    if new_log:
        cursor = Cursor()
    shipped = 0
    while True:
        entries, after = read_batch(log, cursor, BATCH_RECORDS, BATCH_BYTES)
        if after == cursor:
            break
        if entries:
            try:
                sink.send(entries, ShipContext(log, cast_dir(state_dir), _head(log)))
            except Exception as exc:  # noqa: BLE001 - a sink's fault must not stop the others
                error = str(exc) if isinstance(exc, ShipError) else f"{type(exc).__name__}: {exc}"
                _save_failure(state_dir, sink.name, error)
                return Outcome(sink.name, shipped, error, pending(log, cursor)[0], new_log)
        write_atomic(_path(state_dir, sink.name, "cursor"), after.to_json())
        cursor = after
        shipped += len(entries)
    _path(state_dir, sink.name, "error").unlink(missing_ok=True)
    return Outcome(sink.name, shipped, new_log=new_log)


def _head(log: Path) -> bytes | None:
    try:
        return head_path(log).read_bytes()
    except OSError:
        return None


def describe(outcome: Outcome) -> str:
    """One line for `guardctl audit ship`."""
    if outcome.busy:
        return f"{outcome.sink}: another guardctl process is shipping to it now"
    fresh = " (a new audit log: shipped from its first record)" if outcome.new_log else ""
    records = f"{outcome.shipped} record{'' if outcome.shipped == 1 else 's'}"
    if outcome.error is not None:
        before = f" ({records} shipped before that)" if outcome.shipped else ""
        return (f"{outcome.sink}: {outcome.pending} records not shipped{before}: "
                f"{outcome.error}; they stay in the audit log for the next try")
    if outcome.shipped == 0:
        return f"{outcome.sink}: nothing to ship{fresh}"
    return f"{outcome.sink}: shipped {records}; none pending{fresh}"


# --------------------------------------------------------------------------- lag


class Lag(NamedTuple):
    pending: int  # records not shipped yet
    oldest: str | None  # the time of the first of them
    failure: Failure | None


def lag(state_dir: Path, name: str) -> Lag:
    """How far sink `name` is behind the log (reads the records past its cursor)."""
    log = log_path(state_dir)
    cursor = load_cursor(state_dir, name)
    count, oldest = pending(log, cursor if still_there(log, cursor) else Cursor())
    return Lag(count, oldest, load_failure(state_dir, name))


def unshipped_casts(state_dir: Path, names: Sequence[str]) -> dict[str, list[str]]:
    """Cast file -> the sinks that have not shipped every record naming it."""
    log = log_path(state_dir)
    held: dict[str, list[str]] = {}
    for name in names:
        cursor = load_cursor(state_dir, name)
        for cast in cast_files_past(log, cursor if still_there(log, cursor) else Cursor()):
            held.setdefault(cast, []).append(name)
    return held
