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
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardctl import __version__

# cache files kept per prefix; older ones (from edited files) are removed on writing
KEEP = 8

Stamps = list[list[Any]]


def stamps(files: Sequence[Path]) -> Stamps | None:
    """The files' stamps, or None when one cannot be read (then nothing is cached)."""
    try:
        return [_stamp(p) for p in files]
    except OSError:
        return None


def _stamp(path: Path) -> list[Any]:
    stat = path.stat()
    return [__version__, str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns,
            stat.st_size]


def cache_file(cache_dir: Path, prefix: str, stamped: Stamps) -> Path:
    key = zlib.crc32(json.dumps(stamped).encode())
    return cache_dir / f"{prefix}-{key:08x}.json"


def read(path: Path, stamped: Stamps) -> Any | None:
    """The cached data, or None when absent, unreadable or made from other files."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("stamps") != stamped:
        return None
    return doc.get("data")


def write(path: Path, stamped: Stamps, data: Any, prefix: str) -> None:
    """Best effort: a cache that cannot be written only costs speed."""
    from guardctl.atomic import write_atomic  # tempfile: only paid when writing

    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, json.dumps({"stamps": stamped, "data": data}))
        for stale in sorted(path.parent.glob(f"{prefix}-*.json"), key=_mtime)[:-KEEP]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
