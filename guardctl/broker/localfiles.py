"""The client's side of a broker's NEED: read a local input with the agent's own permissions.

The broker never opens a path an agent names: it asks the client, which reads what the agent
itself may read and sends the bytes (`FILE` frames). What the broker decides on is then
exactly what kubectl gets (a private copy on the broker's side). Modes:

* `file`: one regular file;
* `manifests` / `manifests-r`: a file, or a folder's `.yaml`, `.yml` and `.json` files (one
  level, or every level), as `kubectl -f DIR [-R]` reads them;
* `flat`: a file, or every regular file directly in a folder (`--from-file DIR`);
* `tree`: a file, or every regular file under a folder (`-k DIR`, `kubectl cp DIR pod:…`).

Only regular files are read (a FIFO or device would block or eat input), symlinked folders
are not followed (no loops), and an input holds at most MAX_FILES files and MAX_BYTES bytes:
past that the answer is an error, never a partial copy.
"""

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

MODES = ("file", "manifests", "manifests-r", "flat", "tree")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILES = 1000
MAX_BYTES = 10 * 1024 * 1024
# directory entries looked at while listing a folder
MAX_ENTRIES = 100_000


class InputError(Exception):
    """Why an input cannot be sent (shown to the agent as kubectl would say it)."""


def _regular(path: str, budget: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise InputError(f'the path "{path}" does not exist') from None
    except OSError as err:
        raise InputError(f"{path}: {err.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path} is not a regular file")
        chunks = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, budget - size + 1))
            if not chunk:
                break
            size += len(chunk)
            if size > budget:
                raise InputError(f"{path}: more than {MAX_BYTES} bytes of input")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _walk(folder: str, mode: str) -> "Iterator[str]":
    """Relative names of the files an input of `mode` takes from `folder`, sorted."""
    entries = 0
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        entries += len(dirs) + len(names)
        if entries > MAX_ENTRIES:
            raise InputError(f"{folder}: more than {MAX_ENTRIES} entries")
        for name in sorted(names):
            if mode.startswith("manifests") and not name.endswith(MANIFEST_SUFFIXES):
                continue
            full = os.path.join(root, name)
            if mode != "tree" and not mode.startswith("manifests"):
                if not stat.S_ISREG(os.stat(full).st_mode):
                    continue  # kubectl's --from-file skips what is not a file
            yield os.path.relpath(full, folder)
        if mode in ("manifests", "flat"):
            break


def collect(path: str, mode: str, expand: bool = False) -> "list[tuple[str, bytes]]":
    """(relative name, bytes) of an input; "" names a plain file. InputError says why not.

    `expand`: `~` at the start means the home folder (a shell line's word, before the shell
    expanded it); a kubectl argument is taken literally, as kubectl takes it.
    """
    if mode not in MODES:
        raise InputError(f"unknown input mode {mode!r}")
    target = os.path.expanduser(path) if expand else path
    try:
        info = os.stat(target)
    except FileNotFoundError:
        raise InputError(f'the path "{path}" does not exist') from None
    except OSError as err:
        raise InputError(f"{path}: {err.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        return [("", _regular(target, MAX_BYTES))]
    if mode == "file":
        raise InputError(f"{path} is a folder, not a file")
    found: list[tuple[str, bytes]] = []
    budget = MAX_BYTES
    for name in _walk(target, mode):
        if len(found) >= MAX_FILES:
            raise InputError(f"{path}: more than {MAX_FILES} files")
        data = _regular(os.path.join(target, name), budget)
        budget -= len(data)
        found.append((name, data))
    return found
