"""`guardctl sessions prune`: remove old casts by the retention policy (`retention.Policy`).

Casts go oldest first (by the time they were last written): each one last written longer
ago than `max-age`, then, while all casts together are larger than `max-size`, the oldest of
the rest. A cast some invocation is writing (its lock is held) is never removed, nor any cast
of the session named by `keep_session` (the caller's own), and nothing is removed while the
audit log does not verify (an edited cast must not vanish through retention). The audit log
is never pruned: before a cast is removed, a "pruned" record (guardctl.recording.audit) says
which one, its size and sha256 and why, so `audit verify` tells a pruned cast from a
deleted one.
"""

import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from guardctl.errors import UnsafeError
from guardctl.recording import audit, recorder
from guardctl.recording.retention import Policy, format_size
from guardctl.recording.verify import verify


class CastFile(NamedTuple):
    name: str
    size: int
    mtime: float


class Outcome(NamedTuple):
    """What a prune did (or, dry, would do)."""

    removed: list[tuple[CastFile, str]]  # with the reason
    in_use: list[CastFile]  # chosen, but being written (or the caller's session): left alone
    kept: list[CastFile]
    dry_run: bool
    # chosen, but records naming it are not shipped yet: left, with the sinks they wait for
    unshipped: list[tuple[CastFile, Sequence[str]]]


def cast_files(folder: Path) -> list[CastFile]:
    """The casts in `folder` (regular `*.cast` files), oldest first."""
    found: list[CastFile] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(recorder.SUFFIX) and entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    found.append(CastFile(entry.name, info.st_size, info.st_mtime))
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda c: (c.mtime, c.name))


def folder_size(folder: Path) -> int:
    """Bytes in the regular files under `folder` (symlinks not followed; unreadable parts
    count as nothing)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total


def _why(cast: CastFile, policy: Policy, total: int, now: float) -> str | None:
    """Why the policy removes `cast` while all casts left take `total` bytes (None: keep)."""
    if policy.max_age is not None and now - cast.mtime > policy.max_age:
        return f"last written more than {_days(policy.max_age)} ago (retention.max-age)"
    if policy.max_size is not None and total > policy.max_size:
        return f"casts took {format_size(total)}, more than {format_size(policy.max_size)} " \
               "(retention.max-size)"
    return None


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g}s"


def prune(
    state_dir: Path,
    policy: Policy,
    *,
    dry_run: bool = False,
    keep_session: str | None = None,
    clock: Callable[[], float] = time.time,
    unshipped: Mapping[str, Sequence[str]] | None = None,
) -> Outcome:
    """Remove (or, `dry_run`, list) the casts the policy no longer keeps. Raises
    UnsafeError, removing nothing, when the audit log does not verify: a cast changed after
    recording must not vanish through retention. `unshipped`: cast name -> the sinks that
    have not shipped every record naming it yet (guardctl.shipping): such a cast is left
    until they have, and the summary says so."""
    folder = recorder.cast_dir(state_dir)
    checked = verify(audit.log_path(state_dir), folder)
    if not checked.ok:
        raise UnsafeError(f"{checked.message}: nothing was pruned, since that would remove "
                          "evidence; see `guardctl audit verify`")
    casts = cast_files(folder)
    total = sum(c.size for c in casts)
    now = clock()
    log = audit.AuditLog(audit.log_path(state_dir))
    outcome = Outcome([], [], [], dry_run, [])
    for cast in casts:
        why = _why(cast, policy, total, now)
        if why is None:
            outcome.kept.append(cast)
            continue
        waiting = (unshipped or {}).get(cast.name)
        if waiting:
            outcome.unshipped.append((cast, waiting))
            continue
        if recorder.session_of(cast.name) == keep_session:
            outcome.in_use.append(cast)
            continue
        fd = recorder.lock_if_idle(folder / cast.name)
        if fd is None:
            outcome.in_use.append(cast)
            continue
        try:
            if not dry_run:
                _remove(log, folder / cast.name, fd, why)
        finally:
            os.close(fd)
        outcome.removed.append((cast, why))
        total -= cast.size
    return outcome


def _remove(log: audit.AuditLog, path: Path, fd: int, why: str) -> None:
    """Record, then remove, a cast whose lock `fd` holds (the record first: a cast gone
    without one would read as deleted)."""
    size = os.fstat(fd).st_size
    digest = recorder.sha256_prefix(path, size) or ""
    log.pruned(recorder.CastExtent(path.name, size, digest), why)
    path.unlink()


def summary(outcome: Outcome) -> list[str]:
    """One line per cast removed or left in use, then a total."""
    verb = "would remove" if outcome.dry_run else "removed"
    lines = [f"{verb} {c.name} ({format_size(c.size)}): {why}" for c, why in outcome.removed]
    lines += [f"left {c.name} ({format_size(c.size)}): in use" for c in outcome.in_use]
    lines += [
        f"left {c.name} ({format_size(c.size)}): records naming it are not shipped yet "
        f"({', '.join(sinks)}); `guardctl audit ship` ships them"
        for c, sinks in outcome.unshipped
    ]
    freed = sum(c.size for c, _ in outcome.removed)
    kept = outcome.kept + outcome.in_use + [c for c, _ in outcome.unshipped]
    lines.append(
        f"{verb} {len(outcome.removed)} cast{'s' if len(outcome.removed) != 1 else ''} "
        f"({format_size(freed)}); {len(kept)} kept ({format_size(sum(c.size for c in kept))})"
        + ("; the audit log keeps their records" if outcome.removed and not outcome.dry_run
           else "")
    )
    return lines
