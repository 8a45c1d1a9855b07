"""Turn one kubectl invocation into a `KubectlCall`: what kubectl itself would understand.

kubectl is a cobra program with pflag flags, so it is read the way cobra reads it:

1. The command path. At each level cobra takes the first word that is not a flag or a
   flag's value (a flag it does not know at that level is assumed to take a value) and
   looks it up among that level's sub-commands and their aliases. Flags may therefore sit
   between the words of a path: `kubectl -n x rollout --context y restart deploy/a`.
2. The flags, everywhere (before and after the verb), with the flags of the path found
   and the global ones: `--f v`, `--f=v`, `-n v`, `-n=v`, `-nv`, clusters of booleans
   (`-it`, `-itn dev`), optional values (`--dry-run` bare), `--` ending the flags.
3. The positional words, read per verb (`data/normalize.json` says which verb takes
   `TYPE NAME…`, which a default type, which a name to create) through the resource table.

Anything guardctl cannot read statically (a dynamic verb, resource type, flag or
important flag value; an unknown verb, type or flag; words xargs appends) becomes a
problem, so the policy never allows it without a human. `normalize` never raises.
"""

import json
import posixpath
import re
from collections.abc import Callable
from functools import cache
from types import MappingProxyType
from typing import Any, NamedTuple

from guardctl.bundled import data_text
from guardctl.commands import guardctl_commands
from guardctl.firewall import kubeyaml, resources
from guardctl.firewall.flagtable import ROOT, FlagSpec, FlagTable, flag_table
from guardctl.firewall.kept import MAX_CHARS, Kept
from guardctl.model import KubectlCall, ResourceRef, SimpleCommand

# kubectl, /usr/local/bin/kubectl, kubectl.1.27, kubectl-1.30, kubectl-v1.29
_KUBECTL_NAME = re.compile(r"kubectl(?:[.-]?v?\d+(?:\.\d+)*)?")
_PYTHON_NAME = re.compile(r"python(?:\d+(?:\.\d+)*)?")
# python options that take the next word as their value
_PYTHON_VALUE_OPTIONS = frozenset({"-W", "-X"})
# characters through which the shell changes a word at run time (expansion, globbing)
_DYNAMIC_MARKS = frozenset("$`*?[")
# the spellings pflag's strconv.ParseBool accepts
_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), "true"),
    **dict.fromkeys(("0", "f", "F", "false", "FALSE", "False"), "false"),
}
_DRY_VALUES = frozenset({"client", "server", "unchanged"})  # "unchanged": bare --dry-run
# the calls made lately, by command (a call is immutable): a run reads its command in several
# places (decision, masking, the broker's journal, the files it names), each a full parse
_NORMALIZED: Kept[tuple[SimpleCommand, frozenset[str]], KubectlCall] = Kept(256)


class _Config(NamedTuple):
    """The hand-written tables of `data/normalize.json`."""

    guardctl_options: frozenset[str]
    shapes: dict[str, str]
    default_types: dict[str, str]
    command_verbs: frozenset[str]
    raw_verbs: frozenset[str]
    raw_nonresource_paths: tuple[str, ...]
    dynamic_value_flags: frozenset[str]
    # integer flags: kubectl (pflag) reads them with Go's base prefixes (`00`, `0x0`, `+0`)
    int_flags: frozenset[str]


@cache
def _config() -> _Config:
    text = data_text("normalize.json")
    data: Any = json.loads(text)
    return _Config(
        guardctl_options=frozenset(data["guardctl_options"]),
        shapes=dict(data["shapes"]),
        default_types=dict(data["default_types"]),
        command_verbs=frozenset(data["command_verbs"]),
        raw_verbs=frozenset(data["raw_verbs"]),
        raw_nonresource_paths=tuple(data["raw_nonresource_paths"]),
        dynamic_value_flags=frozenset(data["dynamic_value_flags"]),
        int_flags=frozenset(data["int_flags"]),
    )


# --------------------------------------------------------------------------- which program


def _python_module_start(argv: tuple[str, ...]) -> int | None:
    """For `python [opts] -m guardctl ARGS`, the index of ARGS' first word."""
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        word = argv[i]
        if word == "-c":
            return None  # python -c CODE: the rest are the code's arguments
        if word.startswith("-m"):
            module = word[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            if module != "guardctl":
                return None
            return i + 1 if word[2:] else i + 2
        i += 2 if word in _PYTHON_VALUE_OPTIONS else 1
    return None


def _guardctl_start(argv: tuple[str, ...], first: int) -> int | None:
    """guardctl ARGS is kubectl unless ARGS starts with one of guardctl's own commands."""
    if first >= len(argv):
        return None
    word = argv[first]
    if word == "kubectl":
        return first + 1
    config = _config()
    if word in guardctl_commands() or word in config.guardctl_options:
        return None
    return first


def _args_start(cmd: SimpleCommand) -> int | None:
    if not cmd.argv or 0 in cmd.dynamic:
        return None
    program = cmd.program
    if _KUBECTL_NAME.fullmatch(program):
        return 1
    if program == "guardctl":
        return _guardctl_start(cmd.argv, 1)
    if _PYTHON_NAME.fullmatch(program):
        start = _python_module_start(cmd.argv)
        return None if start is None else _guardctl_start(cmd.argv, start)
    return None


def is_kubectl(cmd: SimpleCommand) -> bool:
    """True for kubectl (any path, versioned names), and guardctl or `python -m guardctl`
    used as kubectl (first word not a guardctl command, or `guardctl kubectl …`)."""
    return _args_start(cmd) is not None


def kubectl_args(cmd: SimpleCommand) -> tuple[str, ...] | None:
    """The words kubectl receives (`guardctl kubectl get pods` -> ("get", "pods"))."""
    start = _args_start(cmd)
    return None if start is None else cmd.argv[start:]


# --------------------------------------------------------------------------- words


def _has_marks(text: str) -> bool:
    return any(c in _DYNAMIC_MARKS for c in text)


def _without_quotes(source: str) -> str:
    """A dynamic word's source text (`"--namespace=$NS"`, `"$P"`) without its quote marks,
    so that a quoted flag is still read as a flag."""
    return source.replace('"', "").replace("'", "")


def _runtime(what: str, word: str) -> str:
    return f"{what} comes from '{word}', only known at run time"


class _Word(NamedTuple):
    position: int  # index among kubectl's arguments
    text: str  # the value; for a dynamic word its source text without quote marks
    dynamic: bool

    def part_dynamic(self, part: str) -> bool:
        """Whether `part` of this word may change at run time.

        When the word's text shows no expansion mark, the parser could not say which
        part changes, so every part counts as dynamic (fail closed).
        """
        return self.dynamic and (_has_marks(part) or not _has_marks(self.text))


class _State:
    """What has been read so far; the parts of a KubectlCall under construction."""

    __slots__ = (
        "table", "words", "path", "verb", "taken", "flags", "dynamic_flags", "positional",
        "after_dash", "dash", "refs", "names", "namespace_from_args",
        "all_namespaces_from_args", "problems", "reported", "flag_words", "plugins", "plugin",
    )

    def __init__(
        self, table: FlagTable, words: list[_Word], plugins: frozenset[str] = frozenset()
    ) -> None:
        self.table = table
        self.plugins = plugins  # the plugins the user listed: commands, with flags of their own
        self.plugin = False  # the first word is one of them
        self.words = words
        self.path = ROOT
        self.verb = ""
        self.taken: set[int] = set()  # words that name the command path
        self.flags: dict[str, list[str]] = {}
        self.dynamic_flags: set[str] = set()
        self.positional: list[_Word] = []
        self.after_dash: list[_Word] = []
        self.dash = False
        self.refs: list[ResourceRef] = []
        self.names: list[str] = []
        self.namespace_from_args: str | None = None
        self.all_namespaces_from_args = False  # --raw /api/v1/secrets lists every namespace
        self.problems: list[str] = []
        self.reported: set[int] = set()  # words a problem already names
        self.flag_words: list[tuple[str, int]] = []  # (flag, word holding its value)

    def problem(self, text: str, word: _Word | None = None) -> None:
        if text not in self.problems:
            self.problems.append(text)
        if word is not None:
            self.reported.add(word.position)

    @property
    def label(self) -> str:
        return self.verb or "kubectl"


# --------------------------------------------------------------------------- 1: command path


def _value_follows(word: str, path: str, table: FlagTable) -> bool:
    """cobra's stripFlags: does this flag word take the next word as its value?

    An unknown flag counts as taking one, exactly as cobra assumes.
    """
    if "=" in word:
        return False
    if word.startswith("--"):
        spec = table.flag(path, word[2:].replace("_", "-"))
    elif word.startswith("-") and len(word) == 2:
        spec = table.shorthand(path, word[1])
    else:
        return False
    return spec is None or spec.needs_value


def _next_command_word(state: _State) -> _Word | None:
    """The first word, not yet taken, that is neither a flag nor a flag's value."""
    words = [w for w in state.words if w.position not in state.taken]
    k = 0
    while k < len(words):
        text = words[k].text
        if text == "--":
            return None
        if text and not text.startswith("-"):
            return words[k]
        k += 2 if _value_follows(text, state.path, state.table) else 1
    return None


def _resolve_path(state: _State) -> None:
    """Walk the sub-command tree as cobra's Find does; set path, verb and taken words.

    A word that is no sub-command ends the walk. Below the root that is not yet an
    error: cobra's guess may have taken a flag's value (`apply -Rf dir/`) for it, so
    `_check_sub_command` decides after the flags are read.
    """
    table = state.table
    for _ in range(len(state.words) + 1):  # each round takes a word or stops
        if not table.has_children(state.path):
            break
        word = _next_command_word(state)
        if word is None:
            break
        child = None if word.dynamic else table.child(state.path, word.text)
        if child is None:
            if state.path == ROOT:
                # a plugin or a typo: the word is the verb, not a positional argument
                _unknown_command(state, word)
                state.verb = word.text
                state.taken.add(word.position)
            break
        state.path = child
        state.taken.add(word.position)
    state.verb = state.verb or state.path


def _unknown_command(state: _State, word: _Word) -> None:
    first = state.path == ROOT and word.position == 0 and not word.dynamic
    if first and word.text in state.plugins:
        # kubectl runs `kubectl-NAME` for a first word it does not know, with every word after
        state.plugin = True
        return
    if word.dynamic:
        state.problem(_runtime("kubectl command", word.text), word)
    else:
        state.problem(f"unknown kubectl command '{f'{state.path} {word.text}'.strip()}'", word)


def _check_sub_command(state: _State) -> None:
    """A command with sub-commands (`rollout`, `create secret`) given other words:
    kubectl prints help, fails, or looks for a plugin (`kubectl-create-foo`)."""
    words = state.positional + state.after_dash
    if words and state.verb == state.path and state.table.has_children(state.path):
        _unknown_command(state, words[0])


# --------------------------------------------------------------------------- 2: flags


def _set_flag(state: _State, spec: FlagSpec, value: str, source: _Word | None) -> None:
    """Record one value of a flag; `source` is the word a dynamic value came from."""
    dynamic = source is not None and source.part_dynamic(value)
    if spec.takes == "bool" and not dynamic:
        if value not in _BOOLS:
            state.problem(f"invalid value '{value}' for --{spec.name}")
        value = _BOOLS.get(value, value)
    if dynamic and source is not None:
        state.dynamic_flags.add(spec.name)
        if not spec.needs_value or spec.name in _config().dynamic_value_flags:
            state.problem(_runtime(f"value of --{spec.name}", source.text), source)
    if source is not None:
        state.flag_words.append((spec.name, source.position))
    if spec.name in _config().int_flags and not dynamic:
        value = _int_value(state, spec.name, value)
    state.flags.setdefault(spec.name, []).append(value)


def _int_value(state: _State, name: str, value: str) -> str:
    """An integer flag's value in decimal, as kubectl reads it (`--replicas=0x0` is 0)."""
    if kubeyaml.GO_INT.fullmatch(value):
        try:
            return str(kubeyaml.to_int(value))
        except ValueError:
            pass
    state.problem(f"invalid value '{value}' for --{name}")
    return value


def _unknown_flag(state: _State, flag: str, value: str) -> None:
    if not state.plugin:  # a plugin's own flags are its business
        state.problem(f"unknown flag {flag} for '{state.label}'")
    state.flags.setdefault(flag.lstrip("-"), []).append(value)


def _long_flag(state: _State, words: list[_Word], k: int) -> int:
    """Read `--name`, `--name=value` or `--name value` at words[k]; the next k."""
    word = words[k]
    raw_name, eq, value = word.text[2:].partition("=")
    if word.part_dynamic(raw_name):
        state.problem(_runtime("flag", word.text), word)
        return k + 1
    name = raw_name.replace("_", "-")  # kubectl's flag normalizer: --all_namespaces
    spec = state.table.flag(state.path, name)
    if spec is None:
        # guess: `--x=y` holds its value; otherwise assume a boolean
        _unknown_flag(state, f"--{name}", value if eq else "true")
        return k + 1
    if eq:
        _set_flag(state, spec, value, word)
    elif not spec.needs_value:
        _set_flag(state, spec, spec.bare, None)
    elif k + 1 < len(words):
        _set_flag(state, spec, words[k + 1].text, words[k + 1])
        return k + 2
    else:
        state.problem(f"flag needs an argument: --{name}")
    return k + 1


def _short_flags(state: _State, words: list[_Word], k: int) -> int:
    """Read a shorthand cluster at words[k] (`-n v`, `-nv`, `-n=v`, `-it`, `-itn v`)."""
    word = words[k]
    letters = word.text[1:]
    for j, letter in enumerate(letters):
        rest = letters[j:]
        if word.part_dynamic(letter):
            state.problem(_runtime("flag", word.text), word)
            return k + 1
        spec = state.table.shorthand(state.path, letter)
        if spec is None:
            _unknown_flag(state, f"-{letter}", "true")
            return k + 1
        if len(rest) > 2 and rest[1] == "=":
            _set_flag(state, spec, rest[2:], word)
            return k + 1
        if not spec.needs_value:
            _set_flag(state, spec, spec.bare, None)
            continue
        if len(rest) > 1:
            _set_flag(state, spec, rest[1:], word)
        elif k + 1 < len(words):
            _set_flag(state, spec, words[k + 1].text, words[k + 1])
            return k + 2
        else:
            state.problem(f"flag needs an argument: -{letter}")
        return k + 1
    return k + 1


def _parse_flags(state: _State) -> None:
    """pflag's pass over every word but the command path: flags and positionals."""
    words = [w for w in state.words if w.position not in state.taken]
    k = 0
    while k < len(words):
        word = words[k]
        text = word.text
        if state.dash:
            state.after_dash.append(word)
            k += 1
        elif text == "--":
            state.dash = True
            k += 1
        elif text.startswith("--"):
            k = _long_flag(state, words, k)
        elif text.startswith("-") and len(text) > 1:
            k = _short_flags(state, words, k)
        else:
            state.positional.append(word)
            k += 1


# --------------------------------------------------------------------------- 3: resources


def _unknown_ref(text: str) -> ResourceRef:
    return ResourceRef(resource=text, group="", kind="")


def _type_refs(state: _State, word: _Word, text: str, categories: bool) -> list[ResourceRef]:
    """The refs a TYPE word names: comma lists, categories (`all`), qualified names, Kinds."""
    if word.part_dynamic(text):
        state.problem(_runtime("resource type", word.text), word)
        return [_unknown_ref(text)]
    refs: list[ResourceRef] = []
    for item in (t for t in text.split(",") if t):
        members = resources.category(item) if categories else None
        info = None if members is not None else resources.lookup(item)
        if members is not None:
            refs.extend(m.ref() for m in members)
        elif info is not None:
            refs.append(info.ref())
        else:
            state.problem(f"unknown resource type '{item}'", word)
            refs.append(_unknown_ref(item))
    return refs


def _slash_ref(state: _State, word: _Word) -> list[ResourceRef]:
    """TYPE/NAME -> the named object(s)."""
    type_text, _, name = word.text.partition("/")
    return [r._replace(name=name or None) for r in _type_refs(state, word, type_text, False)]


def _types(state: _State, words: list[_Word]) -> None:
    """kubectl's builder: `TYPE[,TYPE…] [NAME…]`, or only `TYPE/NAME` words."""
    if not words:
        return
    if any("/" in w.text for w in words):
        for word in words:
            if "/" in word.text:
                state.refs.extend(_slash_ref(state, word))
                continue
            if word.dynamic:
                state.problem(_runtime("resource type", word.text), word)
            state.names.append(word.text)  # kubectl rejects the mix; keep the word visible
        return
    refs = _type_refs(state, words[0], words[0].text, categories=True)
    names = [w.text for w in words[1:]]
    if len(refs) == 1 and names:
        state.refs.extend(refs[0]._replace(name=n) for n in names)
    else:
        state.refs.extend(refs)
        state.names.extend(names)


def _default_ref(state: _State) -> ResourceRef:
    spec = _config().default_types[state.path]
    resource, _, subresource = spec.partition("/")
    info = resources.lookup(resource)
    if info is None:
        state.problem(f"unknown resource type '{resource}'")
        return _unknown_ref(resource)
    return info.ref(subresource=subresource or None)


def _named(state: _State, words: list[_Word]) -> None:
    """`NAME…` of the verb's default type, each possibly `TYPE/NAME` (`deploy/x`)."""
    default = _default_ref(state)
    for word in words:
        if "/" in word.text:
            state.refs.extend(_slash_ref(state, word))
        else:
            state.refs.append(default._replace(name=word.text))
    if not words:
        state.refs.append(default)


def _shape_types_pairs(state: _State, words: list[_Word]) -> None:
    """label/annotate/set env/set image: `KEY=VALUE` and `KEY-` words are not resources."""
    _types(state, [w for w in words if "=" not in w.text and not w.text.endswith("-")])


def _shape_types_taints(state: _State, words: list[_Word]) -> None:
    """taint: `KEY=VALUE:EFFECT`, `KEY:EFFECT` and `KEY-` words are taints."""
    _types(state, [w for w in words if not ({"=", ":"} & set(w.text) or w.text.endswith("-"))])


def _shape_types_last(state: _State, words: list[_Word]) -> None:
    """set selector/serviceaccount: the last word is the selector or account."""
    _types(state, words[:-1])


def _shape_ref_first(state: _State, words: list[_Word]) -> None:
    """logs/exec/attach/port-forward/debug: POD or TYPE/NAME, then other arguments."""
    _named(state, words[:1])


def _shape_name_first(state: _State, words: list[_Word]) -> None:
    """create <kind> NAME, run NAME: the name of the object created."""
    default = _default_ref(state)
    state.refs.append(default._replace(name=words[0].text) if words else default)


def _shape_explain(state: _State, words: list[_Word]) -> None:
    """explain RESOURCE[.FIELD…]: only the resource part names a type."""
    if words:
        state.refs.extend(_type_refs(state, words[0], words[0].text.split(".")[0], False))


def _shape_cp(state: _State, words: list[_Word]) -> None:
    """cp: `[[NAMESPACE/]POD:]PATH` for the source and the destination."""
    default = _default_ref(state)
    for word in words[:2]:
        colon = word.text.find(":")
        if colon <= 0:
            if word.dynamic:
                state.problem(_runtime("cp source or destination", word.text), word)
            continue
        pieces = word.text[:colon].split("/")
        if len(pieces) == 2:
            state.namespace_from_args = pieces[0]
        state.refs.append(default._replace(name=pieces[-1]))


def _shape_none(state: _State, words: list[_Word]) -> None:
    """Verbs without resource arguments: any argument known only at run time is a problem."""
    for word in words:
        if word.dynamic and word.position not in state.reported:
            state.problem(_runtime("argument", word.text), word)


_SHAPES: dict[str, Callable[[_State, list[_Word]], None]] = {
    "types": _types,
    "types_pairs": _shape_types_pairs,
    "types_taints": _shape_types_taints,
    "types_last": _shape_types_last,
    "names": _named,
    "ref_first": _shape_ref_first,
    "name_first": _shape_name_first,
    "explain": _shape_explain,
    "cp": _shape_cp,
    "none": _shape_none,
}


# --------------------------------------------------------------------------- --raw


def _raw_segments(state: _State, raw: str) -> list[str] | None:
    """The cleaned segments of an API path, as kubectl sends it (path.Join cleans `..`)."""
    if "%" in raw:
        state.problem(f"raw path '{raw}' is escaped; guardctl cannot read it")
        return None
    path = posixpath.normpath("/" + raw.split("?", 1)[0].split("#", 1)[0])
    path = re.sub("/+", "/", path)
    if any(path == p or path.startswith(p + "/") for p in _config().raw_nonresource_paths):
        return None
    segments = [s for s in path.split("/") if s]
    if not segments or segments[0] not in ("api", "apis"):
        state.problem(f"raw path '{raw}' names no API resource")
        return None
    return segments


def _raw_ref(state: _State, raw: str) -> None:
    """`--raw /api/v1/namespaces/x/secrets/y` -> secrets y in namespace x."""
    segments = _raw_segments(state, raw)
    if segments is None:
        return
    def segment(i: int) -> str:
        return segments[i] if i < len(segments) else ""

    if segments[0] == "api":
        group, version, rest = "", segment(1), segments[2:]
    else:
        group, version, rest = segment(1), segment(2), segments[3:]
    if not version or not rest:
        return  # discovery (/api, /apis/apps/v1): lists resource types, no objects
    if rest[0] == "watch":
        rest = rest[1:]  # the old /api/v1/watch/... form
    if not rest:
        return
    namespaces = resources.by_plural("namespaces", "")
    ns_subresources = namespaces.subresources if namespaces else ()
    in_namespace = len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ns_subresources
    if in_namespace:
        state.namespace_from_args = rest[1]
        rest = rest[2:]
    info = resources.by_plural(rest[0], group, version)
    if info is None:
        state.problem(f"unknown resource type '{rest[0]}'")
    state.all_namespaces_from_args = not in_namespace and (info is None or info.namespaced)
    ref = info.ref() if info else ResourceRef(resource=rest[0], group=group, kind="")
    name = rest[1] if len(rest) > 1 else None
    state.refs.append(ref._replace(name=name, subresource=rest[2] if len(rest) > 2 else None))
    if name is None and state.path == "delete":
        # DELETE on a collection deletes every object in it: what `delete --all` says
        state.flags.setdefault("all", []).append("true")


# --------------------------------------------------------------------------- assembling


def _last(state: _State, name: str) -> str | None:
    values = state.flags.get(name)
    return values[-1] if values else None


def _read_resources(state: _State) -> None:
    config = _config()
    if state.path in config.command_verbs:
        words = state.positional
    else:
        words = state.positional + state.after_dash
    shape = config.shapes.get(state.path, "none")
    _SHAPES[shape](state, words)
    raw = _last(state, "raw")
    if state.path in config.raw_verbs and raw and "raw" not in state.dynamic_flags:
        _raw_ref(state, raw)
    subresource = _last(state, "subresource")
    if subresource:
        state.refs = [r if r.subresource else r._replace(subresource=subresource)
                      for r in state.refs]


def _tail_can_change_meaning(state: _State) -> bool:
    """Could words xargs appends change the verb or a resource type (not just add names)?"""
    if state.dash or state.table.has_children(state.path) or state.verb != state.path:
        return True
    shape = _config().shapes.get(state.path, "none")
    if shape.startswith("types"):
        return not state.positional or any("/" in w.text for w in state.positional)
    if shape == "ref_first":
        return not state.positional
    return shape not in ("names", "name_first")


def _namespace(state: _State) -> str | None:
    """The namespace the call works in; None for the context's default and for calls that
    name only cluster-scoped resources (`-n x delete ns prod` is `delete ns prod`; the
    given value stays in flags)."""
    namespace = _last(state, "namespace")
    if state.namespace_from_args is not None:
        namespace = state.namespace_from_args
    refs = state.refs
    if refs and all(r.kind and not r.namespaced for r in refs):
        return None
    return namespace or None


def _call(cmd: SimpleCommand, state: _State) -> KubectlCall:
    dry = _last(state, "dry-run")
    config = _config()
    in_command = state.path in config.command_verbs
    positional = state.positional + ([] if in_command else state.after_dash)
    return KubectlCall(
        argv=cmd.argv,
        verb=state.verb,
        resources=tuple(state.refs),
        names=tuple(state.names),
        namespace=_namespace(state),
        all_namespaces=_last(state, "all-namespaces") == "true" or state.all_namespaces_from_args,
        flags=MappingProxyType({name: tuple(values) for name, values in state.flags.items()}),
        global_flags=frozenset(
            name for name in state.flags if state.table.is_global(state.path, name)
        ),
        args=tuple(w.text for w in positional),
        arg_words=tuple(w.position for w in positional),
        command=tuple(w.text for w in state.after_dash) if in_command else (),
        dry_run=dry in _DRY_VALUES and "dry-run" not in state.dynamic_flags,
        problems=tuple(state.problems),
        flag_words=tuple(state.flag_words),
    )


def _normalize(cmd: SimpleCommand, plugins: frozenset[str]) -> KubectlCall:
    start = _args_start(cmd)
    if start is None:
        problem = f"not a kubectl command: {cmd.program!r}"
        return KubectlCall(argv=cmd.argv, verb="", problems=(problem,))
    words = [
        _Word(i - start, _without_quotes(cmd.argv[i]), True)
        if i in cmd.dynamic
        else _Word(i - start, cmd.argv[i], False)
        for i in range(start, len(cmd.argv))
    ]
    state = _State(table=flag_table(), words=words, plugins=plugins)
    _resolve_path(state)
    _parse_flags(state)
    _check_sub_command(state)
    _read_resources(state)
    if cmd.open_tail and _tail_can_change_meaning(state):
        state.problem("xargs appends arguments at run time")
    return _call(cmd, state)


def normalize(cmd: SimpleCommand, plugins: frozenset[str] = frozenset()) -> KubectlCall:
    """The kubectl call `cmd` makes, as kubectl reads it; problems for what is unclear.
    `plugins`: plugin names the user listed, whose calls are commands of their own (their
    verb is the name; kubectl's global flags are read, any other flag is theirs).

    >>> normalize(SimpleCommand(("kubectl", "-n", "prod", "delete", "ns/prod"))).verb
    'delete'

    Never raises: an internal error becomes a problem, so the line is never allowed.
    """
    key = (cmd, plugins)
    try:
        made = _NORMALIZED.get(key)
        kept = True
    except TypeError:  # a part no key can hold (a set where a frozenset belongs)
        made, kept = None, False
    if made is not None:
        return made
    try:
        made = _normalize(cmd, plugins)
    except Exception as exc:  # the policy must see a problem, never a crash
        return KubectlCall(
            argv=cmd.argv, verb="", problems=(f"guardctl could not read this command: {exc!r}",)
        )
    if kept and len(cmd.stdin or "") <= MAX_CHARS:
        _NORMALIZED.keep(key, made)
    return made
