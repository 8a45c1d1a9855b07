"""Shell words by hand: quote removal, ANSI-C strings, finding `$(...)`, preparing text for bashlex.

bashlex (0.18) tokenizes and parses well but gets some word-level details wrong for our
purpose: it mangles `$'...'` strings, does not look inside `${x:-$(cmd)}` or unquoted
here-document bodies, rejects `$((...))`, `time` and quoted here-document delimiters. This
module does those parts itself, on the raw source text of each word. Pure: stdlib only.
"""

import re
from typing import NamedTuple

from guardctl.firewall.bashsyntax import (
    closing_quote,
    funsub_end,
    heredoc_delimiter,
    skip_heredoc_bodies,
)

# `$` followed by one of these starts an expansion (parameter, special parameter, `${`, `$(`)
_EXPANSION_START = re.compile(r"[A-Za-z_0-9{(@*#?$!-]")
_ANSI_SIMPLE = {
    "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r",
    "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?",
}  # fmt: skip
# \xHH, \uHHHH, \UHHHHHHHH: escape letter -> most hex digits bash reads
_ANSI_HEX = {"x": 2, "u": 4, "U": 8}
_OCTAL = "01234567"
_HEX = "0123456789abcdefABCDEF"
# bash 5.3's command substitution run in the shell itself: `${ cmd; }`, `${| cmd; }`
_FUNSUB = re.compile(r"\$\{[ \t\n|]")
# characters that end an unquoted word
_METACHARS = " \t\n;&|()<>"
# words that are syntax at command position, never program names
RESERVED = frozenset(
    "if then elif else fi for while until do done case esac in function select time coproc "
    "{ } ! [[ ]]".split()
)
# after these words the next word is again at command position (so `time` is a keyword there)
_KEEP_COMMAND_POSITION = frozenset({"!", "{", "then", "do", "else", "elif", "if", "while", "until"})


class WordError(ValueError):
    """A word guardctl cannot read (unterminated quote, bad escape)."""


class Word(NamedTuple):
    """One shell word after quote removal.

    `text` is the value the command receives, or the source text when `dynamic` (the value
    is only known at run time). `glob` marks unquoted `* ? [` or `{`, which make a program
    name unknowable but are harmless in arguments. `tilde` marks a leading `~` the shell
    expands (unquoted): the program gets a home folder's path there, where a quoted `~`
    reaches it as the character itself.
    """

    text: str
    dynamic: bool = False
    glob: bool = False
    tilde: bool = False


# --------------------------------------------------------------------------- decoding


def decode_word(raw: str) -> Word:
    """Quote removal for the raw source text of one word, as bash would do it.

    >>> decode_word("kube\\"\\"ctl")
    Word(text='kubectl', dynamic=False, glob=False, tilde=False)
    """
    out: list[str] = []
    dynamic = glob = False
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        nxt = raw[i + 1] if i + 1 < n else ""
        if c == "\\":
            # backslash-newline is a line continuation and vanishes
            out.append("" if nxt == "\n" else nxt or "\\")
            i += 2
        elif c == "'":
            end = raw.find("'", i + 1)
            if end < 0:
                raise WordError("unterminated single quote")
            out.append(raw[i + 1 : end])
            i = end + 1
        elif c == "$" and nxt == "'":
            text, i = _decode_ansi_c(raw, i + 2)
            out.append(text)
        elif c == "$" and nxt == '"':
            text, dyn, i = _decode_double(raw, i + 2)
            out.append(text)
            dynamic |= dyn
        elif c == '"':
            text, dyn, i = _decode_double(raw, i + 1)
            out.append(text)
            dynamic |= dyn
        elif c == "`" or (c == "$" and _EXPANSION_START.match(nxt)) or (c in "<>" and nxt == "("):
            # `<(cmd)` and `>(cmd)` become a /dev/fd path known only at run time
            dynamic = True
            out.append(c)
            i += 1
        else:
            glob |= c in "*?[{"
            out.append(c)
            i += 1
    if dynamic:  # the value is unknown anyway: whether it would also glob does not matter
        return Word(raw, dynamic=True)
    return Word("".join(out), glob=glob, tilde=expands_tilde(raw))


def expands_tilde(raw: str) -> bool:
    """bash's tilde expansion: a leading `~` whose prefix (up to the first `/`) is unquoted."""
    prefix = raw.split("/", 1)[0]
    return raw.startswith("~") and not any(c in prefix for c in "'\"\\$`")


def _decode_double(raw: str, i: int) -> tuple[str, bool, int]:
    """Read a double-quoted string whose body starts at `i`; returns (text, dynamic, next index)."""
    out: list[str] = []
    dynamic = False
    n = len(raw)
    while i < n:
        c = raw[i]
        nxt = raw[i + 1] if i + 1 < n else ""
        if c == '"':
            return "".join(out), dynamic, i + 1
        if c == "\\" and nxt in '$`"\\\n':
            out.append("" if nxt == "\n" else nxt)
            i += 2
            continue
        dynamic |= c == "`" or (c == "$" and bool(_EXPANSION_START.match(nxt)))
        out.append(c)
        i += 1
    raise WordError("unterminated double quote")


def _decode_ansi_c(raw: str, i: int) -> tuple[str, int]:
    """Decode a `$'...'` body starting at `i`; returns (text, index after the closing quote).

    A NUL ends the string's value, as in bash (C strings), but reading continues to the quote.
    """
    out: list[str] = []
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == "'":
            text = "".join(out)
            return text.split("\0", 1)[0], i + 1
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        char, i = _ansi_escape(raw, i + 1)
        out.append(char)
    raise WordError("unterminated $'...' string")


def _ansi_escape(raw: str, i: int) -> tuple[str, int]:
    """One escape of a `$'...'` string; `i` is just past the backslash."""
    e = raw[i]
    if e in _ANSI_SIMPLE:
        return _ANSI_SIMPLE[e], i + 1
    if e in _OCTAL:
        digits = _take(raw, i, _OCTAL, 3)
        return chr(int(digits, 8) & 0xFF), i + len(digits)
    if e in _ANSI_HEX:
        digits = _take(raw, i + 1, _HEX, _ANSI_HEX[e])
        if not digits:
            return "\\" + e, i + 1
        code = int(digits, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise WordError(f"escape \\{e}{digits} is not a character")
        return chr(code), i + 1 + len(digits)
    if e == "c" and i + 1 < len(raw):
        ctl = raw[i + 1]
        return ("\x7f" if ctl == "?" else chr(ord(ctl.upper()) & 0x1F)), i + 2
    return "\\" + e, i + 1


def _take(raw: str, i: int, alphabet: str, most: int) -> str:
    j = i
    while j < len(raw) and j - i < most and raw[j] in alphabet:
        j += 1
    return raw[i:j]


def has_expansion(text: str) -> bool:
    """True when unquoted-here-document text holds `$x`, `${..}`, `$(..)` or backticks."""
    return "`" in text or re.search(r"\$[A-Za-z_0-9{(@*#?$!-]", text) is not None


def is_assignment(text: str) -> bool:
    """`NAME=value` (also `NAME+=value`), as bash recognizes it before a command."""
    return re.match(r"[A-Za-z_][A-Za-z_0-9]*\+?=", text) is not None


# --------------------------------------------------------------------------- substitutions


def find_substitutions(text: str, heredoc: bool = False) -> list[str] | None:
    """The inner text of every `$(...)`, `${ ...; }` and backtick substitution in `text`,
    outermost only.

    Used where bashlex does not look: `${x:-$(cmd)}`, `$(( $(cmd) + 1 ))` and unquoted
    here-document bodies (`heredoc=True`: quotes are plain characters there). None when a
    substitution is not closed, so the caller can fail closed.
    """
    found: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == "'" and not heredoc:
            end = text.find("'", i + 1)
            i = n if end < 0 else end + 1
        elif c == "`":
            end = _closing_backtick(text, i + 1)
            if end < 0:
                return None
            found.append(re.sub(r"\\([$`\\])", r"\1", text[i + 1 : end]))
            i = end + 1
        elif text.startswith("$(", i) and not text.startswith("$((", i):
            end = closing_paren(text, i + 2)
            if end < 0:
                return None
            found.append(text[i + 2 : end])
            i = end + 1
        elif _FUNSUB.match(text, i):
            # bash 5.3 runs `${ cmd; }` and `${| cmd; }` in the shell itself
            start = i + 3 if text.startswith("|", i + 2) else i + 2
            end = funsub_end(text, start)
            if end < 0:
                return None
            found.append(text[start : end - 1])
            i = end
        else:
            i += 1
    return found


def _closing_backtick(text: str, i: int) -> int:
    return closing_quote(text, i, "`")


def closing_paren(text: str, i: int) -> int:
    """Index of the `)` that closes a `(` just before `i`, skipping quoted text; -1 if none."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "'\"":
            end = text.find(c, i + 1) if c == "'" else _closing_double(text, i + 1)
            if end < 0:
                return -1
            i = end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _closing_double(text: str, i: int) -> int:
    return closing_quote(text, i, '"')


# --------------------------------------------------------------------------- preparing


class Prepared(NamedTuple):
    """The line as handed to bashlex: same length as the original, so positions agree.

    `text` goes to bashlex; `source` is where words are read from: the original line with
    only the `case` rewrites, whose `:` commands (at `synthetic`) stand for no real command.
    `quoted_heredocs` holds the positions of `<<` operators whose delimiter was quoted (body
    taken literally). `empty` is true when the line holds only blanks and comments.
    """

    text: str
    source: str
    quoted_heredocs: frozenset[int]
    synthetic: frozenset[int]
    empty: bool


def prepare(line: str) -> Prepared:
    """Rewrite, keeping every position, what bashlex 0.18 cannot parse but bash can.

    - `$((expr))` becomes `${____}` (a parameter of the same length: dynamic either way);
    - `time` at command position becomes `_tm_` (the walker reads words from the original);
    - quoted here-document delimiters `<<'EOF'`, `<<"EOF"`, `<<E\\OF` lose their quotes;
    - `case ... esac` becomes a `{ ...; }` group of the same commands (see _case_head).
    """
    scanner = _Scanner(line)
    scanner.scan(0, in_parens=False)
    return scanner.finish()


class _Scanner:
    """A small bash lexer: enough quoting, nesting and here-documents to place the rewrites."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.out = list(line)
        self.quoted: set[int] = set()
        self.pending: list[tuple[str, bool]] = []  # here-documents whose body starts next line
        self.content = False
        self.cases = 0  # open `case` statements
        self.case_edits: list[tuple[int, str]] = []
        self.case_unsafe = False
        self.synthetic: set[int] = set()  # `:` commands standing in for `[[ ]]` and `(( ))`

    def finish(self) -> Prepared:
        """Apply the `case` rewrites, but only when every one of them was understood."""
        source = list(self.line)
        synthetic = set(self.synthetic)
        if self.cases == 0 and not self.case_unsafe:
            for position, text in self.case_edits:
                self.out[position : position + len(text)] = text
                source[position : position + len(text)] = text
                if ":" in text:
                    synthetic.add(position + text.index(":"))
        return Prepared(
            "".join(self.out),
            "".join(source),
            frozenset(self.quoted),
            frozenset(synthetic),
            not self.content,
        )

    def scan(self, i: int, in_parens: bool) -> int:
        """Scan from `i`; inside `$(` stop after the closing `)`. Returns the next index."""
        line, n = self.line, len(self.line)
        depth = 0
        word_start = -1
        command_position = True
        while i < n:
            c = line[i]
            if c in _METACHARS:
                if word_start >= 0:
                    command_position, after = self._end_word(word_start, i, command_position)
                    word_start = -1
                    if after != i:  # `case WORD in PATTERN)` was read as a whole
                        i = after
                        continue
                if in_parens and c == ")":
                    if depth == 0:
                        return i + 1
                    depth -= 1
                elif in_parens and c == "(":
                    depth += 1
                i, command_position = self._operator(i, command_position)
                continue
            if word_start < 0:
                if c == "#":
                    end = line.find("\n", i)
                    i = n if end < 0 else end
                    continue
                word_start = i
                self.content = True
            i = self._word_char(i)
        if word_start >= 0:
            self._end_word(word_start, n, command_position)
        return n

    def _operator(self, i: int, command_position: bool) -> tuple[int, bool]:
        """Step over the metacharacter(s) at `i`; returns (next index, command position)."""
        line = self.line
        if line.startswith("<<<", i):
            return i + 3, command_position
        if line.startswith("<<", i):
            return self._heredoc_operator(i), command_position
        if line[i] == "\n" and self.pending:
            return self._skip_bodies(i + 1), True
        if command_position and line.startswith("((", i):
            end = closing_paren(line, i + 2)
            if end > 0 and line.startswith(")", end + 1):  # else `((a) )`: nested subshells
                return self._test_command(i, end + 2, "))"), False
        if self.cases and line.startswith((";;", ";&"), i):
            size = 3 if line.startswith(";;&", i) else 2
            self.case_edits.append((i, "\n" * size))
            return self._case_pattern(i + size), True
        return i + 1, command_position or line[i] in ";&|(\n"

    def _word_char(self, i: int) -> int:
        """Step over one character or one quoted/nested unit of a word."""
        line = self.line
        c = line[i]
        if c == "\\":
            return i + 2
        if c == "'":
            end = line.find("'", i + 1)
            return len(line) if end < 0 else end + 1
        if c == "$" and line.startswith("'", i + 1):
            return self._skip_ansi(i + 2)
        if c == '"':
            return self._skip_double(i + 1)
        if c == "`":
            end = _closing_backtick(line, i + 1)
            return len(line) if end < 0 else end + 1
        if c == "$" and line.startswith("((", i + 1):
            return self._arithmetic(i)
        if c == "$" and line.startswith("(", i + 1):
            return self.scan(i + 2, in_parens=True)
        return i + 1

    def _end_word(self, start: int, end: int, command_position: bool) -> tuple[bool, int]:
        """A word ended; returns (is the next word at command position, where to go on)."""
        word = self.line[start:end]
        if not command_position:
            return False, end
        if word == "time":
            self.out[start:end] = "_tm_"
        elif word == "case":
            return True, self._case_head(start, end)
        elif word == "[[":
            return False, self._test_command(start, self._closing_brackets(end), "]]")
        elif word == "esac" and self.cases:
            self._esac(start)
            return False, end
        return word in _KEEP_COMMAND_POSITION or word == "time", end

    # bashlex 0.18 cannot parse `[[ test ]]` or `(( arithmetic ))` (it reads `&& || < > ( )`
    # inside them as shell operators). Both run no program, only their substitutions: they
    # become a `:` command whose operators are blanked, so `$(...)` in them is still found.

    def _closing_brackets(self, i: int) -> int:
        """Index of the `]]` word that ends a `[[` test, or -1."""
        line = self.line
        while i < len(line):
            i = self._skip_blanks(i, newlines=False)
            if self._keyword_at(i, "]]"):
                return i
            if i < len(line) and line[i] in _METACHARS:
                i += 1
            else:
                while i < len(line) and line[i] not in _METACHARS:
                    i = self._word_char(i)
        return -1

    def _test_command(self, start: int, end: int, closer: str) -> int:
        """Blank `[[ ... ]]` (`end` at `]]`) or `(( ... ))` (`end` past `))`); returns the end."""
        line = self.line
        stop = end if closer == "]]" else end - 2
        if end < 0 or "\n" in line[start:stop] or ";" in line[start:stop]:
            return start + 2  # not understood: bashlex will refuse it
        edits = [(start, ": ")]
        i = start + 2
        while i < stop:
            if line[i] in "&|<>()":
                edits.append((i, " "))
                i += 1
            else:
                i = self._word_char(i) if line[i] not in _METACHARS else i + 1
        for position, text in [*edits, (stop, "  ")]:
            self.out[position : position + len(text)] = text
        self.synthetic.add(start)
        return stop + 2

    # bashlex 0.18 cannot parse `case`. We rewrite it, keeping every position, into a group
    # that runs the same commands: `case W in P) A;; Q) B;; esac` -> `{ : W \n :  \n A\n\n
    # :  \n B\n\n\n}   `. Patterns become `:` (they run nothing unless they hold `$(...)`,
    # which we refuse). A here-document inside would meet our newlines: refused as well.

    def _case_head(self, start: int, end: int) -> int:
        line = self.line
        i = self._skip_blanks(end, newlines=False)
        subject = i
        while i < len(line) and line[i] not in _METACHARS:
            i = self._word_char(i)
        i = self._skip_blanks(i, newlines=True)
        if i == subject or not self._keyword_at(i, "in"):
            self.case_unsafe = True
            return end
        self.case_edits += [(start, "{ : "), (i, "\n ")]
        self.cases += 1
        return self._case_pattern(i + 2)

    def _case_pattern(self, i: int) -> int:
        """At the start of a clause: read its `(a|b)` pattern, or the closing `esac`."""
        line = self.line
        i = self._skip_blanks(i, newlines=True)
        if self._keyword_at(i, "esac"):
            self._esac(i)
            return i + 4
        start = i
        while i < len(line) and line[i] != ")":
            if line[i] in "\n;&<>" or (line[i] == "(" and i != start):
                break
            i = self._word_char(i)
        pattern = line[start : i + 1]
        if i >= len(line) or line[i] != ")" or len(pattern) < 2 or has_expansion(pattern):
            self.case_unsafe = True
            return i
        self.case_edits.append((start, ":" + " " * (len(pattern) - 2) + "\n"))
        return i + 1

    def _esac(self, i: int) -> None:
        self.case_edits.append((i, "\n}  "))
        self.cases -= 1

    def _keyword_at(self, i: int, word: str) -> bool:
        end = i + len(word)
        return self.line.startswith(word, i) and (
            end == len(self.line) or self.line[end] in _METACHARS
        )

    def _skip_blanks(self, i: int, newlines: bool) -> int:
        blanks = " \t\n" if newlines else " \t"
        while i < len(self.line) and self.line[i] in blanks:
            i += 1
        return i

    def _skip_ansi(self, i: int) -> int:
        end = closing_quote(self.line, i, "'")
        return len(self.line) if end < 0 else end + 1

    def _skip_double(self, i: int) -> int:
        line = self.line
        while i < len(line):
            c = line[i]
            if c == '"':
                return i + 1
            if c == "\\":
                i += 2
            elif c == "`":
                end = _closing_backtick(line, i + 1)
                i = len(line) if end < 0 else end + 1
            elif c == "$" and line.startswith("((", i + 1):
                i = self._arithmetic(i)
            elif c == "$" and line.startswith("(", i + 1):
                i = self.scan(i + 2, in_parens=True)
            else:
                i += 1
        return len(line)

    def _arithmetic(self, i: int) -> int:
        """`$((...))` at `i`: replace it by a same-length `${___}`; `$( (..) ..)` is left alone."""
        line = self.line
        end = closing_paren(line, i + 3)
        if end < 0 or not line.startswith(")", end + 1):
            # not arithmetic after all: a command substitution that starts with a subshell
            return self.scan(i + 2, in_parens=True)
        size = end + 2 - i
        self.out[i : end + 2] = "${" + "_" * (size - 3) + "}"
        return end + 2

    def _heredoc_operator(self, i: int) -> int:
        """`<<` or `<<-` at `i`: note the delimiter; strip its quotes in place."""
        line = self.line
        self.case_unsafe |= self.cases > 0
        j = i + 2
        strip_tabs = line.startswith("-", j)
        j += strip_tabs
        while j < len(line) and line[j] in " \t":
            j += 1
        start = j
        while j < len(line) and line[j] not in _METACHARS:
            j = self._word_char(j)
        j = min(j, len(line))
        raw = line[start:j]
        delimiter = heredoc_delimiter(raw)
        if delimiter != raw:
            self.quoted.add(i)
            self.out[start:j] = delimiter.ljust(j - start)
        self.pending.append((delimiter, strip_tabs))
        return j

    def _skip_bodies(self, i: int) -> int:
        """Skip the bodies of pending here-documents, which start at `i`."""
        i = skip_heredoc_bodies(self.line, i, self.pending)
        self.pending = []
        return i
