"""`guardctl audit verify --against s3://BUCKET/PREFIX`: the local log held against what the
s3 sink shipped (guardctl.shipping.s3 describes the objects).

The local checks (`verify`) cannot see a log that whoever holds its key cut short or
re-chained and signed again. The shipped heads can: each says that the log LOG held COUNT
records, the last of them hashing to LAST, and none can be changed or removed in the store.
So for every shipped head, the local log must have that identity, at least COUNT records,
and record COUNT must hash to LAST; the latest head must carry the local key's mac. A
shipped log that is not the local one is reported (the log was replaced or started anew),
and so is a local log that was never shipped. Shipped records and cast parts are compared
byte for byte with the local ones (a cast part whose local cast is gone is skipped: pruned,
which the local checks account for).

The store is reached as the config's `ship: {s3: …}` reaches it when that names the same
bucket (its endpoint, region and profile), else with boto3's usual settings
(AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_PROFILE); credentials as boto3 finds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from guardctl.recording.audit import GENESIS, record_seq
from guardctl.recording.auditkey import (
    Damaged,
    head_of,
    head_path,
    key_path,
    load_head,
    load_key,
)
from guardctl.recording.verify import record_lines
from guardctl.shipping.s3 import (
    CASTS,
    HEADS,
    RECORDS,
    Settings,
    Store,
    parse_settings,
    parse_url,
)

_T = TypeVar("_T")
_HEAD_KEY = re.compile(r"heads/([^/]+)/(\d+)-([0-9a-f]{64})\.json")
_RECORDS_KEY = re.compile(r"records/[^/]+/(\d+)-(\d+)\.jsonl")
_CAST_KEY = re.compile(r"casts/[^/]+/([^/]+)/(\d+)-(\d+)-(\d+)")


class Local(NamedTuple):
    """The local log as `verify_against` compares it: identity, lines and hashes by seq."""

    log: str | None
    lines: dict[int, bytes]
    hashes: dict[int, str]
    key: bytes | None

    @property
    def records(self) -> int:
        return max(self.lines, default=0)


class Outcome(NamedTuple):
    problems: list[str]
    summary: str


def _local(log_path: Path) -> Local:
    lines: dict[int, bytes] = {}
    hashes = {0: GENESIS}
    last_log = None
    for position, (raw, record) in enumerate(record_lines(log_path), start=1):
        seq = record_seq(record) or position
        lines[seq], hashes[seq] = raw, str(record.get("hash"))
        last_log = record.get("log", last_log)
    head = _or_none(load_head, head_path(log_path))
    log = head.log if head is not None else last_log
    key = _or_none(load_key, key_path(log_path))
    return Local(log if isinstance(log, str) else None, lines, hashes, key)


def _or_none(load: Callable[[Path], _T | None], path: Path) -> _T | None:
    """The key or head file's contents; None when damaged (the local checks report it)."""
    try:
        return load(path)
    except Damaged:
        return None


def _heads(store: Store) -> dict[str, list[tuple[int, str, str]]]:
    """Log identity -> its shipped heads (count, last hash, key), by count."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    for key in store.keys(HEADS):
        match = _HEAD_KEY.fullmatch(key)
        if match is not None:
            found.setdefault(match[1], []).append((int(match[2]), match[3], key))
    return {log: sorted(heads) for log, heads in found.items()}


def _check_heads(url: str, local: Local, heads: list[tuple[int, str, str]]) -> Iterator[str]:
    latest = heads[-1][0]
    if latest > local.records:
        gone = f"record {latest}" if latest == local.records + 1 else (
            f"records {local.records + 1}-{latest}"
        )
        yield (f"{url}: {gone} removed from the end of the local log: a head shipped there "
               f"counts {latest} records, the log holds {local.records}")
    for count, last, _ in heads:
        if count <= local.records and local.hashes.get(count) != last:
            yield (f"{url}: record {count} of the local log is not the one shipped (a head "
                   "shipped there names another hash): rewritten, or the log re-chained")
            return


def _check_latest(url: str, store: Store, local: Local, key: str, count: int,
                  last: str) -> Iterator[str]:
    """The latest head's body: the head its name says, signed by the local key."""
    try:
        head = head_of(store.get(key))
    except Damaged:
        head = None
    if head is None or (head.log, head.count, head.last) != (local.log, count, last):
        yield f"{url}: {key} is not the head its name says (put there by someone else)"
    elif local.key is not None and not head.signed_by(local.key):
        yield (f"{url}: {key} was not signed by the local log's key (the key was replaced, or "
               "the head forged)")


def _check_records(url: str, store: Store, local: Local) -> tuple[int, list[str]]:
    """Shipped records against the local ones, by seq: how many records (batches sent again
    may overlap), and the first difference."""
    compared: set[int] = set()
    for key in store.keys(RECORDS, local.log or ""):
        match = _RECORDS_KEY.fullmatch(key)
        if match is None:
            continue
        for seq, line in enumerate(store.get(key).splitlines(), start=int(match[1])):
            compared.add(seq)
            if seq not in local.lines:
                return len(compared), [f"{url}: record {seq} was shipped ({key}) but is not in "
                                       "the local log (removed)"]
            if local.lines[seq] != line:
                return len(compared), [f"{url}: record {seq} differs from the copy shipped in "
                                       f"{key} (edited, or the log re-chained)"]
    return len(compared), []


def _check_casts(url: str, store: Store, local: Local, cast_root: Path) -> tuple[int, list[str]]:
    """Shipped cast parts against the local casts' bytes (a cast gone locally is skipped)."""
    compared = 0
    for key in store.keys(CASTS, local.log or ""):
        match = _CAST_KEY.fullmatch(key)
        if match is None:
            continue
        name, offset, size = match[1], int(match[3]), int(match[4])
        try:
            with open(cast_root / name, "rb") as f:
                f.seek(offset)
                mine = f.read(size - offset)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return compared, [f"{url}: cast {name} cannot be read: {exc.strerror}"]
        compared += 1
        if mine != store.get(key):
            return compared, [f"{url}: cast {name} bytes {offset}-{size} differ from the copy "
                              f"shipped in {key} (changed after it was shipped)"]
    return compared, []


def store_for(url: str, configured: Mapping[str, Any] | None) -> Store:
    """The store at `url`, reached as the config's `ship: {s3: configured}` reaches it when
    that names the same bucket (endpoint, region, profile), else by boto3's environment."""
    bucket, prefix = parse_url(url)
    settings = Settings(bucket=bucket, prefix=prefix, object_lock=False)
    if configured is not None:
        shipping = parse_settings(configured)
        if shipping.bucket == bucket:
            settings = settings._replace(endpoint=shipping.endpoint, region=shipping.region,
                                         profile=shipping.profile)
    return Store(settings)


def verify_against(
    url: str, log_path: Path, cast_root: Path, configured: Mapping[str, Any] | None = None
) -> Outcome:
    """Compare the local log with what was shipped to `url` (`store_for`). Raises ShipError
    (one line) when the store cannot be read."""
    store = store_for(url, configured)
    local = _local(log_path)
    shipped = _heads(store)
    problems = [
        f"{url}: holds log {log} (heads up to record {heads[-1][0]}), which is not the local "
        f"log {local.log}: the log was replaced or started anew"
        for log, heads in shipped.items() if log != local.log
    ]
    mine = shipped.get(local.log or "")
    if not mine:
        if local.lines:
            problems.append(f"{url}: the local log {local.log} was never shipped there (no head "
                            "of it): nothing proves it was not rewritten")
        return Outcome(problems, f"{url}: nothing shipped yet, and no local records")
    problems += _check_heads(url, local, mine)
    latest, last, key = mine[-1]
    problems += _check_latest(url, store, local, key, latest, last)
    records, bad_records = _check_records(url, store, local)
    parts, bad_casts = _check_casts(url, store, local, cast_root)
    problems += bad_records + bad_casts
    behind = local.records - latest
    summary = (f"{url}: OK, the local log matches {len(mine)} shipped head"
               f"{'s' if len(mine) > 1 else ''} (the latest at record {latest}), {records} "
               f"shipped records and {parts} cast parts")
    if behind > 0:
        summary += f"; the last {behind} records are not shipped yet"
    return Outcome(problems, summary)
