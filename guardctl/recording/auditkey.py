"""The audit log's hashing, its key and its head: what makes its records tamper-evident.

The log (`$GUARDCTL_HOME/audit.jsonl`) is written by guardctl.recording.audit and checked by
guardctl.recording.verify; both compute hashes and macs, and read the key and the head,
through this module.

Every record holds `prev` (the previous record's hash; 64 zeros for the first) and `hash`,
the sha256 of the record's canonical JSON (sorted keys, no spaces, UTF-8) without `hash` and
`mac` (`canonical`, `record_hash`); each line is written in exactly that canonical form, so
`verify` also rejects a record re-serialized by hand. `parse` reads one line back (a record,
or the head), None when it is not a JSON object.

**Keyed records (format 2).** Anyone who can write the file can recompute sha256 hashes, so
each record also holds `log` (the log's identity), `seq` (its position, 1 for the first
record of the file) and `mac`: HMAC-SHA256 over the log identity and the record's hash
(`record_mac`), with a key only the log's owner holds. Beside the log live:

- `audit.key` (`key_path`): 32 random bytes as hex, mode 0600, created (O_EXCL, O_NOFOLLOW)
  by the first append and never rewritten. A key file that cannot be read, is not a key or
  not a regular file stops every append with UnsafeError; it is never replaced, since a new
  key would leave every record the old one signed unverifiable.
- `audit.head` (`head_path`, `Head`): `{"log": ID, "count": N, "last": HASH, "mac":
  HMAC(log|count|last)}`, the log's identity (16 random bytes, made when the key is, or when
  a head is started anew), how many records the log holds and the hash of the last one. It
  is rewritten atomically (temp file, fdatasync, rename) after every append while the append
  still holds the log's lock, so it anchors the log's end: records cut off the end and a
  deleted log show.

Both files are read without following a symlink, and only as small regular files; one that
exists but cannot be used raises `Damaged`, which says why.

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
"""

import errno
import hashlib
import hmac
import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardctl.atomic import write_all

KEY_BYTES = 32
LOG_ID_BYTES = 16
ACCESS_FIX = "give it back to the user guardctl records as (mode 0600)"
# the key and head files are a few hundred bytes; more is not one of ours
_SMALL_FILE = 4096
_KEY_TEXT = re.compile(rb"[0-9a-f]{64}\n?")
_HASH = re.compile(r"[0-9a-f]{64}")
_LOG_ID = re.compile(r"[0-9a-f]{32}")


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


def parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


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


def make_head(key: bytes, log: str, count: int, last: str) -> Head:
    return Head(log, count, last, head_mac(key, log, count, last))


class Damaged(Exception):
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
            raise Damaged("is a symbolic link, not a regular file") from None
        raise Damaged(f"cannot be read ({exc.strerror or exc})", access=True) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Damaged("is not a regular file")
        return os.read(fd, _SMALL_FILE + 1)
    except OSError as exc:
        raise Damaged(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def load_key(path: Path) -> bytes | None:
    """The key in `path`; None when there is none. Raises Damaged."""
    data = _read_small(path)
    if data is None:
        return None
    if not _KEY_TEXT.fullmatch(data):
        raise Damaged(f"is not a key (it must hold {KEY_BYTES * 2} lowercase hex digits)")
    return bytes.fromhex(data.decode("ascii"))


def load_head(path: Path) -> Head | None:
    """The head in `path` as written (its mac unchecked); None when there is none.
    Raises Damaged."""
    data = _read_small(path)
    return None if data is None else head_of(data)


def head_of(data: bytes) -> Head:
    """The head in `data` (a head file's bytes), its mac unchecked. Raises Damaged."""
    fields = parse(data) if len(data) <= _SMALL_FILE else None
    if fields is None or set(fields) != set(Head.FIELDS):
        raise Damaged("is not a head (a JSON object with log, count, last and mac)")
    log, count, last, mac = (fields[name] for name in Head.FIELDS)
    if not (
        isinstance(log, str) and _LOG_ID.fullmatch(log)
        and isinstance(count, int) and not isinstance(count, bool) and count >= 0
        and isinstance(last, str) and _HASH.fullmatch(last)
        and isinstance(mac, str)
    ):
        raise Damaged("is not a head (a field has the wrong form)")
    return Head(log, count, last, mac)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_key(path: Path) -> bytes:
    """Make the key file (O_EXCL: never over another); returns the key in it."""
    key = os.urandom(KEY_BYTES)
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except FileExistsError:
        # made meanwhile by a process outside our lock, or a symlink: use it or say why not
        existing = load_key(path)
        if existing is None:
            raise Damaged("appeared and vanished while it was being created") from None
        return existing
    try:
        try:
            os.fchmod(fd, 0o600)  # the mode given to open is filtered by the umask
            write_all(fd, key.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        # the records it signs must not outlive it: make its name durable too
        _fsync_dir(path.parent)
    except BaseException:
        path.unlink(missing_ok=True)  # nothing was signed with it yet
        raise
    return key


def write_head(path: Path, head: Head, *, first: bool = False) -> None:
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
            write_all(fd, head.to_bytes())
            os.fdatasync(fd)  # the bytes and size before the rename: no half-written head
        finally:
            os.close(fd)
        os.replace(tmp, path)  # replaces a symlink at `path` itself, never its target
        if first:
            _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
