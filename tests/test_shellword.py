"""guardctl.firewall.shellword: quote removal, substitutions, the text handed to bashlex."""

from __future__ import annotations

import pytest

from guardctl.firewall.shellword import (
    Word,
    WordError,
    decode_word,
    find_substitutions,
    has_expansion,
    is_assignment,
    prepare,
)

DECODED = [
    ("kubectl", Word("kubectl")),
    ('kube""ctl', Word("kubectl")),
    ("kube''ctl", Word("kubectl")),
    ("k\\ubectl", Word("kubectl")),
    ("'a b'", Word("a b")),
    ('"a \\" \\$ \\\\ \\x"', Word('a " $ \\ \\x')),
    ('"a\\\nb"', Word("ab")),
    ("a\\\nb", Word("ab")),
    ("trailing\\", Word("trailing\\")),
    ("$'\\x6b\\x75be'", Word("kube")),
    ("$'\\u006b'", Word("k")),
    ("$'\\U0001F600'", Word("\U0001f600")),
    ("$'\\101\\7'", Word("A\x07")),
    ("$'\\a\\b\\e\\E\\f\\n\\r\\t\\v\\\\\\'\\\"\\?'", Word("\a\b\x1b\x1b\f\n\r\t\v\\'\"?")),
    ("$'\\cA\\c?'", Word("\x01\x7f")),
    ("$'\\q\\x\\u'", Word("\\q\\x\\u")),
    ("$'ab\\0cd'x", Word("abx")),
    ("$'ab\\x00cd'", Word("ab")),
    ('$"hello"', Word("hello")),
    ("$", Word("$")),
    ("a$", Word("a$")),
    ("'$x'", Word("$x")),
    ("\\$x", Word("$x")),
    ("$x", Word("$x", dynamic=True)),
    ("${x}", Word("${x}", dynamic=True)),
    ("$1", Word("$1", dynamic=True)),
    ('"$@"', Word('"$@"', dynamic=True)),
    ("a$(b)", Word("a$(b)", dynamic=True)),
    ("`b`", Word("`b`", dynamic=True)),
    ('$"a $x"', Word('$"a $x"', dynamic=True)),
    ("<(a)", Word("<(a)", dynamic=True)),
    ("*", Word("*", glob=True)),
    ("a?", Word("a?", glob=True)),
    ("[ab]", Word("[ab]", glob=True)),
    ("{a,b}", Word("{a,b}", glob=True)),
    ("'*'", Word("*")),
    ("~/x", Word("~/x", tilde=True)),
    ("'~'/x", Word("~/x")),
    ("~'/x'", Word("~/x")),
]


@pytest.mark.parametrize(("raw", "expected"), DECODED)
def test_decode_word(raw: str, expected: Word) -> None:
    assert decode_word(raw) == expected


@pytest.mark.parametrize("raw", ["'open", '"open', "$'open", "$'\\U00110000'", "$'\\ud800'"])
def test_decode_word_rejects(raw: str) -> None:
    with pytest.raises(WordError):
        decode_word(raw)


SUBSTITUTIONS = [
    ("plain", False, []),
    ("a $(b) `c`", False, ["b", "c"]),
    ("$(a $(b))", False, ["a $(b)"]),
    ("$(echo ')')", False, ["echo ')'"]),
    ("'$(quoted)'", False, []),
    ("it's $(a)", True, ["a"]),
    ("\\$(escaped)", False, []),
    ("$((1 + $(a)))", False, ["a"]),
    ("`a \\`b\\``", False, ["a `b`"]),
    ("$(open", False, None),
    ("`open", False, None),
]


@pytest.mark.parametrize(("text", "heredoc", "expected"), SUBSTITUTIONS)
def test_find_substitutions(text: str, heredoc: bool, expected: list[str] | None) -> None:
    assert find_substitutions(text, heredoc=heredoc) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a $b", True), ("${b}", True), ("`b`", True), ("$(b)", True), ("a $ b", False), ("x", False)],
)
def test_has_expansion(text: str, expected: bool) -> None:
    assert has_expansion(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("A=1", True), ("_a9=", True), ("A+=x", True), ("9A=1", False), ("-A=1", False), ("A", False)],
)
def test_is_assignment(text: str, expected: bool) -> None:
    assert is_assignment(text) is expected


PREPARED = [
    ("echo $((1+2)) x", "echo ${_____} x"),
    ('echo "$((1))"', 'echo "${___}"'),
    ("echo '$((1))'", "echo '$((1))'"),
    ("echo $((a); b)", "echo $((a); b)"),
    ("time kubectl", "_tm_ kubectl"),
    ("a; time -p b | time c", "a; _tm_ -p b | _tm_ c"),
    ("echo time", "echo time"),
    ("if time a; then time b; fi", "if _tm_ a; then _tm_ b; fi"),
    ("$(time a)", "$(_tm_ a)"),
    ("a <<'EOF'\nx\nEOF", "a <<EOF  \nx\nEOF"),
    ('a <<-"E"\nx\nE', "a <<-E  \nx\nE"),
    ("a <<\\EOF\nx\nEOF", "a <<EOF \nx\nEOF"),
    ("a <<< 'EOF'", "a <<< 'EOF'"),
    # a here-document body is not shell code: its quote does not hide the next delimiter
    ("a <<X; b <<'Y'\nit's\nX\ny\nY", "a <<X; b <<Y  \nit's\nX\ny\nY"),
    ("# it's time\ntime a", "# it's time\n_tm_ a"),
    ("case $x in a|b) c;; *) d;; esac", "{ :  $x \n  :  \n c\n\n :\n d\n\n \n}  "),
    ("case x in (a) b;& c) d;;& esac", "{ :  x \n  : \n b\n\n :\n d\n\n\n \n}  "),
    ("echo case x in", "echo case x in"),
    ("[[ $a < b && ( c ) ]]; d", ":  $a   b      c     ; d"),
    ("x && [[ $(a) ]]", "x && :  $(a)   "),
    ("(( a < $(b) ))", ":  a   $(b)   "),
    ("((a) )", "((a) )"),
    ("echo [[ a ]]", "echo [[ a ]]"),
    # not understood: left to bashlex, which refuses it
    ("[[ a\n]]", "[[ a\n]]"),
    ("case x in a) cat <<E;; esac\nE", "case x in a) cat <<E;; esac\nE"),
    ("case x in $(a)) b;; esac", "case x in $(a)) b;; esac"),
    ("case x in a) b", "case x in a) b"),
]


@pytest.mark.parametrize(("line", "expected"), PREPARED)
def test_prepare_keeps_positions(line: str, expected: str) -> None:
    prepared = prepare(line)
    assert prepared.text == expected
    assert len(prepared.text) == len(line)


def test_case_source_and_synthetic_commands() -> None:
    prepared = prepare("case $x in a) b;; esac")
    assert prepared.source == prepared.text == "{ :  $x \n  :\n b\n\n \n}  "
    assert prepared.synthetic == frozenset({2, 11})


def test_time_is_rewritten_for_bashlex_only() -> None:
    prepared = prepare("time a")
    assert (prepared.text, prepared.source) == ("_tm_ a", "time a")


def test_prepare_marks_quoted_heredocs() -> None:
    assert prepare("a <<A; b <<'B'\n1\nA\n2\nB").quoted_heredocs == frozenset({9})


@pytest.mark.parametrize(
    ("line", "empty"), [("", True), (" \t\n", True), ("# c\n  # d", True), ("a # c", False)]
)
def test_prepare_empty(line: str, empty: bool) -> None:
    assert prepare(line).empty is empty
