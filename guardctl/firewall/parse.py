"""A shell line -> every simple command it runs (`ParsedLine`), wrappers unwrapped.

`parse(line)` finds each program invocation anywhere in the line: lists, pipelines,
subshells, groups, if/for/while/until, function bodies, `$(...)`, backticks, `<(...)`,
`>(...)`, and the commands wrappers run (sudo, env, xargs, find -exec, ... see
guardctl/data/wrappers.json), including shell strings run by `bash -c`, `eval`, `watch`,
`flock -c` and shells reading a here-document, which are parsed again as lines (at most
`MAX_DEPTH` deep). It never raises: what it cannot understand becomes a problem, and a line
with problems is never allowed.

Order: a command comes before the commands of the substitutions in its words; otherwise
source order.

Aliases and functions defined in the line: `alias NAME=VALUE` with a plain value is
expanded wherever NAME later stands at command position (also after wrappers, which is
more than bash does: seeing more is the safe side); an alias whose value guardctl cannot
read is a problem when used. A call of a function defined in the line whose body uses the
function's arguments (`$@`, `$*`, `$1`, ...) is a problem, since the commands it runs
depend on the call; function bodies are commands themselves (via "function NAME").

Fast path: a line of plain commands (words and quoted strings, in pipelines joined by `;`,
`&&` and `||`) is split by regexes and bashlex (slow to import, slow to run) is not loaded;
both paths share the unwrapping code and give the same result (a property test compares
them).
"""

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from guardctl.errors import DeadlineExceeded
from guardctl.firewall import tsbash
from guardctl.firewall.bashsyntax import closing_quote, syntax_error
from guardctl.firewall.kept import MAX_CHARS, Kept
from guardctl.firewall.shellword import (
    RESERVED,
    Prepared,
    Word,
    WordError,
    closing_paren,
    decode_word,
    expands_tilde,
    find_substitutions,
    has_expansion,
    prepare,
)
from guardctl.firewall.wrappers import Invocation, Script, default_table, unwrap
from guardctl.model import ParsedLine, SimpleCommand

if TYPE_CHECKING:
    from bashlex.ast import node as Node
else:
    Node = Any

MAX_DEPTH = 8  # nested shell strings (bash -c, eval, ...) parsed inside each other
MAX_LINE = 100_000  # characters; bounds the work one line can cost (bashlex is not linear)
_MAX_UNWRAP = 64  # wrappers and aliases peeled off one command
# outside quotes, anything here (or a non-printable character) sends a line to bashlex;
# `;`, `&&`, `||` and `|` separate the commands of a list of pipelines, `<` and `>` must be
# file redirects or descriptor copies (`_FAST_TOKEN`); a `~` is read as bash reads it
# (expanded at the start of a word when unquoted: Word.tilde), literal elsewhere
_FAST_PATH_UNSAFE = re.compile(r"[$\\`(){}*?\[\]#!\n\r]")
# in double quotes, what bash still expands (and `!`, history expansion where it is on)
_FAST_DOUBLE_UNSAFE = re.compile(r"[$\\`!]")
# a variable's value (`$NS`, `${NS}`), in or out of double quotes: a word only known at run
# time, which the fast path reads as bashlex's reading does; any other `$` goes to bashlex
_FAST_VARIABLE = re.compile(r"\$(?:[A-Za-z_]\w*(?![\w{])|\{[A-Za-z_]\w*\})")
# a line as single-quoted strings, double-quoted strings (1) and the text between them (2)
_FAST_PARTS = re.compile(r"""'[^']*'|"([^"]*)"|([^'"]+)""")
# a separator (not bash's `;&` or `|&`); a descriptor copy (`2>&1`); a file redirect (`2>>`,
# `&>`, `<`) whose file is the next word; or a word: plain characters and quoted strings.
# No possessive quantifier or atomic group in these regexes (nor anywhere in guardctl): Python
# 3.10 has none, and 3.11.2's engine lets `(?:...|'[^']*+')++` take an unclosed quote. Each
# repeat here is followed by a character it cannot take, or ends the match, so a bad line
# fails after backtracking over one run at most: linear time all the same.
_FAST_TOKEN = re.compile(
    r"""[ \t]*(?:(?P<sep>\|\||&&|[|;](?!&))"""
    r"""|(?P<dup>[0-9]*[<>]&[0-9]+)(?![^ \t|;&])"""
    r"""|(?P<fd>[0-9]*)(?P<op>>>|>\||&>>|&>|>|<)"""
    r"""|(?P<word>(?:[^ \t'"|;&<>]+|'[^']*'|"[^"]*")+))"""
)
_FAST_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
# an assignment word before a command's first word: an unquoted name, `=` or `+=`, a value
_FAST_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\+?=(.*)", re.DOTALL)
_WRITE_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", ">&", "<>"})
# a word that reads the function's arguments: "$@", $*, $1, ${2}, ...
_POSITIONAL = re.compile(r"\$(\{)?[@*0-9#]")
_ERROR_TYPE = re.compile(r"type = \{([^}]*)\}")
# a whole line, nested shells included; real lines take milliseconds
PARSE_SECONDS = 3.0


def parse(line: str) -> ParsedLine:
    """Every simple command of `line`, flattened in order, and what could not be understood.

    >>> [c.argv for c in parse("sudo kubectl get pods | grep web").commands]
    [('kubectl', 'get', 'pods'), ('grep', 'web')]
    """
    return _parse(line, allow_fast=True)


def _parse(line: str, allow_fast: bool, tree_sitter: bool | None = None) -> ParsedLine:
    """`allow_fast`: the regex fast path and (unless `tree_sitter` says) tree-sitter may
    read the line; else bashlex alone, the reference the tests compare them with."""
    return _read(line, allow_fast, allow_fast if tree_sitter is None else tree_sitter)[0]


def _read(line: str, allow_fast: bool, tree_sitter: bool) -> tuple[ParsedLine, bool]:
    """The line's reading, and whether it is the line's alone (not cut short by the deadline
    or an internal error, which depend on the machine and the code, not the line)."""
    state = _State(allow_fast=allow_fast, tree_sitter=tree_sitter)
    if len(line) > MAX_LINE:
        return ParsedLine(line, (), (f"the line is longer than {MAX_LINE} characters",)), True
    whole = False
    try:
        state.parse_line(line, _Scope())
        whole = True
    except DeadlineExceeded:
        state.problems.append(f"the line took longer than {PARSE_SECONDS:g} s to parse")
    except RecursionError:
        state.problems.append("the line is nested too deeply to parse")
        whole = True
    except Exception as exc:  # noqa: BLE001 - the contract: never raise, fail closed instead
        state.problems.append(f"internal parser error ({type(exc).__name__}: {exc})")
    problems = tuple(dict.fromkeys(state.problems))
    return ParsedLine(line, tuple(state.commands), problems), whole


class Readings:
    """`parse` for a batch (see `kept`): a line's reading depends on the line alone, so a
    line read before gets that reading; not one the deadline cut short."""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: Kept[str, ParsedLine] = Kept()

    def parse(self, line: str) -> ParsedLine:
        found = self._kept.get(line)
        if found is not None:
            return found
        parsed, whole = _read(line, allow_fast=True, tree_sitter=True)
        return self._kept.keep(line, parsed) if whole and len(line) <= MAX_CHARS else parsed


class _Scope(NamedTuple):
    """What the commands of one (nested) line inherit from where the line runs."""

    depth: int = 0
    via: tuple[str, ...] = ()
    stdin_from: str = "inherit"
    stdin: str | None = None
    stdin_dynamic: bool = False
    writes: tuple[str, ...] = ()
    assignments: tuple[tuple[str, str], ...] = ()

    def nested(self, label: str) -> "_Scope":
        """For `$(...)` and `<(...)`: their output goes to the word, not to our redirects."""
        return self._replace(via=self.via + (label,), writes=())


class _Redirects(NamedTuple):
    stdin_from: str | None = None
    stdin: str | None = None
    stdin_dynamic: bool = False
    writes: tuple[str, ...] = ()
    # unquoted here-document bodies, whose `$(...)` run after the command is recorded
    bodies: tuple[str, ...] = ()


class _State:
    """Shared by every nesting level of one parse: results, aliases, functions."""

    __slots__ = ("allow_fast", "tree_sitter", "commands", "problems", "aliases", "arg_functions")

    def __init__(self, allow_fast: bool, tree_sitter: bool) -> None:
        self.allow_fast = allow_fast
        self.tree_sitter = tree_sitter
        self.commands: list[SimpleCommand] = []
        self.problems: list[str] = []
        # alias name -> its words, or None when the value cannot be read statically
        self.aliases: dict[str, tuple[Word, ...] | None] = {}
        # functions defined in the line whose bodies use their arguments
        self.arg_functions: set[str] = set()

    # ----------------------------------------------------------------------- lines

    def parse_line(self, line: str, scope: _Scope) -> None:
        if "\0" in line:
            # bash drops NUL bytes, so `kube\0ctl` would run kubectl
            self.problems.append("the line contains a NUL character")
            return
        # a line the fast path reads is one bash parses (a property test checks it against
        # the grammar check, which costs more than the fast path's split)
        commands = _fast_commands(line) if self.allow_fast else None
        if commands is not None:
            for command in commands:
                inv = _invocation(tuple(command.words), command.io, scope, command.piped,
                                  tuple(command.assignments))
                if command.words:
                    self.dispatch(inv, scope)
                else:
                    self.emit(inv)  # `> FILE` alone, as bashlex's reading records it
            return
        refused = syntax_error(line)
        if refused is not None:
            # bash runs the commands before a syntax error: they are still read and decided,
            # but the line is never allowed
            self.problems.append(f"bash would refuse the line: {refused}")
        prepared = prepare(line)
        if prepared.empty:
            return
        if refused is None and self.tree_sitter and self._parse_with_tree_sitter(
            line, prepared, scope
        ):
            return
        self._parse_with_bashlex(line, prepared, scope)

    def _parse_with_tree_sitter(self, line: str, prepared: Prepared, scope: _Scope) -> bool:
        """Walk tree-sitter-bash's reading of the line, when it is one bashlex's equals (see
        `tsbash`); False when bashlex must read it."""
        if prepared.text != line or prepared.quoted_heredocs or not tsbash.available():
            return False  # what bashlex is helped with is bashlex's to read
        # bashlex reads what tree-sitter declines: a line with syntax loaded it before
        # tree-sitter was here, and so a warmed process (the fork server, which decides such
        # a line before it forks its workers) keeps it ready for them
        import bashlex  # noqa: F401
        trees = tsbash.read(line)
        if trees is None:
            return False
        walker = _Walker(self, line, prepared)
        for tree in trees:
            walker.walk(tree, scope, piped=False)
        return True

    def _parse_with_bashlex(self, line: str, prepared: Prepared, scope: _Scope) -> None:
        import bashlex  # lazily: importing it costs ~100 ms, the fast path does without

        from guardctl.signals import deadline

        # bashlex has been seen to loop, growing without bound, on rare garbage lines; the
        # first (outermost) call bounds the whole line, nested shells included
        with deadline(PARSE_SECONDS):
            self._walk(bashlex, prepared, line, scope)

    def _walk(self, bashlex: Any, prepared: Any, line: str, scope: _Scope) -> None:
        try:
            trees = bashlex.parse(prepared.text)
        except NotImplementedError as exc:
            match = _ERROR_TYPE.search(str(exc))
            self.problems.append(f"unsupported shell syntax: {match[1] if match else exc}")
            return
        except (bashlex.errors.ParsingError, bashlex.tokenizer.MatchedPairError) as exc:
            self.problems.append(f"bash could not parse the line: {exc}")
            return
        walker = _Walker(self, line, prepared)
        for tree in trees:
            walker.walk(tree, scope, piped=False)

    def reparse(self, script: Script, inv: Invocation, scope: _Scope) -> None:
        """Parse a shell string a wrapper runs, as a line of its own."""
        if scope.depth >= MAX_DEPTH:
            self.problems.append(f"shell strings nested more than {MAX_DEPTH} deep")
            return
        inner = _Scope(
            depth=scope.depth + 1, via=inv.via + (script.label,), assignments=inv.assignments
        )
        if script.inherits_io:
            inner = inner._replace(
                stdin_from=inv.stdin_from,
                stdin=inv.stdin,
                stdin_dynamic=inv.stdin_dynamic,
                writes=inv.writes,
            )
        before = len(self.problems)
        self.parse_line(script.text, inner)
        # say where a nested problem comes from
        self.problems[before:] = [f"in {script.label}: {p}" for p in self.problems[before:]]

    # ----------------------------------------------------------------------- commands

    def dispatch(self, inv: Invocation, scope: _Scope, budget: int = _MAX_UNWRAP) -> None:
        """Peel wrappers and aliases off `inv` and record what runs."""
        seen_aliases: set[str] = set()
        while budget > 0:
            budget -= 1
            inv = self._expand_alias(inv, seen_aliases)
            if not inv.words:
                return
            program = inv.words[0]
            if program.dynamic or program.glob:
                self.emit(inv)
                return
            name = program.text.rsplit("/", 1)[-1]
            self._note_definitions(name, inv)
            step = unwrap(inv, default_table())
            if step is None:
                self.emit(inv)
                return
            self.problems.extend(step.problems)
            if step.emit_self:
                self.emit(inv)
            for script in step.scripts:
                self.reparse(script, inv, scope)
            if len(step.inner) == 1 and not step.emit_self:
                inv = step.inner[0]
                continue
            for inner in step.inner:
                self.dispatch(inner, scope, budget)
            return
        self.problems.append("too many wrappers or aliases around one command")

    def _expand_alias(self, inv: Invocation, seen: set[str]) -> Invocation:
        """Expand the program word while it names an alias not yet expanded (as bash does)."""
        while inv.words and not inv.words[0].dynamic:
            name = inv.words[0].text
            if name not in self.aliases or name in seen:
                return inv
            seen.add(name)
            value = self.aliases[name]
            if value is None:
                self.problems.append(f"alias {name} has a value guardctl cannot read")
                return inv
            inv = inv._replace(words=value + inv.words[1:], via=inv.via + (f"alias {name}",))
        return inv

    def _note_definitions(self, name: str, inv: Invocation) -> None:
        if name == "alias":
            for word in inv.words[1:]:
                alias, eq, value = word.text.partition("=")
                if eq:
                    self.aliases[alias] = _alias_words(value, word.dynamic)
        elif name in self.arg_functions:
            self.problems.append(
                f"call of function {name}, defined in the line, which runs its arguments"
            )

    def emit(self, inv: Invocation) -> None:
        words = inv.words
        dynamic = {i for i, w in enumerate(words) if w.dynamic}
        if words and words[0].glob:
            dynamic.add(0)
        self.commands.append(
            SimpleCommand(
                argv=tuple(w.text for w in words),
                dynamic=frozenset(dynamic),
                tilde=frozenset(i for i, w in enumerate(words) if w.tilde),
                open_tail=inv.open_tail,
                assignments=inv.assignments,
                stdin_from=inv.stdin_from,
                stdin=inv.stdin,
                stdin_dynamic=inv.stdin_dynamic,
                writes=inv.writes,
                via=inv.via,
            )
        )


def _alias_words(value: str, dynamic: bool) -> tuple[Word, ...] | None:
    words = None if dynamic else _simple_words(value)
    return tuple(Word(w) for w in words) if words else None


def _simple_words(line: str) -> list[str] | None:
    """The words of a line that is one plain command with no redirects (see
    `_fast_commands`), else None."""
    found = _fast_commands(line)
    if found is None or len(found) > 1:
        return None
    if found and (found[0].redirected or found[0].assignments):
        return None
    return [w.text for w in found[0].words] if found else []


class _FastCommand(NamedTuple):
    """One command of a fast-path line."""

    words: list[Word]
    piped: bool  # a pipe feeds it
    writes: list[str]  # files its `>`, `>>`, `>|`, `&>`, `&>>` open for writing
    stdin: str | None  # the file its `<` reads
    assignments: list[tuple[str, str]]  # NAME=value words before its first word

    @property
    def redirected(self) -> bool:
        return bool(self.writes) or self.stdin is not None

    @property
    def io(self) -> "_Redirects":
        if self.stdin is None:
            return _Redirects(writes=tuple(self.writes))
        return _Redirects(stdin_from="file", stdin=self.stdin, writes=tuple(self.writes))


def _fast_commands(line: str) -> list[_FastCommand] | None:
    """The commands of a line of plain commands, in pipelines joined by `;`, `&&` or `||`
    (`a | b && c`), with file redirects (`> f`, `2>> f`, `&> f`, `< f`, `2>&1`); None for a
    line with other syntax.

    Split as bash would, by regexes instead of a loop per character. Quoted text may hold
    anything bash reads literally there: any character in single quotes, all but `$`, `` ` ``,
    `\\` and `!` in double quotes.
    """
    if not _fast_safe(line):
        return None
    found: list[_FastCommand] = []
    current = _FastCommand([], False, [], None, [])
    target: str | None = None  # the redirect waiting for its file, and its fd
    assignable = True  # nothing but assignments yet in this command (as bashlex reads them)
    pos, end = 0, len(line.rstrip(" \t"))
    while pos < end:
        token = _FAST_TOKEN.match(line, pos)
        if token is None:
            return None  # a lone `&`, `|&`, `<<`, `<&-`, `>&word`
        pos = token.end()
        if token["word"] is not None:
            raw = token["word"]
            assignment = _FAST_ASSIGNMENT.match(raw) if assignable else None
            if assignment is not None:
                # the value as bashlex's reading gives it: its word, or "" when empty
                value = _fast_word(assignment[2]).text if assignment[2] else ""
                current.assignments.append((assignment[1], value))
                continue
            assignable = False
            word = _fast_word(raw)
            if target is None:
                current.words.append(word)
                continue
            text = word.text
            if target == "<":
                current = current._replace(stdin=text)
            elif target != "<N":  # `3< f` opens f on another descriptor: not stdin
                current.writes.append(text)
            target = None
        elif target is not None:
            return None  # a redirect without its file
        elif token["op"] is not None:
            assignable = False
            fd = token["fd"]
            target = token["op"] if token["op"] != "<" or fd in ("", "0") else "<N"
        elif token["dup"] is None:  # a separator (a descriptor copy opens nothing)
            if not _plain_command(current):
                return None
            found.append(current)
            current = _FastCommand([], token["sep"] == "|", [], None, [])
            assignable = True
        else:
            assignable = False
    if target is not None or (found and not _plain_command(current)):
        return None  # ends with a redirect or a separator
    if not current.words and not current.redirected and not current.assignments:
        return []  # a blank line
    if not _plain_command(current):
        return None
    return [*found, current]


def _fast_word(raw: str) -> Word:
    """A fast-path word: quotes removed, or, with a variable in it, read as bashlex's
    reading reads it (`decode_word`: its source text, known only at run time)."""
    if "$" in raw:
        return decode_word(raw)
    if "'" not in raw and '"' not in raw:  # most words: nothing to unquote
        return Word(raw, tilde=raw.startswith("~") and expands_tilde(raw))
    return Word(_FAST_QUOTED.sub(_unquoted, raw), tilde=expands_tilde(raw))


def _plain_command(command: _FastCommand) -> bool:
    """Assignments (`A=1`), then words starting with neither a keyword nor a word with a
    `=` (bashlex reads those), or redirects alone (`> f`)."""
    words = command.words
    if not words:
        return command.redirected or bool(command.assignments)
    return words[0].text not in RESERVED and "=" not in words[0].text


def _fast_safe(line: str) -> bool:
    """Printable, quotes closed, and no character that means more than itself to bash
    where it stands (see `_fast_commands`)."""
    if not line.replace("\t", " ").isprintable():
        return False
    pos = 0
    for part in _FAST_PARTS.finditer(line):
        if part.start() != pos:
            return False  # an unclosed quote
        pos = part.end()
        if part[1] is not None and _FAST_DOUBLE_UNSAFE.search(_FAST_VARIABLE.sub("", part[1])):
            return False
        if part[2] is not None and _FAST_PATH_UNSAFE.search(_FAST_VARIABLE.sub("", part[2])):
            return False
    return pos == len(line)


def _unquoted(quoted: re.Match[str]) -> str:
    return quoted[1] if quoted[1] is not None else quoted[2]


def _invocation(
    words: tuple[Word, ...],
    io: _Redirects,
    scope: _Scope,
    piped: bool = False,
    assignments: tuple[tuple[str, str], ...] = (),
) -> Invocation:
    """A command's own words and redirects, on top of what its scope gives."""
    if io.stdin_from is not None:
        stdin_from, stdin, dyn = io.stdin_from, io.stdin, io.stdin_dynamic
    elif piped:
        stdin_from, stdin, dyn = "pipe", None, False
    else:
        stdin_from, stdin, dyn = scope.stdin_from, scope.stdin, scope.stdin_dynamic
    return Invocation(
        words=words,
        assignments=scope.assignments + assignments,
        stdin_from=stdin_from,
        stdin=stdin,
        stdin_dynamic=dyn,
        writes=scope.writes + io.writes,
        via=scope.via,
    )


class _Walker:
    """Walks bashlex trees of one line; reads each word's source text from the original line."""

    def __init__(self, state: _State, line: str, prepared: Prepared) -> None:
        self.state = state
        self.original = line
        self.line = prepared.source
        self.quoted_heredocs = prepared.quoted_heredocs
        self.synthetic = prepared.synthetic

    def walk(self, node: Node, scope: _Scope, piped: bool) -> None:
        kind = node.kind
        if kind == "command":
            self._command(node, scope, piped)
        elif kind == "pipeline":
            self._pipeline(node, scope, piped)
        elif kind == "compound":
            io = self._redirects(getattr(node, "redirects", []))
            inner = scope._replace(writes=scope.writes + io.writes)
            if io.stdin_from is not None:
                inner = inner._replace(
                    stdin_from=io.stdin_from, stdin=io.stdin, stdin_dynamic=io.stdin_dynamic
                )
            for part in node.list:
                self.walk(part, inner, piped)
            self._after_command(getattr(node, "redirects", []), io, scope)
        elif kind == "function":
            self._function(node, scope)
        elif kind in ("list", "if", "for", "while", "until"):
            for part in node.parts:
                self.walk(part, scope, piped)
        elif kind == "word":  # the words of a for loop
            self._substitutions(node, scope)
        elif kind not in ("reservedword", "operator", "pipe"):
            self.state.problems.append(f"unsupported shell syntax: {kind}")

    def _pipeline(self, node: Node, scope: _Scope, piped: bool) -> None:
        first = True
        for part in node.parts:
            if part.kind in ("pipe", "reservedword"):
                continue
            self.walk(part, scope, piped if first else True)
            first = False

    def _function(self, node: Node, scope: _Scope) -> None:
        name = next(p.word for p in node.parts if p.kind == "word")
        before = len(self.state.commands)
        body = scope._replace(via=scope.via + (f"function {name}",))
        for part in node.parts:
            if part.kind == "compound":
                self.walk(part, body, piped=False)
        new = self.state.commands[before:]
        if any(
            _POSITIONAL.search(arg)
            for cmd in new
            for i, arg in enumerate(cmd.argv)
            if i in cmd.dynamic
        ):
            self.state.arg_functions.add(name)

    def _command(self, node: Node, scope: _Scope, piped: bool) -> None:
        words: list[Word] = []
        assignments: list[tuple[str, str]] = []
        for part in node.parts:
            if part.kind == "assignment" and not words:
                name = self._source(part).partition("=")[0]
                start = part.pos[0] + len(name) + 1
                assignments.append((name.rstrip("+"), self._word(start, part.pos[1]).text))
            elif part.kind in ("word", "assignment"):
                words.append(self._word(*part.pos))
        io = self._redirects([p for p in node.parts if p.kind == "redirect"])
        inv = _invocation(tuple(words), io, scope, piped, tuple(assignments))
        if node.pos[0] in self.synthetic:
            pass
        elif words:
            self.state.dispatch(inv, scope)
        elif assignments:
            self.state.emit(inv)  # an exported KUBECONFIG or GUARDCTL_* outlives this line
        elif io.writes or io.stdin_from == "file":
            self.state.emit(inv)  # `> FILE` alone creates or empties FILE: rules see it
        self._after_command(node.parts, io, scope)

    def _after_command(self, parts: Sequence[Node], io: _Redirects, scope: _Scope) -> None:
        """The commands of substitutions in words, redirects and here-documents."""
        for part in parts:
            self._substitutions(part, scope)
        for body in io.bodies:
            self._substitutions_in(body, scope, heredoc=True)

    def _redirects(self, redirects: Sequence[Node]) -> _Redirects:
        io = _Redirects()
        for node in redirects:
            kind, target = node.type, node.output
            if kind in ("<<", "<<-"):
                io = self._heredoc(node, io)
            elif isinstance(target, int):
                continue  # `2>&1`, `<&3`: duplicating a descriptor opens nothing
            elif kind == "<<<":
                word = self._word(*target.pos)
                io = io._replace(
                    stdin_from="herestring", stdin=word.text, stdin_dynamic=word.dynamic
                )
            elif kind in _WRITE_REDIRECTS:
                io = io._replace(writes=io.writes + (self._word(*target.pos).text,))
            elif kind == "<" and getattr(node, "input", None) in (None, 0):
                io = io._replace(stdin_from="file", stdin=self._word(*target.pos).text)
        return io

    def _heredoc(self, node: Node, io: _Redirects) -> _Redirects:
        value: str = node.heredoc.value
        # bashlex includes the delimiter line; the command reads the lines before it
        body = value[: value.rfind("\n") + 1]
        if node.pos[0] in self.quoted_heredocs:
            return io._replace(stdin_from="heredoc", stdin=body, stdin_dynamic=False)
        return io._replace(
            stdin_from="heredoc",
            stdin=body,
            bodies=io.bodies + (body,),
            stdin_dynamic=has_expansion(body),
        )

    # ----------------------------------------------------------------------- words

    def _source(self, node: Node) -> str:
        start, end = node.pos
        return self.line[start:end]

    def _word(self, start: int, end: int) -> Word:
        """The word at source[start:end]; a dynamic one keeps the text as the user wrote it."""
        try:
            word = decode_word(self.line[start:end])
        except WordError as exc:
            self.state.problems.append(f"cannot read the word {self.original[start:end]!r}: {exc}")
            return Word(self.original[start:end], dynamic=True)
        return Word(self.original[start:end], dynamic=True) if word.dynamic else word

    def _substitutions(self, node: Node, scope: _Scope) -> None:
        """Walk the commands of `$(...)`, backticks and `<(...)` anywhere under `node`."""
        for sub in _subnodes(node):
            if sub.kind == "commandsubstitution":
                self._substitution(sub, scope.nested("$(...)"))
            elif sub.kind == "processsubstitution":
                self._substitution(sub, scope.nested(self._source(sub)[:1] + "(...)"))
            elif sub.kind == "parameter":
                # bashlex does not look inside ${x:-$(cmd)} (nor our $((...)) placeholder)
                self._substitutions_in(self._source(sub), scope, heredoc=False)

    def _substitution(self, sub: Node, scope: _Scope) -> None:
        """Walk what `$(...)`, a backtick string or `<(...)` runs. bashlex reads a
        substitution's first line only (`$(true<newline>kubectl delete ns prod)`): text
        after its commands other than separators is a problem."""
        self.walk(sub.command, scope, piped=False)
        start = sub.pos[0]  # bashlex's end is where its reading stopped
        if self.line.startswith("`", start):
            end = closing_quote(self.line, start + 1, "`")
        else:
            end = closing_paren(self.line, start + 2)
        if self.line[sub.command.pos[1] : max(end, 0)].strip(" \t\n;&"):
            self.state.problems.append(
                f"cannot read all of the substitution {self.original[start : end + 1]!r}"
            )

    def _substitutions_in(self, text: str, scope: _Scope, heredoc: bool) -> None:
        found = find_substitutions(text, heredoc=heredoc)
        if found is None:
            self.state.problems.append("a command substitution is not closed")
            return
        for inner in found:
            self.state.reparse(
                Script(inner, "$(...)", inherits_io=False),
                Invocation((), scope.assignments, via=scope.via),
                scope,
            )


def _subnodes(node: Node) -> Iterator[Node]:
    """Substitution and parameter nodes under `node`, outermost only, in source order."""
    for attr in ("parts", "output"):
        for child in _as_list(getattr(node, attr, None)):
            if child.kind in ("commandsubstitution", "processsubstitution", "parameter"):
                yield child
            else:
                yield from _subnodes(child)


def _as_list(value: object) -> list[Node]:
    if isinstance(value, list):
        return value
    return [value] if hasattr(value, "kind") else []
