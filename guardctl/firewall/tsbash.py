"""A second, faster reader of bash syntax: tree-sitter-bash's tree as the nodes `parse`'s
walker reads from bashlex, for lines made only of syntax both read alike.

bashlex stays the reference. It costs about half a millisecond a line (an LR parser in pure
Python); tree-sitter-bash, a C parser, about 30 µs. `read(line)` gives the walker's nodes
only for a line it is sure of: ASCII, no parse error anywhere (tree-sitter reads any text
and marks what it could not parse), every node of a kind listed here, and nothing that
`shellword.prepare` would rewrite for bashlex (here-documents, `case`, `[[ ]]`, `(( ))`,
`$(( ))`, `time`): for anything else it says None and bashlex reads the line. A property
test (tests/test_tsbash.py) checks that both readings of a line are equal.

Optional: where the `tree_sitter` and `tree_sitter_bash` packages have no wheels (and so are
not installed), every line that the regex fast path cannot split goes to bashlex.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from guardctl.firewall.shellword import RESERVED, is_assignment

if TYPE_CHECKING:
    from tree_sitter import Language, Parser
    from tree_sitter import Node as TSNode
else:
    Language = Parser = TSNode = Any


class Node:
    """A node as the walker reads bashlex's: `kind`, `pos`, and what that kind carries."""

    __slots__ = ("kind", "pos", "parts", "list", "redirects", "command", "type", "output", "input")

    def __init__(self, kind: str, pos: tuple[int, int], parts: list[Node] | None = None) -> None:
        self.kind = kind
        self.pos = pos
        self.parts: list[Node] = [] if parts is None else parts
        self.list: list[Node] = []  # a compound's commands
        self.redirects: list[Node] = []  # a compound's redirects
        self.command: Node | None = None  # what a substitution runs
        self.type = ""  # a redirect's operator
        self.output: Node | int | None = None  # its file's word, or the descriptor copied
        self.input: int | None = None  # the descriptor it opens, when written

    def _as_word(self) -> Node:
        """An assignment after the command's first word: a word to bashlex."""
        self.kind = "word"
        return self


class _Unsure(Exception):
    """Something bashlex may read otherwise: bashlex reads the line."""


# redirect operators as bashlex names them (a descriptor copy `N>&M` and `N<&M` included)
_REDIRECTS = frozenset({">", ">>", "<", "&>", "&>>", ">|", ">&", "<&"})
# argument nodes whose text holds no command, and those to look into for substitutions
_LEAVES = frozenset({"raw_string", "string_content"})
_CONTAINERS = frozenset({"string", "concatenation"})
_STATEMENT_SEPARATORS = frozenset({";", "&", "\n", "&&", "||", "|", "(", ")", "{", "}"})


# what the two read their own ways: backticks (bashlex reads `a``b` as one substitution),
# backslashes (`\` and a newline), comments (bashlex cannot parse `a & # b`), a `$` that
# starts no expansion (`$` and a newline), a digit before a quote and `<`, `>` or `$` in
# quotes (bashlex cannot parse `0'<('`; test_parse_fuzz knows these misreads too); and
# tree-sitter counts bytes, which are an ASCII line's characters
_UNLIKE = re.compile(
    r"[`\\#]|\$(?![A-Za-z_0-9{(@*#?$!'\"-])|[0-9]['\"]|'[^']*[<>$][^']*'|\"[^\"]*[<>][(]"
)


# in a substitution, what bashlex cannot parse (`$(a && b)`, `$(a;)`) or reads only the
# first line of (parse makes that a problem)
_UNREAD_INSIDE = re.compile(r"(?<![<>])&|\|\||;[ \t]*\)$|[\n#]")


# the characters of an unquoted word tree-sitter reads: bashlex reads glob and brace
# characters its own way (`?'<('` and `*{` are errors to it, and extended globs), blanks
# cannot be in one (tree-sitter-bash reads `<{ {` as one word), and so on
_PLAIN = re.compile(r"[A-Za-z0-9_./:,@%+=~^-]+")


@cache
def _language() -> Language | None:
    try:
        import tree_sitter_bash
        from tree_sitter import Language
    except ImportError:
        return None
    return Language(tree_sitter_bash.language())


# each thread's parser: a tree-sitter parser is not for two threads at once
_LOCAL = threading.local()


def _parser() -> Parser | None:
    language = _language()
    if language is None:
        return None
    parser: Parser | None = getattr(_LOCAL, "parser", None)
    if parser is None:
        from tree_sitter import Parser

        parser = _LOCAL.parser = Parser(language)
    return parser


def available() -> bool:
    """tree-sitter-bash is installed."""
    return _language() is not None


def read(line: str) -> list[Node] | None:
    """The walker's nodes for `line`, or None when bashlex must read it (see the module's
    docstring). `line` is one shellword.prepare leaves as it is."""
    parser = _parser()
    if parser is None or not line.isascii() or _UNLIKE.search(line):
        return None
    root = parser.parse(line.encode()).root_node
    if root.has_error:
        return None
    try:
        return list(_statements(root.children))
    except _Unsure:
        return None


def _statements(children: list[TSNode]) -> Iterator[Node]:
    """The statements among a node's children, separators and comments skipped."""
    for child in children:
        if child.is_named and child.type != "comment":
            yield _statement(child)
        elif child.type not in _STATEMENT_SEPARATORS and child.type != "comment":
            raise _Unsure(child.type)


def _statement(node: TSNode) -> Node:
    kind = node.type
    pos = (node.start_byte, node.end_byte)
    if kind == "command":
        return Node("command", pos, _apart(_command_parts(node)))
    if kind == "redirected_statement":
        return _redirected(node, pos)
    if kind in ("variable_assignment", "variable_assignments"):
        return Node("command", pos, list(_assignments(node)))
    if kind == "declaration_command":  # `export A=1 B`: bashlex reads words
        return Node("command", pos, _apart(list(_declaration_words(node))))
    if kind in ("pipeline", "negated_command"):
        # tree-sitter-bash reads `a | B=1 && c` as `a | (B=1 && c)`: a list is never part
        # of a pipeline (nor the pipeline `!` negates) to bash
        if any(c.type in ("|&", "list") for c in node.children):
            raise _Unsure("pipeline")
        if kind == "negated_command" and node.children[0].end_byte == node.children[1].start_byte:
            raise _Unsure("!")  # `!{` is one word to bash
        # bashlex: `! a` is a pipeline whose first part is the reserved word `!`
        children = node.children if kind == "pipeline" else node.children[1:]
        return Node("pipeline", pos, list(_statements(children)))
    if kind == "list":
        return Node("list", pos, list(_statements(node.children)))
    if kind in ("subshell", "compound_statement"):
        opening, first = node.children[:2]
        if first.type in ("}", ")") or (kind == "compound_statement" and opening.end_byte
                                        == first.start_byte):
            raise _Unsure("group")  # `{}` and `{a;}` are words to bash
        compound = Node("compound", pos)
        compound.list = list(_statements(node.children))
        return compound
    if kind in ("if_statement", "while_statement"):
        return Node(kind.split("_")[0], pos, list(_clauses(node)))
    if kind == "for_statement":
        return Node("for", pos, list(_for_parts(node)))
    raise _Unsure(kind)


def _declaration_words(node: TSNode) -> Iterator[Node]:
    for child in node.children:
        pos = (child.start_byte, child.end_byte)
        if child.type == "variable_assignment":
            yield next(_assignments(child))._as_word()
        elif child.type in _DECLARATIONS or child.type == "variable_name":
            if _PLAIN.fullmatch(_text(child)) is None:
                raise _Unsure(child.type)
            yield Node("word", pos)
        else:
            yield _word(child)


_DECLARATIONS = frozenset({"export", "declare", "local", "readonly", "typeset"})


def _clauses(node: TSNode) -> Iterator[Node]:
    """The commands of an if or while statement in source order, keywords skipped."""
    for child in node.children:
        if child.type in ("elif_clause", "else_clause", "do_group"):
            yield from _clauses(child)
        elif child.is_named and child.type != "comment":
            yield _statement(child)
        elif child.type not in _KEYWORDS and child.type not in _STATEMENT_SEPARATORS:
            raise _Unsure(child.type)


_KEYWORDS = frozenset(
    {"if", "then", "elif", "else", "fi", "while", "until", "do", "done", "comment"}
)


def _for_parts(node: TSNode) -> Iterator[Node]:
    """`for NAME in WORDS; do ...; done`: the words (whose substitutions run), the body."""
    for i, child in enumerate(node.children):
        field = node.field_name_for_child(i)
        if field == "value":
            yield _word(child)
        elif child.type == "do_group":
            yield from _clauses(child)
        elif child.is_named and field != "variable":
            raise _Unsure(child.type)
        elif not child.is_named and child.type not in ("for", "in", ";", "\n"):
            raise _Unsure(child.type)


def _redirected(node: TSNode, pos: tuple[int, int]) -> Node:
    """A statement with redirects: a command's are its parts (bashlex's reading), a
    compound's its own."""
    body = node.child_by_field_name("body")
    redirects = [_redirect(c) for c in node.children_by_field_name("redirect")]
    if len(redirects) + (body is not None) != node.named_child_count:
        raise _Unsure("redirected statement")
    if body is None:
        return Node("command", pos, _apart(redirects))
    if body.type == "command":
        return Node("command", pos, _apart(_command_parts(body) + redirects))
    if body.type not in ("subshell", "compound_statement", "if_statement", "while_statement",
                         "for_statement"):
        raise _Unsure(body.type)
    compound = Node("compound", pos)
    compound.list = [_statement(body)]
    compound.redirects = redirects
    return compound


def _command_parts(node: TSNode) -> list[Node]:
    """A simple command's assignments, words and redirects."""
    parts: list[Node] = []
    for child in node.children:
        kind = child.type
        if kind == "variable_assignment":
            if any(p.kind != "assignment" for p in parts):
                raise _Unsure("an assignment after a redirect")  # a word to bashlex
            parts.extend(_assignments(child))
        elif kind == "command_name":
            if _text(child) in RESERVED:
                raise _Unsure("a reserved word")  # `coproc`: bashlex cannot read it
            parts.append(_word(_only_child(child)))
        elif kind in ("file_redirect", "herestring_redirect"):
            parts.append(_redirect(child))
        elif child.is_named:
            parts.append(_word(child))
        else:
            raise _Unsure(kind)
    return parts


def _apart(parts: list[Node]) -> list[Node]:
    """`parts` in source order, when blanks separate them: two parts with nothing between
    would be one word to bash (`$"x"` is read as `$` and `"x"`, `a2>f` as `a` and `2>f`)."""
    parts = sorted(parts, key=lambda p: p.pos)
    for before, after in zip(parts, parts[1:], strict=False):
        if before.pos[1] >= after.pos[0]:
            raise _Unsure("adjacent parts")
    return parts


def _text(node: TSNode) -> str:
    text = node.text
    if text is None:
        raise _Unsure(node.type)
    return text.decode()


def _only_child(node: TSNode) -> TSNode:
    if node.child_count != 1:
        raise _Unsure(node.type)
    return node.children[0]


def _assignments(node: TSNode) -> Iterator[Node]:
    nodes = node.named_children if node.type == "variable_assignments" else [node]
    for assignment in nodes:
        if assignment.type != "variable_assignment" or not is_assignment(
            _text(assignment)
        ):
            raise _Unsure(assignment.type)  # `1=` is a word to bash
        value = assignment.child_by_field_name("value")
        if value is not None and value.type == "array":
            raise _Unsure("array")
        pos = (assignment.start_byte, assignment.end_byte)
        yield Node("assignment", pos, [] if value is None else _substitutions(value))


def _word(node: TSNode) -> Node:
    return Node("word", (node.start_byte, node.end_byte), _substitutions(node))


def _substitutions(node: TSNode) -> list[Node]:
    """The substitutions in a word, outermost first, as bashlex's word parts give them:
    `$(...)` and backticks, `<(...)` and `>(...)`, and parameters (`${x:-$(cmd)}` is
    looked into by the walker, from its text)."""
    kind = node.type
    pos = (node.start_byte, node.end_byte)
    if kind in ("word", "number"):
        if _PLAIN.fullmatch(_text(node)) is None:
            raise _Unsure("a word of other characters")
        return []
    if kind in _LEAVES:
        return []
    if kind in ("simple_expansion", "expansion"):
        if "$" in _text(node)[1:]:
            # bashlex ends `${x:-$(a ${y})}` at the first `}`
            raise _Unsure("an expansion in a parameter")
        return [Node("parameter", pos)]
    if kind in ("command_substitution", "process_substitution"):
        if _UNREAD_INSIDE.search(_text(node)):
            raise _Unsure("what bashlex reads its own way in a substitution")
        inner = list(_statements(node.children[1:-1]))
        found = Node(kind.replace("_", ""), pos)
        found.command = inner[0] if len(inner) == 1 else Node("list", pos, inner)
        return [found]
    if kind in _CONTAINERS:
        return [s for child in node.children if child.is_named for s in _substitutions(child)]
    raise _Unsure(kind)


def _redirect(node: TSNode) -> Node:
    """A file redirect or here-string, as bashlex's RedirectNode."""
    redirect = Node("redirect", (node.start_byte, node.end_byte))
    operators = [c.type for c in node.children if not c.is_named]
    descriptor = node.child_by_field_name("descriptor")
    destinations = node.children_by_field_name("destination")
    if node.type == "herestring_redirect":
        destinations = [c for c in node.children if c.is_named]
    if len(operators) != 1 or len(destinations) != 1:
        raise _Unsure("redirect")
    kind, target = operators[0], destinations[0]
    if node.type == "herestring_redirect":
        if kind != "<<<" or descriptor is not None:
            raise _Unsure("here-string")
    elif kind not in _REDIRECTS:
        raise _Unsure(kind)
    redirect.type = kind
    if descriptor is not None:
        redirect.input = int(_text(descriptor))
    if kind in (">&", "<&"):
        # a descriptor copy: bashlex reads `N>&M` with a number, anything else differently
        text = _text(target)
        if not text.isdigit() or target.type != "number":
            raise _Unsure("descriptor copy")
        redirect.output = int(text)
    else:
        redirect.output = _word(target)
    return redirect
