"""Programs that run other programs (sudo, env, xargs, bash -c, ...), described by data.

The table lives in `guardctl/data/wrappers.json` (its "about" key documents the format).
`unwrap(invocation, table)` reads one wrapper's options the way the program itself would
(POSIX clusters, `--long=value`, `--`) and says what runs inside: another invocation, a
shell string to parse as a line, or nothing. Anything it cannot read (an unknown option, an
option only known at run time) is a problem: guardctl then cannot tell which command runs.
"""

import json
import shlex
from collections.abc import Mapping
from fnmatch import fnmatchcase
from functools import cache, lru_cache
from types import MappingProxyType
from typing import NamedTuple

from guardctl.bundled import data_text
from guardctl.firewall.shellword import Word, is_assignment
from guardctl.model import SimpleCommand

KINDS = frozenset({"command", "joined", "xargs", "find", "eval", "shell"})
ROLES = frozenset(
    {"stop", "script", "string", "stdin", "shell", "replace", "split", "exec", "opaque"}
)
# roles whose option value is text guardctl must read: unknowable when dynamic
_TEXT_ROLES = frozenset({"string", "split", "replace"})
_ALWAYS_STOP = {"--help": "stop", "--version": "stop"}
_FIND_ACTIONS = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


class Spec(NamedTuple):
    """How one wrapper reads its options and where its command starts."""

    kind: str
    flags: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()
    attached: frozenset[str] = frozenset()
    roles: Mapping[str, str] = MappingProxyType({})
    positionals: int = 0
    after: Mapping[str, str] = MappingProxyType({})
    assignments: bool = False
    plus: bool = False
    numeric: bool = False
    permute: bool = False
    # options may come among the positionals, but the first operand after them is the
    # command (ssh HOST -p 22 CMD -n: that -n is the command's)
    permute_positionals: bool = False

    @property
    def has_options(self) -> bool:
        """False for eval, builtin, nohup: whatever follows them is the command."""
        return bool(self.flags or self.values or self.attached or self.assignments)


class Invocation(NamedTuple):
    """A command before its wrappers are peeled off; becomes a SimpleCommand in the end."""

    words: tuple[Word, ...]
    assignments: tuple[tuple[str, str], ...] = ()
    stdin_from: str = "inherit"
    stdin: str | None = None
    # the heredoc/here-string text holds expansions, so a shell reading it runs unknown code
    stdin_dynamic: bool = False
    writes: tuple[str, ...] = ()
    via: tuple[str, ...] = ()
    open_tail: bool = False


class Script(NamedTuple):
    """Shell text a wrapper runs as a line (`bash -c TEXT`, `eval`, `watch`, `flock -c`)."""

    text: str
    label: str
    # true when the commands of the text read the wrapper's stdin and write its redirects
    inherits_io: bool = True


class Step(NamedTuple):
    """What one wrapper runs: `emit_self` keeps the wrapper itself as a command too."""

    emit_self: bool = False
    inner: tuple[Invocation, ...] = ()
    scripts: tuple[Script, ...] = ()
    problems: tuple[str, ...] = ()


class _OptionError(ValueError):
    pass


# --------------------------------------------------------------------------- the table


def load_table(text: str) -> dict[str, Spec]:
    """Parse wrappers.json text into {program name: Spec}; a malformed entry raises ValueError."""
    table: dict[str, Spec] = {}
    for entry in json.loads(text)["wrappers"]:
        unknown = set(entry) - {"names", *Spec._fields}
        if (
            unknown
            or entry["kind"] not in KINDS
            or not set(entry.get("roles", {}).values()) <= ROLES
        ):
            raise ValueError(f"bad wrapper entry {entry.get('names')}: {sorted(unknown)}")
        spec = Spec(
            kind=entry["kind"],
            flags=frozenset(entry.get("flags", "").split()),
            values=frozenset(entry.get("values", "").split()),
            attached=frozenset(entry.get("attached", "").split()),
            roles={**_ALWAYS_STOP, **entry.get("roles", {})},
            positionals=int(entry.get("positionals", 0)),
            after=dict(entry.get("after", {})),
            assignments=bool(entry.get("assignments", False)),
            plus=bool(entry.get("plus", False)),
            numeric=bool(entry.get("numeric", False)),
            permute=bool(entry.get("permute", False)),
            permute_positionals=bool(entry.get("permute_positionals", False)),
        )
        table.update({name: spec for name in entry["names"]})
    return table


@cache
def default_table() -> Mapping[str, Spec]:
    """The bundled wrapper table (read once: it is package data, not a setting)."""
    return load_table(data_text("wrappers.json"))


class _CodeReader(NamedTuple):
    code: frozenset[str]
    operand_is_code: bool


@lru_cache(maxsize=1024)
def _code_reader(name: str) -> _CodeReader | None:
    """How the program `name` finds its code on stdin (None: it runs none), by name: every
    command asks, and most programs match none of the globs."""
    exact, globbed = _code_readers()
    return exact.get(name) or next((r for g, r in globbed if fnmatchcase(name, g)), None)


@cache
def _code_readers() -> tuple[dict[str, _CodeReader], tuple[tuple[str, _CodeReader], ...]]:
    """From wrappers.json's `code_from_stdin`: {name: how it finds its code}, and the same
    for names given as globs (`python3.*`)."""
    entries = json.loads(data_text("wrappers.json"))["code_from_stdin"]["programs"]
    readers = [
        (name, _CodeReader(frozenset(spec["code"]), bool(spec["operand_is_code"])))
        for names, spec in entries.items()
        for name in names.split()
    ]
    globbed = tuple((n, r) for n, r in readers if any(c in n for c in "*?["))
    return {n: r for n, r in readers if (n, r) not in globbed}, globbed


def unseen_code(cmd: SimpleCommand) -> str | None:
    """A problem when `cmd` runs code it reads from stdin that guardctl cannot see (`cat
    x.py | python3`, `echo CMD | at now`); None when its words hold the code, or the code
    comes from a here-document (whose text the rules read)."""
    if cmd.stdin_from in ("heredoc", "herestring") or not cmd.argv:
        return None
    name = cmd.program
    reader = _code_reader(name)
    if reader is None:
        return None
    for word in cmd.argv[1:]:
        if word == "-":
            break
        if word in ("--help", "--version"):
            return None
        if word.startswith("--") and word.split("=", 1)[0] in reader.code:
            return None
        if word.startswith("-") and not word.startswith("--") and len(word) > 1:
            if any(f"-{letter}" in reader.code for letter in word[1:]):
                return None
            continue
        if not word.startswith("-") and reader.operand_is_code:
            return None
    source = {"pipe": "a pipe", "file": "a file"}.get(cmd.stdin_from, "standard input")
    return f"'{name}' runs code it reads from {source}, which guardctl cannot see"


# --------------------------------------------------------------------------- unwrapping


def unwrap(inv: Invocation, table: Mapping[str, Spec]) -> Step | None:
    """What wrapper `inv.words[0]` runs; None when it is not a wrapper.

    >>> unwrap(Invocation((Word("sudo"), Word("ls"))), default_table()).inner[0].words
    (Word(text='ls', dynamic=False, glob=False, tilde=False),)
    """
    name = inv.words[0].text.rsplit("/", 1)[-1]
    spec = table.get(name)
    if spec is None:
        return None
    if spec.kind == "find":
        return _find(inv)
    try:
        words, index, roles, assignments = _read_options(spec, list(inv.words))
    except _OptionError as exc:
        return Step(emit_self=True, problems=(f"{name}: {exc}",))
    if "opaque" in roles:
        problem = f"`{name} {roles['opaque']}` may run commands guardctl cannot read"
        return Step(emit_self=True, problems=(problem,))
    if "stop" in roles:
        return Step(emit_self=True)
    rest = tuple(words[index:])
    inner = inv._replace(
        words=rest, assignments=inv.assignments + tuple(assignments), via=inv.via + (name,)
    )
    return _KIND_HANDLERS[spec.kind](name, spec, inv, inner, roles)


def _read_options(
    spec: Spec, words: list[Word]
) -> tuple[list[Word], int, dict[str, str], list[tuple[str, str]]]:
    """Options, assignments and positionals; returns (words, command index, roles, assignments)."""
    roles: dict[str, str] = {}
    assignments: list[tuple[str, str]] = []
    operands: list[Word] = []  # non-options met on the way, when the program permutes (su)
    i = 1
    while i < len(words):
        word = words[i]
        if word.text == "--" and not word.dynamic:
            i += 1
            break
        if not spec.has_options:
            break
        if word.dynamic:
            raise _OptionError(f"word {word.text!r} is only known at run time")
        text = word.text
        if spec.assignments and is_assignment(text):
            name, _, value = text.partition("=")
            assignments.append((name.rstrip("+"), value))
            i += 1
            continue
        if not _is_option(spec, text):
            if not spec.permute and not (
                spec.permute_positionals and len(operands) < spec.positionals
            ):
                break
            operands.append(word)
            i += 1
            continue
        end, found = _one_option(spec, words, i)
        for option, value in found:
            role = spec.roles.get(option)
            if role == "split":
                words[i:end] = _split_string(value)
                end = i
            elif role == "opaque":  # named in the problem: the option and its value
                roles[role] = f"{option} {value}"
            elif role:
                roles[role] = value
        i = end
    if operands:
        words, i = [words[0], *operands, *words[i:]], 1
    return words, _positionals(spec, words, i, roles), roles, assignments


def _positionals(spec: Spec, words: list[Word], i: int, roles: dict[str, str]) -> int:
    """Skip the operands before the command; an `after` word (flock FILE -c) sets a role."""
    i = min(i + spec.positionals, len(words))
    if i < len(words) and words[i].text in spec.after and not words[i].dynamic:
        roles[spec.after[words[i].text]] = ""
        i += 1
    return i


def _is_option(spec: Spec, text: str) -> bool:
    if text == "-":
        return "-" in spec.flags
    return len(text) > 1 and (text[0] == "-" or (spec.plus and text[0] == "+"))


def _one_option(spec: Spec, words: list[Word], i: int) -> tuple[int, list[tuple[str, str]]]:
    """Read the option word at `i`; returns (next index, [(option, value)])."""
    text = words[i].text
    if text.startswith("--") or text == "-":
        name, eq, value = text.partition("=")
        if name in spec.values and not eq:
            return i + 2, [(name, _value_word(spec, words, i + 1, name))]
        if name in spec.values or name in spec.attached or (name in _known(spec) and not eq):
            return i + 1, [(name, value)]
        raise _OptionError(f"unknown option {name!r}")
    if spec.numeric and text[1:].isdigit():
        return i + 1, []
    found: list[tuple[str, str]] = []
    for j, letter in enumerate(text[1:], start=2):
        option = "-" + letter  # `+x` clears what `-x` sets: same arity, same meaning to us
        rest = text[j:]
        if option in spec.values:
            if rest:
                return i + 1, [*found, (option, rest)]
            return i + 2, [*found, (option, _value_word(spec, words, i + 1, option))]
        if option in spec.attached:
            return i + 1, [*found, (option, rest)]
        if option not in _known(spec):
            raise _OptionError(f"unknown option {option!r}")
        found.append((option, ""))
    return i + 1, found


def _known(spec: Spec) -> frozenset[str]:
    return spec.flags | frozenset(spec.roles)


def _value_word(spec: Spec, words: list[Word], i: int, option: str) -> str:
    if i >= len(words):
        raise _OptionError(f"option {option!r} has no value")
    if words[i].dynamic and spec.roles.get(option) in _TEXT_ROLES:
        raise _OptionError(f"{option} {words[i].text} is only known at run time")
    return words[i].text


def _split_string(value: str) -> list[Word]:
    """env -S: split like the shell; variables in it are expanded by env at run time."""
    if "$" in value:
        raise _OptionError("-S string with variables only known at run time")
    try:
        return [Word(part) for part in shlex.split(value)]
    except ValueError as exc:
        raise _OptionError(f"cannot split -S string: {exc}") from exc


# --------------------------------------------------------------------------- kinds


def _command(
    name: str, spec: Spec, inv: Invocation, inner: Invocation, roles: dict[str, str]
) -> Step:
    if "string" in roles or "script" in roles:  # su -c STRING, flock FILE -c STRING
        return _script(name, inv, _operands(roles, inner), f"{name} -c")
    if not inner.words:  # `sudo -s` with no command: an interactive shell
        return _shell(name, spec, inv, inner, roles) if "shell" in roles else Step(emit_self=True)
    return Step(inner=(inner,))


def _joined(
    name: str, spec: Spec, inv: Invocation, inner: Invocation, roles: dict[str, str]
) -> Step:
    """watch joins its words with spaces and hands them to `sh -c` (unless -x)."""
    if "exec" in roles or not inner.words:
        return _command(name, spec, inv, inner, roles)
    text = " ".join(word.text for word in inner.words)
    return _script(name, inv, (Word(text, any(w.dynamic for w in inner.words)),), name)


def _xargs(
    name: str, spec: Spec, inv: Invocation, inner: Invocation, roles: dict[str, str]
) -> Step:
    """xargs appends words read from stdin, or puts them where -I R says."""
    words = inner.words or (Word("echo"),)
    if "replace" in roles:
        marker = roles["replace"] or "{}"
        words = tuple(w._replace(dynamic=True) if marker in w.text else w for w in words)
    return Step(
        inner=(
            inner._replace(
                words=words,
                stdin_from="inherit",
                stdin=None,
                stdin_dynamic=False,
                open_tail="replace" not in roles,
            ),
        )
    )


def _eval(name: str, spec: Spec, inv: Invocation, inner: Invocation, roles: dict[str, str]) -> Step:
    if not inner.words:
        return Step(emit_self=True)
    if any(word.dynamic for word in inner.words):
        return Step(emit_self=True, problems=("eval of text only known at run time",))
    text = " ".join(word.text for word in inner.words)
    return Step(scripts=(Script(text, "eval"),))


def _shell(
    name: str, spec: Spec, inv: Invocation, inner: Invocation, roles: dict[str, str]
) -> Step:
    """sh -c STRING, sh SCRIPT (a file: kept as is), or sh reading commands from stdin."""
    if "string" in roles or "script" in roles:
        return _script(name, inv, _operands(roles, inner), f"{name} -c")
    if inner.words and "stdin" not in roles:
        return Step(emit_self=True)
    if inv.stdin_from in ("heredoc", "herestring") and inv.stdin is not None:
        if inv.stdin_dynamic:
            return Step(emit_self=True, problems=(f"{name} reads commands only known at run time",))
        return Step(scripts=(Script(inv.stdin, f"{name} <<", inherits_io=False),))
    if inv.stdin_from == "file":
        return Step(emit_self=True)
    source = "a pipe" if inv.stdin_from == "pipe" else "standard input"
    return Step(emit_self=True, problems=(f"shell reads commands from {source}",))


def _operands(roles: dict[str, str], inner: Invocation) -> tuple[Word, ...]:
    """The shell string: an option's value (su -c STRING) or the first operand (sh -c STRING)."""
    return (Word(roles["string"]),) if "string" in roles else inner.words


def _script(name: str, inv: Invocation, operands: tuple[Word, ...], label: str) -> Step:
    if not operands:
        return Step(emit_self=True, problems=(f"{label} without a command string",))
    if operands[0].dynamic:
        return Step(emit_self=True, problems=(f"{label} runs text only known at run time",))
    return Step(scripts=(Script(operands[0].text, label),))


def _find(inv: Invocation) -> Step:
    """find ... -exec CMD {} ; (or +): each action is a command; find itself is one too."""
    inner: list[Invocation] = []
    words = inv.words
    i = 1
    while i < len(words):
        action = words[i].text
        i += 1
        if action not in _FIND_ACTIONS or words[i - 1].dynamic:
            continue
        start = i
        while i < len(words) and not _ends_exec(words, i):
            i += 1
        if i >= len(words) or i == start:
            return Step(
                emit_self=True, problems=(f"find {action} without a command ending in ';'",)
            )
        argv = tuple(w._replace(dynamic=True) if "{}" in w.text else w for w in words[start:i])
        inner.append(
            Invocation(argv, inv.assignments, writes=inv.writes, via=inv.via + (f"find {action}",))
        )
        i += 1
    return Step(emit_self=True, inner=tuple(inner))


def _ends_exec(words: tuple[Word, ...], i: int) -> bool:
    text = words[i].text
    return not words[i].dynamic and (text == ";" or (text == "+" and words[i - 1].text == "{}"))


_KIND_HANDLERS = {
    "command": _command,
    "joined": _joined,
    "xargs": _xargs,
    "eval": _eval,
    "shell": _shell,
}
