"""A JSON cache of data derived from files, valid while those files are unchanged.

Every agent command reads the policy (and the config); parsing YAML costs more than
deciding a line. What was derived from a set of files is kept as JSON in guardctl's cache
folder under a name made from the files' stamps (resolved path, inode, modification and
change times in ns, size) and guardctl's version: an editor's rename, a same-size edit within
one mtime tick or a restored mtime all change the inode or the ctime. The stamps are stored
inside too and compared on reading, so a name collision or a changed file can only cost a
re-parse, never return stale data.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from guardctl import __version__

# cache files kept per prefix; older ones (from edited files) are removed on writing
KEEP = 8

Stamps = list[list[Any]]
T = TypeVar("T")


class Entry:
    """The cache file for a set of files as they are now."""

    __slots__ = ("path", "prefix", "stamped", "key")

    def __init__(self, cache_dir: Path, prefix: str, stamped: Stamps) -> None:
        # the stamps as text: equal for equal files, whatever the cache folder
        self.key = json.dumps(stamped)
        self.path = cache_dir / f"{prefix}-{zlib.crc32(self.key.encode()):08x}.json"
        self.prefix = prefix
        self.stamped = stamped

    def read(self) -> Any | None:
        """The cached data, or None when absent, unreadable or made from other files."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("stamps") != self.stamped:
            return None
        return doc.get("data")

    def write(self, data: Any) -> None:
        """Best effort: a cache that cannot be written only costs speed."""
        from guardctl.atomic import write_atomic  # tempfile: only paid when writing

        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(self.path, json.dumps({"stamps": self.stamped, "data": data}))
            for stale in sorted(folder.glob(f"{self.prefix}-*.json"), key=_mtime)[:-KEEP]:
                stale.unlink(missing_ok=True)
        except OSError:
            pass


class Built(Generic[T]):
    """What this process built from an entry's data, by the entry's key: while the files are
    unchanged a later load neither reads nor parses (a forked worker inherits what its server
    built). The `keep` newest are kept."""

    def __init__(self, keep: int = KEEP) -> None:
        self._kept: dict[str, T] = {}
        self.keep = keep

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, at: Entry) -> T | None:
        return self._kept.get(at.key)

    def clear(self) -> None:
        self._kept.clear()

    def put(self, at: Entry, value: T) -> None:
        if len(self._kept) >= self.keep:
            del self._kept[next(iter(self._kept))]
        self._kept[at.key] = value


def entry(cache_dir: Path, prefix: str, files: Sequence[Path]) -> Entry | None:
    """The cache entry for `files`, or None when one cannot be stat'ed (nothing is cached)."""
    try:
        stamped = [_stamp(p) for p in files]
    except OSError:
        return None
    return Entry(cache_dir, prefix, stamped)


def _stamp(path: Path) -> list[Any]:
    # os.path, not Path.resolve: that is realpath, then a Path, then one more stat
    stat = os.stat(path)
    return [__version__, os.path.realpath(path), stat.st_ino, stat.st_mtime_ns,
            stat.st_ctime_ns, stat.st_size]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
