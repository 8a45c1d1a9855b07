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
    """Write `text` to a private (0600) temp file beside `path`, fsync it, rename it over `path`.

    UsageError when `path` exists and is no regular file (a device such as /dev/null, a FIFO,
    a socket, a folder, or a link to one): renaming over it would replace it for everyone.
    """
    import stat
    import tempfile  # imported by the few commands that rewrite a file, not by every run

    from guardctl.errors import UsageError

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise UsageError(f"{path}: cannot write it: {err.strerror or err}") from err
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{path} exists and is not a regular file: guardctl will not replace "
                         "it; point it at a file instead")

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
