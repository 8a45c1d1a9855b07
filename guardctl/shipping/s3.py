"""The S3 sink: audit records, casts and signed chain heads in S3-compatible object storage,
each object written once under Object Lock, so that the log's past is held out of reach of
whoever holds the machine (and the log's key).

Configured as `ship: {s3: {bucket: B, prefix: P, ...}}` (`SETTINGS`); boto3 comes with the
extra `guardctl[s3]` and is imported only here. Credentials come from boto3's usual chain
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE or `profile:`,
~/.aws, an instance or pod role); the endpoint from `endpoint:` or AWS_ENDPOINT_URL; no
secret is ever in guardctl's config.

Objects (keys under PREFIX/, LOG the log's identity, numbers zero-padded to 12 digits):

- `records/LOG/FIRST-LAST.jsonl`: one per batch, the records' lines as in audit.jsonl. A
  batch sent again after a failure may be cut differently, so batches may overlap: a reader
  goes by each record's `seq` (`verify_against` does).
- `casts/LOG/FILE/SEQ-OFFSET-SIZE`: for each completed invocation (its record at SEQ), the
  bytes OFFSET..SIZE of cast FILE it wrote (OFFSET from its started record). Casts are
  append-only and shared by a session's invocations, so each invocation's part is its own
  object; bytes of an invocation that never completed are not shipped. A cast already gone
  (pruned before it was shipped) is skipped: its record, shipped, still names its sha256.
- `heads/LOG/COUNT-LAST.json`: after each batch, the signed head (`audit.head`: log
  identity, record count, last record's hash, HMAC) as it was then.

Every object is put once (`If-None-Match: *`: one already there is left as it is, so a
batch sent again changes nothing) with a Content-MD5 and, unless `object-lock: false`,
Object Lock retention (`lock-mode`, `retention-days`): COMPLIANCE by default, which nobody,
the bucket's owner included, can shorten or lift. A bucket without Object Lock is refused.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

from guardctl.recording.audit import COMPLETED, STARTED
from guardctl.recording.auditkey import Damaged, Head, head_of
from guardctl.recording.verify import records
from guardctl.shipping.base import Entry, ShipContext, ShipError

NAME = "s3"
INSTALL = "pip install 'guardctl[s3]'"
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
DEFAULT_RETENTION_DAYS = 365
RECORDS, CASTS, HEADS = "records", "casts", "heads"
# a log with no head yet (records from before keyed records) ships under this name
NO_LOG = "unkeyed"
# the framework retries a failed batch: fail fast rather than hold the batch. Checksums
# only where required: every put carries its Content-MD5 (which Object Lock requires), and
# boto3's default trailing checksums are refused by some S3-compatible stores
_CLIENT = {
    "connect_timeout": 10, "read_timeout": 60, "retries": {"max_attempts": 2},
    "request_checksum_calculation": "when_required",
}
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _pad(number: int) -> str:
    return f"{number:012d}"


class Settings(NamedTuple):
    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    lock_mode: str = LOCK_MODES[0]
    object_lock: bool = True

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


# config key -> (Settings field, the type it takes, what the fix says it must be)
SETTINGS: dict[str, tuple[str, type, str]] = {
    "bucket": ("bucket", str, "the bucket's name"),
    "prefix": ("prefix", str, "a key prefix such as guardctl/prod"),
    "endpoint": ("endpoint", str, "the store's URL, e.g. https://minio.example:9000"),
    "region": ("region", str, "a region name such as eu-west-1"),
    "profile": ("profile", str, "a profile name of ~/.aws/config"),
    "retention-days": ("retention_days", int, "a whole number of days, at least 1"),
    "lock-mode": ("lock_mode", str, "COMPLIANCE or GOVERNANCE"),
    "object-lock": ("object_lock", bool, "true or false"),
}


def parse_settings(raw: Mapping[str, Any]) -> Settings:
    """`ship: {s3: …}` checked: unknown keys, wrong types and bad values are ShipError."""
    if not isinstance(raw, Mapping):
        raise ShipError("ship.s3 must be a mapping of settings (bucket, prefix, …)")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in SETTINGS:
            raise ShipError(f"ship.s3: unknown key {key!r}: the keys are {', '.join(SETTINGS)}")
        field, kind, fix = SETTINGS[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ShipError(f"ship.s3.{key}: {value!r} is not {fix}")
        fields[field] = value
    if "bucket" not in fields:
        raise ShipError("ship.s3: no bucket: add bucket: NAME")
    settings = Settings(**fields)._replace(prefix=str(fields.get("prefix", "")).strip("/"))
    if not _BUCKET.fullmatch(settings.bucket):
        raise ShipError(f"ship.s3.bucket: {settings.bucket!r} is not a bucket name")
    if settings.lock_mode not in LOCK_MODES:
        raise ShipError(f"ship.s3.lock-mode: {settings.lock_mode!r} is not COMPLIANCE or "
                        "GOVERNANCE")
    if settings.retention_days < 1:
        raise ShipError(f"ship.s3.retention-days: {settings.retention_days} is not "
                        f"{SETTINGS['retention-days'][2]}")
    return settings


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://BUCKET/PREFIX`."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", url)
    if match is None or not _BUCKET.fullmatch(match[1]):
        raise ShipError(f"{url!r} is not s3://BUCKET/PREFIX")
    return match[1], match[2].strip("/")


# --------------------------------------------------------------------------- the store


class Store:
    """One bucket and prefix, through boto3: objects written once, listed and read back.
    Every failure is a ShipError of one line (`_calls`)."""

    def __init__(self, settings: Settings) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ShipError(f"the s3 sink needs boto3: {INSTALL}") from None
        self.settings = settings
        try:
            session = boto3.session.Session(
                profile_name=settings.profile, region_name=settings.region
            )
            self.client = session.client(
                "s3", endpoint_url=settings.endpoint, config=Config(**_CLIENT)
            )
        except Exception as exc:  # botocore's errors have no common base beyond Exception
            raise ShipError(f"{settings.url}: {_reason(exc)}") from None
        self.endpoint = str(self.client.meta.endpoint_url)

    def key(self, *parts: str) -> str:
        return "/".join((self.settings.prefix, *parts) if self.settings.prefix else parts)

    @contextmanager
    def _calls(self, doing: str) -> Iterator[None]:
        try:
            yield
        except ShipError:
            raise
        except Exception as exc:
            raise ShipError(f"{self.settings.url} ({self.endpoint}): {doing}: "
                            f"{_reason(exc)}") from None

    def check_lock(self) -> None:
        """Refuse a bucket without Object Lock, unless the settings say `object-lock: false`."""
        with self._calls("reading the bucket's Object Lock configuration"):
            try:
                found = self.client.get_object_lock_configuration(Bucket=self.settings.bucket)
            except self.client.exceptions.ClientError as exc:
                if _code(exc) != "ObjectLockConfigurationNotFoundError":
                    raise
                found = {}
        enabled = found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled" and self.settings.object_lock:
            raise ShipError(f"bucket {self.settings.bucket} has no Object Lock, so what is "
                            "shipped could be deleted or overwritten: use a bucket created with "
                            "Object Lock enabled, or set object-lock: false in ship.s3")

    def put_once(self, key: str, body: bytes) -> None:
        """Write `key` unless it exists (then it is left as it is), with Object Lock."""
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        extra: dict[str, Any] = {}
        if self.settings.object_lock:
            until = datetime.now(timezone.utc) + timedelta(days=self.settings.retention_days)
            extra = {"ObjectLockMode": self.settings.lock_mode, "ObjectLockRetainUntilDate": until}
        with self._calls(f"writing {key}"):
            try:
                self.client.put_object(
                    Bucket=self.settings.bucket, Key=key, Body=body, ContentMD5=md5,
                    IfNoneMatch="*", **extra,
                )
            except self.client.exceptions.ClientError as exc:
                # there already (412), or being written by another sender right now (409)
                if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise

    def keys(self, *under: str) -> list[str]:
        """Every key under PREFIX/UNDER/…, in order, relative to the prefix."""
        start = self.key(*under, "")
        found: list[str] = []
        with self._calls(f"listing {start}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=start
            )
            for page in pages:
                found.extend(item["Key"] for item in page.get("Contents", ()))
        cut = len(self.key("")) if self.settings.prefix else 0
        return [k[cut:] for k in found]

    def get(self, key: str) -> bytes:
        with self._calls(f"reading {self.key(key)}"):
            body = self.client.get_object(Bucket=self.settings.bucket, Key=self.key(key))["Body"]
            return bytes(body.read())


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _reason(exc: Exception) -> str:
    """One line for what boto3 raised, naming the fix where there is a usual one."""
    kind = type(exc).__name__
    code = _code(exc)
    if kind in ("NoCredentialsError", "PartialCredentialsError"):
        return ("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_PROFILE (or profile: in ship.s3)")
    if kind in ("ProfileNotFound",):
        return f"{exc}: name a profile of ~/.aws/config"
    if kind in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                "ConnectionClosedError"):
        return f"the store cannot be reached ({kind}): check endpoint (or AWS_ENDPOINT_URL)"
    if code in ("NoSuchBucket",):
        return "no such bucket: create it (with Object Lock enabled) or correct bucket"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
        return f"refused ({code}): check the credentials and what they may do"
    return " ".join(f"{kind}: {exc}".split())


# --------------------------------------------------------------------------- the sink


class S3Sink:
    """`ship: {s3: …}`: see the module's docstring for what it writes."""

    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        # started record's hash -> (cast file, offset), for invocations not yet completed
        self._starts: dict[str, tuple[str, int]] = {}

    def store(self) -> Store:
        if self._store is None:
            store = Store(self.settings)
            store.check_lock()
            self._store = store
        return self._store

    def send(self, entries: Sequence[Entry], ctx: ShipContext) -> None:
        store = self.store()
        head = _head_of(ctx.head)
        log = head.log if head else NO_LOG
        if entries:
            first, last = entries[0].seq, entries[-1].seq
            body = b"".join(entry.line + b"\n" for entry in entries)
            store.put_once(store.key(RECORDS, log, f"{_pad(first)}-{_pad(last)}.jsonl"), body)
        for seq, name, offset, size in self._cast_parts(entries, ctx.log_path):
            part = _read_part(ctx.cast_root / name, offset, size)
            if part is not None:
                store.put_once(store.key(CASTS, log, name, f"{_pad(seq)}-{offset}-{size}"), part)
        if head is not None:
            store.put_once(store.key(HEADS, log, f"{_pad(head.count)}-{head.last}.json"),
                           ctx.head or b"")

    def _cast_parts(
        self, entries: Sequence[Entry], log_path: Path
    ) -> Iterator[tuple[int, str, int, int]]:
        """(seq, cast file, offset, size) of each completed invocation's part of its cast:
        from where its started record says it began to the size its completion says. A
        started record in an earlier batch (or before this sink started) is remembered, or
        looked up in the log (once per batch)."""
        completed: list[tuple[Entry, Mapping[str, Any]]] = []
        for entry in entries:
            record, ref = entry.record, entry.record.get("cast")
            if not isinstance(ref, Mapping) or not isinstance(ref.get("file"), str):
                continue
            if record.get("status") == STARTED and isinstance(ref.get("offset"), int):
                self._starts[str(record.get("hash"))] = (ref["file"], ref["offset"])
            elif record.get("status") == COMPLETED and isinstance(ref.get("size"), int):
                completed.append((entry, ref))
        missing = {str(e.record.get("started")) for e, _ in completed} - self._starts.keys()
        if missing:
            self._starts.update(_starts_in_log(log_path, missing))
        for entry, ref in completed:
            start = self._starts.pop(str(entry.record.get("started")), None)
            if start is not None and start[0] == ref["file"] and 0 <= start[1] <= ref["size"]:
                yield entry.seq, start[0], start[1], ref["size"]
            # else nothing we can vouch for: the log's own verify names such a record

    def close(self) -> None:
        if self._store is not None:
            self._store.client.close()
            self._store = None


def _head_of(data: bytes | None) -> Head | None:
    try:
        return None if data is None else head_of(data)
    except Damaged as damaged:
        raise ShipError(f"the audit head (audit.head) {damaged}: run guardctl audit "
                        "verify") from None


def _starts_in_log(log_path: Path, wanted: set[str]) -> dict[str, tuple[str, int]]:
    """Started record's hash -> (cast file, offset), for the `wanted` ones, read from the log
    (invocations that started before this sink did)."""
    found: dict[str, tuple[str, int]] = {}
    for _, record in records(log_path):
        ref, digest = record.get("cast"), record.get("hash")
        if digest in wanted and isinstance(ref, dict) and isinstance(ref.get("offset"), int):
            found[str(digest)] = (str(ref.get("file")), ref["offset"])
    return found


def _read_part(path: Path, offset: int, size: int) -> bytes | None:
    """Bytes offset..size of a cast; None when it is gone or shorter (pruned, or damaged:
    `audit verify` reports that)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size - offset)
    except OSError:
        return None
    return data if len(data) == size - offset else None


def make(settings: Mapping[str, Any]) -> S3Sink:
    """The sink of `ship: {s3: settings}` (settings checked; boto3 imported on first send)."""
    sink = S3Sink(parse_settings(settings))
    try:
        found = importlib.util.find_spec("boto3") is not None  # not imported: it is slow
    except ImportError:
        found = False
    if not found:
        raise ShipError(f"the s3 sink needs boto3: {INSTALL}")
    return sink
