"""The one adapter that reads manifest files (`-f`, `--patch-file`, `--custom`) from disk.

Only regular files are read: `/dev/stdin`, FIFOs and devices would block, or would consume
input that belongs to kubectl, so they count as unreadable (the caller fails closed).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# kubectl reads these extensions from a folder given to -f
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILES = 1000
MAX_TOTAL_BYTES = 10 * 1024 * 1024
# directory entries looked at while listing a folder, manifests or not
MAX_ENTRIES = 100_000


def _folder_files(folder: Path, recursive: bool) -> list[Path] | None:
    """The manifest files of a folder, sorted; None when there are too many to inspect."""
    found: list[Path] = []
    entries = 0
    # os.walk does not follow symlinked folders, so a link loop cannot trap it
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        entries += len(dirs) + len(names)
        if entries > MAX_ENTRIES:
            return None
        found.extend(Path(root, n) for n in sorted(names) if n.endswith(MANIFEST_SUFFIXES))
        if len(found) > MAX_FILES:
            return None
        if not recursive:
            break
    return found


def _read_regular(path: Path, budget: int) -> str | None:
    """A regular file's UTF-8 text if it fits in `budget` bytes."""
    if not stat.S_ISREG(path.stat().st_mode):
        return None
    with path.open("rb") as handle:
        data = handle.read(budget + 1)
    if len(data) > budget:
        return None
    return data.decode("utf-8-sig")


def read_manifests(path: str, recursive: bool) -> list[tuple[str, str]] | None:
    """(file name, text) for a file, or for each manifest of a folder (all levels if `recursive`).

    None when anything cannot be read, is not a regular file, is not UTF-8, or the folder
    holds more than MAX_FILES manifests or MAX_TOTAL_BYTES in total. Never raises.
    """
    try:
        # os.path's, not pathlib's: pathlib drops a leading `./`, and would expand the
        # `./~/x` that names a folder called `~`
        target = Path(os.path.expanduser(path))
        if target.is_dir():
            listed = _folder_files(target, recursive)
            if listed is None:
                return None
        else:
            listed = [target]
        result: list[tuple[str, str]] = []
        budget = MAX_TOTAL_BYTES
        for file in listed:
            text = _read_regular(file, budget)
            if text is None:
                return None
            budget -= len(text.encode("utf-8"))
            result.append((str(file), text))
        return result
    except (OSError, ValueError, RuntimeError):
        # ValueError covers UnicodeDecodeError and NUL bytes in a path; RuntimeError an
        # unresolvable `~user`
        return None
