"""Writing files whole: every byte given, and atomic replacement (readers see the old file or
the new one, never a torn one)."""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (one `os.write` may take fewer)."""
    while data:
        data = data[os.write(fd, data) :]


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a private (0600) temp file beside `path`, fsync it, rename it over `path`."""
    import tempfile  # imported by the few commands that rewrite a file, not by every run

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
