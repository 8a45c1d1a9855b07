"""Whether bash would parse a line: a recognizer for bash's grammar (issue 13).

bash reads a line command by command and runs each before it reads the next, so the
commands before a syntax error run; "allowed" must mean "understood". bashlex, which
`parse` reads lines with, accepts some lines bash refuses (`[[ -f x ]] echo y`, a lone `|`,
`fi` without `if`). `syntax_error` refuses every line bash refuses and, to stay simple, a
few that bash takes (extglob patterns, a `|` in a `[[ =~ ]]` regex, an array assignment
as an argument other than of declare-like builtins): those are not allowed but asked about,
which is the safe side. It reads `$(...)`, `<(...)` and bash 5.3's `${ ...; }` as lines of
their own, as bash does; backtick bodies are only read when they run, by bash as by us.
Pure: stdlib only, linear in the line's length.
"""

import re
from typing import NamedTuple

_METACHARS = " \t\n;&|()<>"
# longest first
_OPERATORS = (
    ";;&", "&>>", "<<<", "<<-", ";;", ";&", "&&", "||", "|&", "&>", "<<", "<>", "<&", ">&",
    ">>", ">|", "<", ">", ";", "&", "|", "(", ")", "\n",
)  # fmt: skip
_REDIRECTS = frozenset({"<", ">", ">>", ">|", "<>", "&>", "&>>", "<&", ">&", "<<<", "<<", "<<-"})
# characters of a word that start nothing (quotes, expansions, `=(`, `[`, `<(` do)
_ORDINARY = re.compile(r"[^ \t\n;&|()<>\\'\"$`=]+")
_BLANKS = re.compile(r"(?:[ \t]|\\\n)+")
_OPERATOR = re.compile("|".join(re.escape(op) for op in _OPERATORS))
_IO_NUMBER = re.compile(r"[0-9]+|\{[A-Za-z_][A-Za-z0-9_]*\}")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\+?=")
_SUBSCRIPT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\[")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLOSERS = frozenset({"then", "elif", "else", "fi", "do", "done", "esac", "}", "in", "]]"})
_DECLARES = frozenset({"declare", "typeset", "local", "export", "readonly"})
_CASE_ENDS = (";;", ";&", ";;&")
_UNARY_TESTS = frozenset(f"-{c}" for c in "abcdefghkprstuwxGLNOSovRzn")
_BINARY_TESTS = frozenset("== = != =~ -eq -ne -lt -le -gt -ge -nt -ot -ef".split())
MAX_NESTING = 64
# reserved words that open a compound command -> the _Parser method that reads it
_COMPOUND = {
    "if": "_if", "while": "_while", "until": "_while", "for": "_for", "select": "_for",
    "case": "_case", "{": "_group", "[[": "_test", "function": "_function", "coproc": "_coproc",
}  # fmt: skip


class _Refused(Exception):
    """bash would refuse the line (or guardctl cannot confirm that it would not)."""


class _Token(NamedTuple):
    kind: str  # "word", "op" or "eof"
    text: str
    start: int
    plain: bool = False  # a word without quotes or expansions: may be a reserved word
    array: bool = False  # NAME=(...)


def syntax_error(line: str) -> str | None:
    """None when bash would parse `line`, else what it would stumble on."""
    try:
        parser = _Parser(line, 0, 0)
        parser.program()
    except _Refused as exc:
        return str(exc)
    except RecursionError:
        return "the line is nested too deeply"
    return None


def funsub_end(line: str, start: int) -> int:
    """For bash 5.3's `${ cmd; }` (and `${| cmd; }`) whose commands start at `start`: the
    index after its closing `}`, or -1 when it does not parse."""
    try:
        return _Lexer(line, 0, 0)._nested(start, "}")
    except (_Refused, RecursionError):
        return -1


def closing_quote(line: str, i: int, quote: str) -> int:
    """Index of the first `quote` from `i` that no backslash escapes, or -1."""
    while i < len(line):
        if line[i] == "\\":
            i += 2
        elif line[i] == quote:
            return i
        else:
            i += 1
    return -1


def heredoc_delimiter(raw: str) -> str:
    """The line that ends a here-document whose `<<` word is `raw`: its quotes removed."""
    return re.sub(r"""\\(.)|['"]|\$(?=['"])""", r"\1", raw)


def skip_heredoc_bodies(line: str, i: int, pending: list[tuple[str, bool]]) -> int:
    """Past the bodies of the here-documents `pending` (delimiter, whether `<<-` strips
    leading tabs), which start at `i`; the end of the line when one is not closed."""
    for delimiter, strip_tabs in pending:
        while i < len(line):
            end = line.find("\n", i)
            end = len(line) if end < 0 else end
            text = line[i:end].lstrip("\t") if strip_tabs else line[i:end]
            i = end + 1
            if text == delimiter:
                break
    return min(i, len(line))


def _near(token: _Token) -> str:
    if token.kind == "eof":
        return "unexpected end of the line"
    return f"syntax error near {token.text.strip() or 'a line break'!r}"


class _Lexer:
    """Tokens on demand from `pos`; `$(...)` and the like are read by nested parsers."""

    def __init__(self, line: str, pos: int, depth: int) -> None:
        self.line = line
        self.pos = pos
        self.depth = depth
        self.peeked: _Token | None = None
        self.heredocs: list[tuple[str, bool]] = []  # delimiters whose bodies start next line
        # where bash takes `NAME[` as the start of an array subscript: before a command's
        # program (after an operator) and in the arguments of declare-like builtins
        self.assignable = True
        self.brace_closes = False  # in `${ ...; }`: a `}` starting a word ends it there

    def peek(self) -> _Token:
        if self.peeked is None:
            self.peeked = self._next()
        return self.peeked

    def take(self) -> _Token:
        token = self.peek()
        self.peeked = None
        return token

    def _next(self) -> _Token:
        line, n = self.line, len(self.line)
        i = self.pos
        while i < n:
            if line[i] in " \t":
                i += 1
            elif line.startswith("\\\n", i) or line[i:] == "\\":
                i += 2  # a line continuation (at the very end: into the end of the line)
            elif line[i] == "#":
                end = line.find("\n", i)
                i = n if end < 0 else end
            else:
                break
        if i >= n:
            self.pos = n
            return _Token("eof", "", n)
        number = _IO_NUMBER.match(line, i)
        after = number.end() if number else i
        if number and line.startswith(("<", ">"), after) and not _is_procsub(line, after):
            op = self._operator(after)
            if op in _REDIRECTS:
                self.pos = after + len(op)
                return _Token("op", op, i)
        if line[i] in _METACHARS and not _is_procsub(line, i):
            op = self._operator(i)
            self.pos = i + len(op)
            self.assignable |= op not in _REDIRECTS
            if op == "\n" and self.heredocs:
                self.pos = self._skip_bodies(self.pos)
            return _Token("op", op, i)
        return self._word(i)

    def _operator(self, i: int) -> str:
        found = _OPERATOR.match(self.line, i)
        assert found is not None  # every metacharacter is an operator
        return found[0]

    def _word(self, start: int) -> _Token:
        line, n = self.line, len(self.line)
        if self.brace_closes and line[start] == "}":
            return self._token(start, start + 1, True, False)
        i, plain, array = start, True, False
        while i < n and (line[i] not in _METACHARS or _is_procsub(line, i)):
            run = _ORDINARY.match(line, i)
            if run:  # characters that stand for themselves: one step
                i = run.end()
                continue
            c = line[i]
            if line[i:] == "\\":
                break  # a line continuation into the end of the line
            if c in "<>":  # `<(...)`, `>(...)`
                i = self._nested(i + 2, ")")
            elif c == "=" and line.startswith("(", i + 1) and _ASSIGNMENT.fullmatch(
                line[start : i + 1]
            ):
                i = self._array(i + 2)
                array = True
            else:
                i = self._word_part(i)
            plain &= c not in "'\"\\$`<>"
        subscript = self.assignable and _SUBSCRIPT.match(line, start, i)
        if subscript and "]" not in line[subscript.end() : i]:
            # at a command's start bash reads on to the `]` of what may be an array
            # subscript, across blanks and `;`: guardctl does not follow it there
            raise _Refused(f"an array subscript is not closed in {line[start:i]!r}")
        return self._token(start, i, plain, array)

    def _token(self, start: int, end: int, plain: bool, array: bool) -> _Token:
        self.pos = end
        return _Token("word", self.line[start:end], start, plain, array)

    def _word_part(self, i: int) -> int:
        """Step over one character or quoted or nested unit of a word (outside double quotes)."""
        line = self.line
        c = line[i]
        if c == "\\":
            return i + 2
        if c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise _Refused("a single quote is not closed")
            return end + 1
        if line.startswith("$'", i):
            return self._closed(i + 2, "'", "a $'...' string")
        if c == '"':
            return self._double(i + 1)
        return self._dollar_or_backtick(i)

    def _dollar_or_backtick(self, i: int) -> int:
        line = self.line
        if line[i] == "`":
            return self._closed(i + 1, "`", "a backtick")
        if line.startswith("$$", i):  # the shell's process id: the next `$` starts nothing
            return i + 2
        if line.startswith("$((", i):
            end = self.arithmetic_end(i + 3)
            return end if end > 0 else self._nested(i + 2, ")")
        if line.startswith("$[", i):  # the old arithmetic `$[ ... ]`
            return self._matched(i + 2, "[", "]")
        if line.startswith("$(", i):
            return self._nested(i + 2, ")")
        if line.startswith("${", i):
            if line.startswith("|", i + 2) or line[i + 2 : i + 3] in (" ", "\t", "\n"):
                return self._nested(i + 3 if line[i + 2] == "|" else i + 2, "}")
            return self._braces(i + 2)
        return i + 1

    def _closed(self, i: int, quote: str, what: str) -> int:
        """The index after the `quote` that closes `what` (a backslash escapes), from `i`."""
        end = closing_quote(self.line, i, quote)
        if end < 0:
            raise _Refused(f"{what} is not closed")
        return end + 1

    def _double(self, i: int) -> int:
        line = self.line
        while i < len(line):
            c = line[i]
            if c == '"':
                return i + 1
            if c == "\\":
                i += 2
            elif c in "$`":
                i = self._dollar_or_backtick(i)
            else:
                i += 1
        raise _Refused("a double quote is not closed")


    def _braces(self, i: int) -> int:
        """`${...}` from just after `${`: the index after its `}`."""
        line = self.line
        depth = 0
        while i < len(line):
            c = line[i]
            if c == "}":
                if depth == 0:
                    return i + 1
                depth -= 1
                i += 1
            elif c == "{":
                depth += 1
                i += 1
            elif c in "\\'\"":
                i = self._word_part(i)
            elif c in "$`":
                i = self._dollar_or_backtick(i)
            elif _is_procsub(line, i):
                i = self._nested(i + 2, ")")
            else:
                i += 1
        raise _Refused("a ${...} is not closed")

    def arithmetic_end(self, i: int) -> int:
        """For `$((` or `((` just before `i`: the index after its `))`, or -1 (not arithmetic:
        a subshell in a substitution, `$( (a) )`). Quotes and substitutions are read."""
        try:
            end = self._matched(i, "(", ")")
        except _Refused:
            return -1
        return end + 1 if self.line.startswith(")", end) else -1

    def _matched(self, i: int, opener: str, closer: str) -> int:
        """The index after the `closer` that matches an `opener` just before `i`."""
        line = self.line
        depth = 0
        while i < len(line):
            c = line[i]
            if c == closer:
                if depth == 0:
                    return i + 1
                depth -= 1
                i += 1
            elif c == opener:
                depth += 1
                i += 1
            elif c in "\\'\"$`":
                i = self._word_part(i)
            else:
                i += 1
        raise _Refused(f"a {opener} is not closed")

    def regex_word(self) -> None:
        """The right side of `[[ ... =~ RE ]]`: a `|` is part of it, and in parentheses any
        character (blanks, `;`) is; it ends at a blank outside them."""
        assert self.peeked is None
        line, n = self.line, len(self.line)
        blanks = _BLANKS.match(line, self.pos)
        i = start = blanks.end() if blanks else self.pos
        depth = 0
        while i < n and (depth or line[i] not in " \t\n;&<>)"):
            c = line[i]
            if c in "()":
                depth += 1 if c == "(" else -1
                i += 1
            elif c in "\\'\"$`":
                i = self._word_part(i)
            else:
                i += 1
        if depth or i == start:
            raise _Refused("the regex of a [[ =~ ]] test is not complete")
        self.pos = i

    def _array(self, i: int) -> int:
        """NAME=( words ) from just after `(`: the index after `)`."""
        self.pos = i
        while True:
            token = self._next()
            if token.kind == "op" and token.text == ")":
                return self.pos
            if token.kind == "eof" or (token.kind == "op" and token.text != "\n"):
                raise _Refused(_near(token))

    def _nested(self, start: int, closer: str) -> int:
        """A line inside `$(`, `<(`, `>(` or `${ `: parsed to its closer; the index after it."""
        if self.depth >= MAX_NESTING:
            raise _Refused("substitutions nested too deeply")
        inner = _Parser(self.line, start, self.depth + 1)
        inner.lexer.brace_closes = closer == "}"
        inner.body(closer)
        return inner.lexer.pos

    def _skip_bodies(self, i: int) -> int:
        i = skip_heredoc_bodies(self.line, i, self.heredocs)
        self.heredocs = []
        return i


def _is_procsub(line: str, i: int) -> bool:
    return line.startswith(("<(", ">("), i)


class _Parser:
    """Recursive descent over bash's grammar (bash's parse.y, less what guardctl refuses)."""

    def __init__(self, line: str, pos: int, depth: int) -> None:
        self.lexer = _Lexer(line, pos, depth)

    # ------------------------------------------------------------------ lists

    def program(self) -> None:
        self._list(frozenset(), required=False)
        token = self.lexer.peek()
        if token.kind != "eof":
            raise _Refused(_near(token))

    def body(self, closer: str) -> None:
        """The line of a `$(...)` (may be empty) or `${ ...; }`, then its closer."""
        self._list(frozenset({closer}), required=closer == "}")
        self._expect(closer)

    def _list(self, stop: frozenset[str], required: bool = True) -> None:
        """Commands separated by `;`, `&` or line breaks, up to a token in `stop`."""
        found = False
        while True:
            self._linebreaks()
            if self._at(stop) or self.lexer.peek().kind == "eof":
                break
            self._and_or()
            found = True
            token = self.lexer.peek()
            if token.kind == "op" and token.text in (";", "&", "\n"):
                self.lexer.take()
                continue
            if not (self._at(stop) or token.kind == "eof"):
                raise _Refused(_near(token))
            break
        if required and not found:
            raise _Refused(_near(self.lexer.peek()))

    def _at(self, stop: frozenset[str]) -> bool:
        token = self.lexer.peek()
        if token.kind == "op":
            return token.text in stop
        return token.kind == "word" and token.plain and token.text in stop

    def _linebreaks(self) -> None:
        while self._is_op("\n"):
            self.lexer.take()

    def _is_op(self, *texts: str) -> bool:
        token = self.lexer.peek()
        return token.kind == "op" and token.text in texts

    def _is_word(self, *texts: str) -> bool:
        token = self.lexer.peek()
        return token.kind == "word" and token.plain and token.text in texts

    def _expect(self, text: str) -> None:
        token = self.lexer.take()
        if token.text != text or not (token.kind == "op" or token.plain):
            raise _Refused(_near(token))

    def _and_or(self) -> None:
        self._pipeline()
        while self._is_op("&&", "||"):
            self.lexer.take()
            self._linebreaks()
            self._pipeline()

    def _pipeline(self) -> None:
        while self._is_word("!", "time"):
            if self.lexer.take().text == "time" and self._is_word("-p"):
                self.lexer.take()
        self._command()
        while self._is_op("|", "|&"):
            self.lexer.take()
            self._linebreaks()
            self._command()

    # ------------------------------------------------------------------ commands

    def _command(self) -> None:
        token = self.lexer.peek()
        compound = _COMPOUND.get(token.text) if token.kind == "word" and token.plain else None
        if compound is not None:
            getattr(self, compound)()
            if token.text not in ("function", "coproc"):
                self._redirects()
        elif token.kind == "op" and token.text == "(":
            self._paren()
            self._redirects()
        elif token.kind == "word" and token.plain and (token.text in _CLOSERS or token.text == "!"):
            raise _Refused(_near(token))
        else:
            self._simple()

    def _simple(self) -> None:
        """Assignments, words and redirects; `NAME ()` starts a function definition."""
        parts, program = 0, None
        while True:
            token = self.lexer.peek()
            if token.kind == "op" and token.text in _REDIRECTS:
                self._redirect()
            elif token.kind != "word":
                break
            else:
                self.lexer.take()
                if program is None and _ASSIGNMENT.match(token.text):
                    pass  # a prefix assignment, `NAME=(...)` too
                elif token.array and program not in _DECLARES:
                    raise _Refused(_near(token))
                elif program is None:
                    program = token.text
                    self.lexer.assignable = program in _DECLARES
                    if parts == 0 and token.plain and self._is_op("("):
                        self._function_rest()
                        return
            parts += 1
        if parts == 0:
            raise _Refused(_near(token))

    def _redirects(self) -> None:
        while self._is_op(*_REDIRECTS):
            self._redirect()

    def _redirect(self) -> None:
        op = self.lexer.take().text
        target = self.lexer.take()
        if target.kind != "word":
            raise _Refused(_near(target))
        if op in ("<<", "<<-"):
            self.lexer.heredocs.append((heredoc_delimiter(target.text), op == "<<-"))

    def _paren(self) -> None:
        """`( list )`, or the arithmetic command `(( ... ))`."""
        lexer = self.lexer
        start = lexer.peek().start
        if lexer.line.startswith("((", start):
            end = lexer.arithmetic_end(start + 2)
            if end > 0:
                lexer.peeked, lexer.pos = None, end
                return
        lexer.take()
        self._list(frozenset({")"}))
        self._expect(")")

    def _group(self) -> None:
        self.lexer.take()
        self._list(frozenset({"}"}))
        self._expect("}")

    def _if(self) -> None:
        self.lexer.take()
        self._list(frozenset({"then"}))
        self._expect("then")
        self._list(frozenset({"elif", "else", "fi"}))
        while self._is_word("elif"):
            self.lexer.take()
            self._list(frozenset({"then"}))
            self._expect("then")
            self._list(frozenset({"elif", "else", "fi"}))
        if self._is_word("else"):
            self.lexer.take()
            self._list(frozenset({"fi"}))
        self._expect("fi")

    def _while(self) -> None:
        self.lexer.take()
        self._list(frozenset({"do"}))
        self._do_done()

    def _do_done(self) -> None:
        self._expect("do")
        self._list(frozenset({"done"}))
        self._expect("done")

    def _for(self) -> None:
        keyword = self.lexer.take().text
        lexer = self.lexer
        token = lexer.peek()
        if keyword == "for" and token.kind == "op" and lexer.line.startswith("((", token.start):
            end = lexer.arithmetic_end(token.start + 2)
            if end < 0:
                raise _Refused(_near(token))
            lexer.peeked, lexer.pos = None, end
            if self._is_op(";"):
                lexer.take()
        else:
            name = lexer.take()
            if name.kind != "word" or not _NAME.fullmatch(name.text):
                raise _Refused(_near(name))
            self._linebreaks()
            if self._is_word("in"):
                lexer.take()
                while lexer.peek().kind == "word":
                    lexer.take()
                if not self._is_op(";", "\n"):
                    raise _Refused(_near(lexer.peek()))
                lexer.take()
            elif self._is_op(";"):
                lexer.take()
        self._linebreaks()
        if self._is_word("{"):
            self._group()
        else:
            self._do_done()

    def _case(self) -> None:
        lexer = self.lexer
        lexer.take()
        if lexer.take().kind != "word":
            raise _Refused("a case without its word")
        self._linebreaks()
        self._expect("in")
        self._linebreaks()
        while not self._is_word("esac"):
            if self._is_op("("):
                lexer.take()
            self._pattern_word()
            while self._is_op("|"):
                lexer.take()
                self._pattern_word()
            self._expect(")")
            self._list(frozenset({*_CASE_ENDS, "esac"}), required=False)
            if not self._is_op(*_CASE_ENDS):
                break
            lexer.take()
            self._linebreaks()
        self._expect("esac")

    def _pattern_word(self) -> None:
        token = self.lexer.take()
        if token.kind != "word":
            raise _Refused(_near(token))

    def _test(self) -> None:
        """`[[ ... ]]`: a conditional expression, which bash parses with the line."""
        self.lexer.take()
        self._condition()
        self._expect("]]")

    def _condition(self) -> None:
        self._cond_and()
        while self._is_op("||"):
            self.lexer.take()
            self._cond_and()

    def _cond_and(self) -> None:
        self._cond_term()
        while self._is_op("&&"):
            self.lexer.take()
            self._cond_term()

    def _cond_term(self) -> None:
        lexer = self.lexer
        if self._is_word("!"):
            lexer.take()
            self._cond_term()
            return
        if self._is_op("("):
            lexer.take()
            self._condition()
            self._expect(")")
            return
        first = self._cond_word()
        token = lexer.peek()
        if first.plain and first.text in _UNARY_TESTS:
            self._cond_word()
        elif (token.kind == "word" and token.plain and token.text in _BINARY_TESTS) or (
            token.kind == "op" and token.text in ("<", ">")
        ):
            lexer.take()
            if token.text == "=~":
                lexer.regex_word()
            else:
                self._cond_word()

    def _cond_word(self) -> _Token:
        token = self.lexer.take()
        if token.kind != "word" or (token.plain and token.text == "]]"):
            raise _Refused(f"a [[ ... ]] test is not complete ({_near(token)})")
        return token

    def _function(self) -> None:
        lexer = self.lexer
        lexer.take()
        name = lexer.take()
        if name.kind != "word":
            raise _Refused(_near(name))
        if self._is_op("("):
            self._function_rest()
            return
        self._function_body()

    def _function_rest(self) -> None:
        """After a function's name: `()`, then its body."""
        self._expect("(")
        self._expect(")")
        self._function_body()

    def _function_body(self) -> None:
        self._linebreaks()
        token = self.lexer.peek()
        opens = token.kind == "op" and token.text == "("
        if not opens and not (token.plain and token.text in ("{", "if", "while", "until",
                                                             "for", "select", "case", "[[")):
            raise _Refused(_near(token))
        self._command()

    def _coproc(self) -> None:
        self.lexer.take()
        self._command()
