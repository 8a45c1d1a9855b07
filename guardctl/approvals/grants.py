"""One-time grants: a line a human approved as a whole is not asked about again at run time.

`guardctl sh -c LINE` asks once for the whole line, then runs it with bash; each kubectl the
line starts comes back through the `kubectl` shim and is decided again. For the commands the
human already saw, `sh` calls `grant()` and hands the child the token in `TOKEN_VARIABLE`;
the run path calls `consume()` (or `consume_for()`), which says yes only for a command whose
run-time decision is `approve` with the same kubectl words and the same rule ids as one the
human approved, and only as many times as that command appears in the line.

Why the agent cannot forge it: the variable holds a random 256-bit token; the grant itself
lives in `$GUARDCTL_HOME/preapproved/` under the token's sha256, so a made-up or reused token
names no file, and a stolen one only covers the commands already approved, once each, until
`sh` revokes it when the line ends (or it expires). Writing a grant file by hand means
writing into guardctl's state folder, which the self-protection rules deny.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from guardctl.env import Environment
from guardctl.model import Action, Decision

TOKEN_VARIABLE = "GUARDCTL_PREAPPROVED"
FOLDER = "preapproved"
# a backstop for a `sh` that died before revoking; a line running longer is asked again
DEFAULT_TTL_SECONDS = 3600.0
# tokens are 64 hex digits; anything much longer is not ours and is not hashed
MAX_TOKEN_LENGTH = 256


class Approved(NamedTuple):
    """One command a human approved: kubectl's words (without the program) and its rule ids."""

    argv: tuple[str, ...]
    rule_ids: frozenset[str]


def grant(
    env: Environment,
    commands: Sequence[Approved],
    *,
    ttl: float = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """Store a grant for `commands` (one use per entry) and return its secret token."""
    token = secrets.token_hex(32)
    folder = _folder(env)
    _sweep(folder, time.time() if now is None else now)
    record = {
        "expires": (time.time() if now is None else now) + ttl,
        "entries": [{"argv": list(c.argv), "rules": sorted(c.rule_ids)} for c in commands],
    }
    fd = os.open(_path(folder, token), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    return token


def consume(
    env: Environment,
    token: str,
    argv: Sequence[str],
    rule_ids: Sequence[str] | frozenset[str],
    *,
    now: float | None = None,
) -> bool:
    """True, once per approved entry, when `argv` and `rule_ids` match an entry of the grant.

    `argv` is kubectl's words without the program (`["get", "secret", "x", "-o", "yaml"]`).
    Rule ids compare as a set. A missing, expired or used-up grant answers False.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    wanted = {"argv": list(argv), "rules": sorted(set(rule_ids))}
    with _locked(_path(_folder(env), token)) as handle:
        if handle is None:
            return False
        record = _read(handle)
        if record is None or _expired(record, time.time() if now is None else now):
            return False
        entries = record["entries"]
        if wanted not in entries:
            return False
        entries.remove(wanted)
        _rewrite(handle, record)
        return True


def consume_for(env: Environment, argv: Sequence[str], decision: Decision) -> bool:
    """`consume` with the token from the environment and the rule ids of `decision`.

    The run path's one call: only an `approve` decision can be covered by a grant.
    """
    if decision.action is not Action.APPROVE:
        return False
    rule_ids = frozenset(hit.id for command in decision.commands for hit in command.hits)
    return consume(env, env.environ.get(TOKEN_VARIABLE, ""), argv, rule_ids)


def revoke(env: Environment, token: str) -> None:
    """Remove a grant (its line has ended); a missing grant is fine."""
    with contextlib.suppress(FileNotFoundError):
        _path(_folder(env), token).unlink()


# --------------------------------------------------------------------------- storage


def _folder(env: Environment) -> Path:
    folder = env.state_dir / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _path(folder: Path, token: str) -> Path:
    return folder / hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int | None]:
    """An fd of the grant file under an exclusive lock (pipelines consume concurrently)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _read(fd: int) -> dict[str, Any] | None:
    """The grant record, or None when it is not the shape `grant` writes (fail closed)."""
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("entries"), list):
        return None
    if not isinstance(record.get("expires"), (int, float)):
        return None
    return record


def _expired(record: dict[str, Any], now: float) -> bool:
    return bool(now >= record["expires"])


def _rewrite(fd: int, record: dict[str, Any]) -> None:
    data = json.dumps(record).encode("utf-8")
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    while data:
        data = data[os.write(fd, data):]


def _sweep(folder: Path, now: float) -> None:
    """Remove expired grants left by a `sh` that could not revoke its own.

    A file that does not parse may be a grant another `sh` is writing right now: it goes
    only once it is older than any grant could live.
    """
    for path in folder.iterdir():
        with _locked(path) as fd:
            record = _read(fd) if fd is not None else None
            if record is None:
                stale = _older_than(path, now - DEFAULT_TTL_SECONDS)
            else:
                stale = _expired(record, now)
        if stale:
            with contextlib.suppress(OSError):
                path.unlink()


def _older_than(path: Path, moment: float) -> bool:
    try:
        return path.lstat().st_mtime < moment
    except OSError:
        return False
