"""The client's side of a broker's NEED: read a local input with the agent's own permissions.

The broker never opens a path an agent names: it asks the client, which reads what the agent
itself may read and sends the bytes (`FILE` frames). What the broker decides on is then
exactly what kubectl gets (a private copy on the broker's side). Modes:

* `file`: one regular file;
* `manifests` / `manifests-r`: a file, or a folder's `.yaml`, `.yml` and `.json` files (one
  level, or every level), as `kubectl -f DIR [-R]` reads them;
* `flat`: a file, or every regular file directly in a folder (`--from-file DIR`);
* `tree`: a file, or every regular file under a folder (`-k DIR`);
* `copy`: as `tree`, with the larger budget of `kubectl cp` (MAX_COPY_BYTES).

Only regular files are read (a FIFO or device would block or eat input), symlinked folders
are not followed (no loops), and an input holds at most MAX_FILES files and MAX_BYTES bytes
(MAX_COPY_BYTES for `kubectl cp`): past that the answer is an error, never a partial copy.

`put` is the other way: a file `kubectl cp` brought from a pod, written here as the agent.
"""

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

MODES = ("file", "manifests", "manifests-r", "flat", "tree", "copy")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILES = 1000
MAX_BYTES = 10 * 1024 * 1024
MAX_COPY_BYTES = 60 * 1024 * 1024
# directory entries looked at while listing a folder
MAX_ENTRIES = 100_000


class InputError(Exception):
    """Why an input cannot be sent (shown to the agent as kubectl would say it)."""


def _regular(path: str, budget: int, limit: int = MAX_BYTES) -> bytes:
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
                raise InputError(f"{path}: more than {limit} bytes of input")
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
            if mode == "flat":
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
    limit = MAX_COPY_BYTES if mode == "copy" else MAX_BYTES
    try:
        info = os.stat(target)
    except FileNotFoundError:
        raise InputError(f'the path "{path}" does not exist') from None
    except OSError as err:
        raise InputError(f"{path}: {err.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        return [("", _regular(target, limit, limit))]
    if mode == "file":
        raise InputError(f"{path} is a folder, not a file")
    found: list[tuple[str, bytes]] = []
    budget = limit
    for name in _walk(target, "tree" if mode == "copy" else mode):
        if len(found) >= MAX_FILES:
            raise InputError(f"{path}: more than {MAX_FILES} files")
        data = _regular(os.path.join(target, name), budget, limit)
        budget -= len(data)
        found.append((name, data))
    return found


def safe_name(name: str) -> bool:
    """A relative name that stays inside its folder (no `..`, no absolute path)."""
    parts = name.split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def put(target: str, name: str, data: bytes) -> None:
    """Write one file of a `kubectl cp` from a pod: `name` is relative to what was copied
    (its first part is the copied file or folder). Into `target` when that is a folder
    before the copy began, else as `target`, as cp(1) does."""
    if not safe_name(name):
        raise InputError(f"refused to write {name!r}: it leaves the copy")
    first, _, rest = name.partition("/")
    if target not in _BASES:
        _BASES[target] = os.path.join(target, first) if os.path.isdir(target) else target
    path = os.path.join(_BASES[target], rest) if rest else _BASES[target]
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


# where each copy's files go, decided at its first file (a folder the copy itself made is
# not "a folder to copy into" for the files after it)
_BASES: "dict[str, str]" = {}
