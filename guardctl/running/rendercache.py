"""Kustomize renders kept across processes, found by everything the render reads.

Rendering a kustomization starts kubectl (tens of milliseconds of CPU each time, in every
process that decides a line naming it). A render depends only on the files kustomize reads
and on the kubectl that renders it, so it is kept in guardctl's cache folder under a key
made from those (`input_key`): the content, names and modes of every file and folder in the
kustomization's folder tree and in each folder tree its kustomization files name outside
it (`resources: [../base]`, followed to the end), the kubectl binary's identity and
guardctl's version. Content, not modification times: a same-size edit with its mtime put
back is a new key.

What the key cannot be sure to cover is not cached, and is rendered every time as before: a
symbolic link, device or FIFO anywhere in those trees (kustomize reads through a link to a
file wherever it points), a kustomization YAML cannot read, or trees past `MAX_FILES` /
`MAX_INPUT_BYTES`. Only a settled outcome (kubectl rendered the inputs, or refused them
itself: a failure that is not a timeout or a crash), from inputs whose key was the same
before and after it, is kept; of inputs with a word naming something remote (`://`,
`git@`: `Inputs.remote`), only a refusal while no network could be reached (the caller
says). Remote bases without a scheme are cloned with git, which the render cannot run.

Trust: the text a cache file holds is what the policy decides on AND what kubectl is given
(`kustomize.rewrite`), so a planted file could not make kubectl apply something other than
what was decided; still, a file another account could have written never decides anything.
A cache file is read only through a folder that is this account's own and closed to others
(0700), opened without following links, and only when it is a regular file of this account
that no one else may write, with the key inside equal to its name. In broker mode the cache
is the broker's (its own cache folder), which the agent's account cannot write. In
same-user mode the agent can write it, as it can every file of that user: there the
guarantees are advisory, and a `kustomize build | kubectl apply -f -` is decided again on
the bytes kubectl is given at run time.

The folder keeps at most `KEEP` renders and `MAX_CACHE_BYTES` in all; the least recently
used go first. Writes are atomic (readers see a whole file or none).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from guardctl import __version__

FOLDER = "kustomize"  # in guardctl's cache folder
KEEP = 64  # renders kept
MAX_CACHE_BYTES = 64 * 1024 * 1024  # in all
# the inputs of one render past which it is not cached (rendered every time instead)
MAX_FILES = 2000
MAX_INPUT_BYTES = 16 * 1024 * 1024
# the names kustomize looks for in a folder
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# where a word of a kustomization ends: `files: [key=path]`, flow lists, quotes, lines
_WORD_ENDS = re.compile(r"[\s\[\]{}(),'\"=]+")


class Kept(NamedTuple):
    """A render kept: its text, or None where kubectl refused the inputs."""

    text: str | None


class Inputs(NamedTuple):
    """What one render reads."""

    key: str
    remote: bool  # some word of its kustomizations names a remote input


class _Unknown(Exception):
    """The inputs of a render cannot all be known: it is not cached."""


def input_key(folder: str, kubectl: str, confine: str | None = None) -> Inputs | None:
    """The key of what `kubectl kustomize FOLDER` reads, or None when it cannot be known
    (see the module's docstring). `confine`: every tree read must lie inside this folder
    (a broker's private copy of the agent's folder), else None."""
    try:
        return _Inputs(os.path.realpath(folder), kubectl, confine).inputs()
    except (_Unknown, OSError, ValueError, RecursionError):
        return None


class _Inputs:
    """The trees one render reads, hashed as they are walked."""

    def __init__(self, root: str, kubectl: str, confine: str | None) -> None:
        self.root = root
        self.confine = os.path.realpath(confine) if confine is not None else None
        self.hash = hashlib.sha256()
        self.walked: list[str] = []
        self.files = 0
        self.size = 0
        self.remote = False
        binary = os.stat(os.path.realpath(kubectl))
        self._add("guardctl", __version__, "kubectl", os.path.realpath(kubectl), binary.st_dev,
                  binary.st_ino, binary.st_size, binary.st_mtime_ns, binary.st_ctime_ns)

    def inputs(self) -> Inputs:
        if not any(os.path.isfile(os.path.join(self.root, n)) for n in KUSTOMIZATION_FILES):
            raise _Unknown("no kustomization")  # kubectl is not even started for it
        pending = [self.root]
        while pending:
            tree = pending.pop(0)
            if not any(_inside(tree, walked) for walked in self.walked):
                pending.extend(self._walk(tree))
        return Inputs(self.hash.hexdigest(), self.remote)

    def _add(self, *fields: object) -> None:
        """Fields, each framed by its length: no two lists of fields hash alike."""
        for field in fields:
            if isinstance(field, bytes):
                data = field
            else:
                data = os.fsencode(field) if isinstance(field, str) else str(field).encode()
            self.hash.update(b"%d:" % len(data) + data)

    def _walk(self, tree: str) -> list[str]:
        """Hash every entry of `tree`; the folders its kustomization files name."""
        if self.confine is not None and not _inside(tree, self.confine):
            raise _Unknown("a tree outside the folder")
        self.walked.append(tree)
        self._add("tree", os.path.relpath(tree, self.root), stat.S_IMODE(os.stat(tree).st_mode))
        named: list[str] = []
        stack = [""]
        while stack:
            relative = stack.pop()
            with os.scandir(os.path.join(tree, relative)) as found:
                entries = sorted(found, key=lambda e: e.name)
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                name = os.path.join(relative, entry.name)
                self.files += 1
                if self.files > MAX_FILES:
                    raise _Unknown("too many files")
                if stat.S_ISDIR(info.st_mode):
                    self._add("dir", name, stat.S_IMODE(info.st_mode))
                    stack.append(name)
                elif stat.S_ISREG(info.st_mode):
                    data = self._read(entry.path)
                    self._add("file", name, stat.S_IMODE(info.st_mode), data)
                    if entry.name in KUSTOMIZATION_FILES:
                        named.extend(self._named_folders(data, os.path.join(tree, relative)))
                else:
                    raise _Unknown("a link or special file")  # kustomize reads through links
        return named

    def _read(self, path: str) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES - self.size + 1)
        self.size += len(data)
        if self.size > MAX_INPUT_BYTES:
            raise _Unknown("too many bytes")
        return data

    def _named_folders(self, text: bytes, here: str) -> Iterator[str]:
        """The real paths of the folders a kustomization file names, relative to `here` or
        absolute, read from every word of every scalar (keys, values, inline patches), so a
        field guardctl does not know still counts; a remote word sets `remote`."""
        import yaml

        loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            documents = list(yaml.compose_all(text, Loader=loader))
        except yaml.YAMLError as err:
            raise _Unknown("a kustomization YAML cannot read") from err
        for document in documents:
            for scalar in _scalars(document):
                for word in _WORD_ENDS.split(scalar):
                    if "://" in word or word.startswith("git@"):
                        self.remote = True
                    path = os.path.normpath(os.path.join(here, word)) if word else ""
                    if path and os.path.isdir(path):
                        yield os.path.realpath(path)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _scalars(node: Any) -> Iterator[str]:
    """The text of every scalar under a composed YAML node, each node once (aliases)."""
    import yaml

    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            yield str(current.value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            stack.extend(part for pair in current.value for part in pair)


class RenderStore:
    """The renders kept in guardctl's cache folder (`cache_dir`), by input key."""

    def __init__(self, cache_dir: Path) -> None:
        self.folder = cache_dir / FOLDER

    def get(self, key: str) -> Kept | None:
        """The render kept for `key`, or None when there is none this account can trust."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            folder = os.open(self.folder, flags | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            if not _private_folder(os.fstat(folder)):
                return None
            data = _read_own(_file_name(key), folder)
        finally:
            os.close(folder)
        if data is None:
            return None
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("key") != key:
            return None
        text = doc.get("text")
        return Kept(text) if text is None or isinstance(text, str) else None

    def put(self, key: str, text: str | None) -> None:
        """Keep a render (best effort: a cache that cannot be written only costs time), then
        drop the least recently used past the bounds."""
        from guardctl.atomic import write_atomic
        from guardctl.errors import GuardError
        from guardctl.runtime import private_folder

        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not private_folder(str(self.folder)):
                return
            write_atomic(self.folder / _file_name(key), json.dumps({"key": key, "text": text}))
            self._prune()
        except (OSError, GuardError):
            pass

    def _prune(self) -> None:
        kept = []
        for path in self.folder.glob("*.json"):
            try:
                info = path.stat()
            except OSError:
                continue
            kept.append((info.st_mtime_ns, info.st_size, path))
        total = 0
        for number, (_, size, path) in enumerate(sorted(kept, reverse=True)):
            total += size
            if number >= KEEP or total > MAX_CACHE_BYTES:
                path.unlink(missing_ok=True)


def _file_name(key: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        raise ValueError(f"not a render key: {key!r}")
    return f"{key}.json"


def _private_folder(info: os.stat_result) -> bool:
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and stat.S_IMODE(info.st_mode) & 0o077 == 0
    )


def _read_own(name: str, folder: int) -> bytes | None:
    """The bytes of `name` in `folder` when it is a regular file of this account that only
    it may write (and not another name of some other file); else None. A read marks it
    used, for pruning."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=folder)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & 0o022
            or info.st_nlink != 1
            or info.st_size > MAX_CACHE_BYTES
        ):
            return None
        data = handle.read()
        try:
            os.utime(fd)
        except OSError:
            pass
        return data
