"""The broker's side of kubectl's local inputs: which words name files, and what kubectl gets.

An agent's `kubectl apply -f x.yaml` names a file on the agent's side. The broker must never
open that path itself (it would read its own files at the agent's word), so it asks the
client for the bytes (`NEED`; see `localfiles`), decides on those bytes, writes them into the
run's private folder and hands kubectl that copy, rewriting the word in argv. What was
checked is what is applied. A flag that would make kubectl read or write some other path
on the broker's side, an editor, a plugin or a flag guardctl's table does not know, is
refused (`refusal`), whatever the rules say. The table is `data/broker_inputs.json`.
"""

import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from guardctl.broker.localfiles import InputError, safe_name
from guardctl.bundled import data_text
from guardctl.env import Environment
from guardctl.errors import UnsafeError
from guardctl.firewall.flagtable import flag_table
from guardctl.model import KubectlCall

# (path, mode, expand) -> [(relative name, bytes)]; raises InputError
Fetch = Callable[[str, str, bool], list[tuple[str, bytes]]]


class Needed(NamedTuple):
    """One local input of a kubectl call."""

    flag: str  # the flag that names it ("" for a positional argument)
    path: str  # as given: the end of word `word` of kubectl's arguments
    mode: str  # see localfiles.MODES
    word: int  # index among kubectl's arguments; -1: not given, appended (`kubectl kustomize`)


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads(data_text("broker_inputs.json"))
    return table


def _is_remote(value: str) -> bool:
    return value == "-" or value.lower().startswith(("http://", "https://"))


def _path_part(flag: str, value: str) -> str:
    """The path in a flag value: `from-file`'s `[KEY=]PATH`, `-o FORMAT=PATH`."""
    if flag in _table()["key_value"] or flag == "output":
        return value.partition("=")[2] if "=" in value else value
    return value


def _mode(call: KubectlCall, flag: str, value: str) -> str | None:
    table = _table()
    if flag == "output":
        fmt = value.partition("=")[0]
        return "file" if "=" in value and fmt in table["template_outputs"] else None
    if flag == "template":
        output = (call.flag("output") or "").partition("=")
        return "file" if output[0] in table["template_outputs"] and not output[1] else None
    mode = table["inputs"].get(flag) or table["verb_inputs"].get(call.verb, {}).get(flag)
    if flag == "filename" and call.flag("recursive") == "true":
        return "manifests-r"
    return str(mode) if mode else None


def needed(call: KubectlCall) -> list[Needed]:
    """The local inputs kubectl would read for `call`, in argv order."""
    found: list[Needed] = []
    values: dict[str, list[str]] = {name: list(v) for name, v in call.flags.items()}
    for flag, word in call.flag_words:
        value = values[flag].pop(0)
        mode = _mode(call, flag, value)
        if mode is None or _is_remote(value):
            continue
        path = _path_part(flag, value)
        if path:
            found.append(Needed(flag, path, mode, word))
    sides = cp_sides(call)
    if sides is not None and sides.upload:
        found.append(Needed("", sides.local, "copy", call.arg_words[sides.position]))
    if call.verb == "kustomize":
        if call.args:
            found.append(Needed("", call.args[0], "tree", call.arg_words[0]))
        else:
            found.append(Needed("", ".", "tree", -1))
    return found


class CopySides(NamedTuple):
    """kubectl cp: which argument is the local path, and which way the copy goes."""

    position: int  # in call.args
    local: str
    upload: bool  # to the pod


def cp_sides(call: KubectlCall) -> CopySides | None:
    """The local side of `kubectl cp SRC DST`; None for anything else (kubectl's own error:
    both sides local or both in pods). A side with a `:` is in a pod, as kubectl reads it."""
    if call.verb != "cp" or len(call.args) != 2:
        return None
    src, dst = call.args
    if (":" in src) == (":" in dst):
        return None
    return CopySides(1, dst, False) if ":" in src else CopySides(0, src, True)


def download_target(root: Path, call: KubectlCall) -> Path:
    """Where kubectl cp from a pod writes on the broker's side: a fresh name in `root`, the
    remote file's or folder's own name."""
    remote = call.args[0].partition(":")[2].rstrip("/")
    folder = root / "out"
    folder.mkdir(mode=0o700)
    name = os.path.basename(remote)
    return folder / (name if name not in ("", ".", "..") else "copy")


def copied_files(target: Path, limit: int) -> list[tuple[str, bytes]]:
    """(name relative to target's folder, bytes) of what kubectl cp wrote: regular files
    only, symlinks never followed, at most `limit` bytes in all (ValueError past that)."""
    found: list[tuple[str, bytes]] = []
    total = 0
    paths = [target] if target.is_file() else sorted(p for p in target.rglob("*"))
    for path in paths:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        total += len(data)
        if total > limit:
            raise ValueError(f"the copy holds more than {limit} bytes")
        found.append((str(path.relative_to(target.parent)), data))
    return found


def refusal(call: KubectlCall, plugins: frozenset[str] = frozenset()) -> str | None:
    """Why the broker will not run `call` whatever the rules say; None when it may.
    `plugins`: the plugins the broker's config lists (their own flags are theirs)."""
    table = _table()
    flags = flag_table()
    if call.verb in table["refused_verbs"]:
        return str(table["refused_verbs"][call.verb])
    plugin = call.verb in plugins
    if call.verb and call.verb not in flags.paths and not plugin:
        return f"kubectl {call.verb.split()[0]} is not a kubectl command guardctl knows; " \
               "only the plugins the broker's config lists are run through the broker"
    for name in call.flags:
        if name in table["refused_flags"]:
            return str(table["refused_flags"][name])
        if plugin:
            continue
        own = table["refused_verb_flags"].get(call.verb, {})
        if name in own:
            return str(own[name])
        if flags.flag(call.verb, name) is None:
            return str(table["unknown_flag"]).format(flag=f"--{name}")
    return None


def _write(folder: Path, entries: list[tuple[str, bytes]], base: str) -> Path:
    """Write one input into `folder`: a file named `base`, or a folder `base` of files."""
    folder.mkdir(mode=0o700)
    target = folder / base
    if len(entries) == 1 and entries[0][0] == "":
        _write_file(target, entries[0][1])
        return target
    target.mkdir(mode=0o700)
    for name, data in entries:
        if not safe_name(name):
            raise ValueError(f"unsafe file name {name!r} in an input")
        path = target / name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_file(path, data)
    return target


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def materialize(
    argv: tuple[str, ...], needs: list[Needed], fetched: dict[tuple[str, str], Any], root: Path
) -> tuple[str, ...]:
    """kubectl's arguments with each input's path replaced by its private copy under `root`.

    `fetched` maps (path, mode) to the entries the client sent.
    """
    words = list(argv)
    appended: list[str] = []
    for number, need in enumerate(needs):
        base = os.path.basename(need.path.rstrip("/")) or "input"
        if base in (".", ".."):
            base = "input"
        copy = _write(root / f"in{number}", fetched[(need.path, need.mode)], base)
        if need.word < 0:
            appended.append(str(copy))
            continue
        word = words[need.word]
        if not word.endswith(need.path):
            raise ValueError(f"argument {word!r} does not end with its path {need.path!r}")
        words[need.word] = word[: len(word) - len(need.path)] + str(copy)
    return (*words, *appended)


def tree_renderer(fetch: Fetch, expand: bool, cache_dir: Path) -> Callable[[str], str | None]:
    """A policy Render (see firewall.manifests) of a kustomization the client sends: written
    to a private folder, rendered there by the broker's kubectl (or found in the broker's
    own render cache, `cache_dir`, when the same files were rendered before)."""

    def render(path: str) -> str | None:
        import tempfile

        from guardctl.running.kustomize import cached_render
        from guardctl.running.runner import find_kubectl

        try:
            entries = fetch(path, "tree", expand)
            kubectl = find_kubectl(Environment())
            with tempfile.TemporaryDirectory(prefix="guardctl-kustomize-") as root:
                copy = str(_write(Path(root) / "in", entries, "input"))
                return cached_render(kubectl, copy, cache_dir, confine=copy)
        except (InputError, UnsafeError, OSError, ValueError):
            return None

    return render


def text_reader(fetch: Fetch, expand: bool) -> Callable[[str, bool], list[tuple[str, str]] | None]:
    """A policy Reader (see firewall.manifests) over inputs the client sends: the decision
    reads the agent's files through the agent, never the broker's own."""

    def read(path: str, recursive: bool) -> list[tuple[str, str]] | None:
        try:
            entries = fetch(path, "manifests-r" if recursive else "manifests", expand)
            return [(os.path.join(path, name) if name else path, data.decode("utf-8-sig"))
                    for name, data in entries]
        except (InputError, UnicodeDecodeError):
            return None

    return read
