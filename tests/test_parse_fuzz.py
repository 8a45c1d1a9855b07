"""guardctl.firewall.parse under random input: never raises, fails closed, fast path equals the
bashlex path."""

from __future__ import annotations

import re
import shlex

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guardctl.firewall.parse import (
    Readings,
    _fast_commands,
    _parse,
    _simple_words,
    parse,
)
from guardctl.firewall.shellword import RESERVED
from guardctl.model import ParsedLine

SEEDS = [
    "kubectl get pods -n kube-system",
    "sudo -u admin kubectl delete ns 'my ns' && echo done",
    "cat <<'EOF' | kubectl apply -f -\nkind: Pod\nEOF\n",
    'bash -c "kubectl get pods | grep $(whoami)"',
    "for n in $(kubectl get ns -o name); do kubectl delete $n; done",
    "X=$(kubectl get secret s -o jsonpath='{.data.x}' | base64 -d) env -i kubectl get",
    "find . -name '*.yaml' -exec kubectl apply -f {} \\;",
    'alias k=kubectl; k get pods; f() { k "$@"; }; f get ns',
    "echo $'kube\\x63tl' `date` ${x:-$(ls)} $((1+2)) <(a) >(b) 2>&1 > out",
    "xargs -I{} sh -c 'kubectl delete ns {}' < list.txt",
]
# characters that matter to a shell parser, plus a few that should not
SPICE = list("'\"$()`\\\n\0{}[]|;&<>#!*?~= \t-") + ["$(", "<<", "<<EOF\n", "\nEOF", "$'", "${"]

mutation = st.tuples(st.integers(min_value=0, max_value=400), st.sampled_from(SPICE), st.booleans())


def _mutate(line: str, edits: list[tuple[int, str, bool]]) -> str:
    for position, text, delete in edits:
        at = position % (len(line) + 1)
        line = line[:at] + line[at + 1 :] if delete else line[:at] + text + line[at:]
    return line


def _check(parsed: ParsedLine, line: str) -> None:
    assert isinstance(parsed, ParsedLine)
    assert parsed.line == line
    if not parsed.problems:
        # a command has a program, or is a bare assignment (X=1) the agent's shell keeps, or
        # redirects alone (`> f` creates or empties f)
        assert all(
            command.argv or command.assignments or command.writes or command.stdin_from == "file"
            for command in parsed.commands
        )
        assert all(all(isinstance(a, str) for a in command.argv) for command in parsed.commands)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_raises(line: str) -> None:
    _check(parse(line), line)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SPICE + ["a", "b", "kubectl", " "]), max_size=60).map("".join))
def test_shell_punctuation_never_raises(line: str) -> None:
    _check(parse(line), line)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=6))
def test_mutated_real_lines_never_raise(seed: str, edits: list[tuple[int, str, bool]]) -> None:
    line = _mutate(seed, edits)
    _check(parse(line), line)


plain = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./:,@%+^=~", min_size=1, max_size=8)
# quoted text may hold anything but the quote itself (and in double quotes what bash still
# expands there: $ ` \\ !), shell syntax included
quoted = st.builds(
    lambda s: f"'{s}'", st.text(alphabet='ab "={}[]()*?~<>|;&#$`\\!', max_size=6)
) | st.builds(lambda s: f'"{s}"', st.text(alphabet="ab '={}[]()*?~<>|;&#", max_size=6))
# a variable's value, bare, braced or in double quotes
variable = st.sampled_from(["$NS", "${NS}", '"$NS"', '"a ${B}c"', "$_x1"])
word = st.lists(plain | quoted | variable, min_size=1, max_size=3).map("".join)
programs = st.sampled_from(
    [
        "kubectl",
        "sudo",
        "env",
        "xargs",
        "nice",
        "timeout",
        "bash",
        "sh",
        "eval",
        "watch",
        "command",
        "flock",
        "find",
        "alias",
        "time",
        "if",
        "exec",
        "A=1",
        "B+=x",
        "C='a b'",
        "_d=",
        "E=$NS",
    ]
)
simple_line = st.builds(
    lambda first, rest, sep: sep.join([first, *rest]),
    programs | word,
    st.lists(word | programs | st.sampled_from(["-c", "-u", "-n", "--", "-i", "-exec", "-print"])),
    st.sampled_from([" ", "  ", "\t", " \t "]),
)
# file redirects and descriptor copies the fast path reads, anywhere among the words
redirect = st.builds(
    lambda op, target: op + target,
    st.sampled_from(
        [">", ">>", ">|", "2>", "2>>", "&>", "&>>", "<", "0<", "3<", "10>", "> ", "< "]
    ),
    word,
) | st.sampled_from(["2>&1", ">&2", "<&3", "1>&2"])
redirected_line = st.builds(
    lambda line, redirects, at_end: " ".join([line, *redirects] if at_end else [*redirects, line]),
    simple_line,
    st.lists(redirect, min_size=1, max_size=3),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(simple_line)
def test_fast_path_equals_bashlex(line: str) -> None:
    first = shlex.split(line)[0]
    # every generated line is a fast-path line unless it starts with a keyword or assignment
    assert (_simple_words(line) is None) == (first in RESERVED or "=" in first)
    _same_reading(line, [(line, False)])


# bashlex misreads some quoted text that bash reads as plain characters: a quote right
# after a digit (`0'<('`, `0'${'`), a backtick, `$`, `<` or `>` in single quotes (`'`'0`,
# `:'`'`), `<(` or `>(` in double quotes (`:"<("`): it fails, loops, or finds a command
# or process substitution there
_BASHLEX_MISREADS = re.compile("[0-9]['\"]|'[^']*[`$<>][^']*'|\"[^\"]*[<>][(][^\"]*\"")


def _same_reading(line: str, parts: list[tuple[str, bool]]) -> None:
    """The fast path splits `line` as bash's quoting rules (shlex, POSIX) split each of
    `parts` (text, whether a pipe feeds it), and reads it as bashlex does, but where
    bashlex is known to misread it."""
    fast = _parse(line, allow_fast=True)
    _check(fast, line)
    commands = _fast_commands(line)
    # a keyword or an assignment leaves it to bashlex; shlex knows no redirects, and keeps
    # no variable's source text
    if commands is not None and not any(c in line for c in "<>$") and "+=" not in line:
        read = [
            ([f"{n}={v}" for n, v in command.assignments] + [w.text for w in command.words],
             command.piped)
            for command in commands
        ]
        assert read == [(shlex.split(text), piped) for text, piped in parts]
    if not _BASHLEX_MISREADS.search(line):
        assert fast == _parse(line, allow_fast=False)


@settings(max_examples=300, deadline=None)
@given(redirected_line, st.lists(st.tuples(st.sampled_from([" | ", " && ", "; "]), redirected_line),
                                 max_size=2))
def test_redirect_fast_path_equals_bashlex(first: str, rest: list[tuple[str, str]]) -> None:
    _same_reading(first + "".join(sep + part for sep, part in rest), [])


separator = st.sampled_from([" | ", "|", " && ", "&&", " || ", "||", "; ", ";", " ;\t"])


@settings(max_examples=300, deadline=None)
@given(simple_line, st.lists(st.tuples(separator, simple_line), min_size=1, max_size=4))
def test_list_fast_path_equals_bashlex(first: str, rest: list[tuple[str, str]]) -> None:
    line = first + "".join(sep + part for sep, part in rest)
    heads = [shlex.split(part)[0] for part in (first, *(part for _, part in rest))]
    # a list of plain pipelines takes the fast path unless a command starts with a keyword
    # or a word with a `=` that is not an assignment before the first word
    taken = _fast_commands(line) is not None
    assert taken or any(h in RESERVED or "=" in h for h in heads)
    _same_reading(line, [(first, False), *((part, sep.strip() == "|") for sep, part in rest)])


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab =-'\"\t\u00a0\u3000\x0b$;é"), max_size=24))
def test_fast_split_is_shlex_split(line: str) -> None:
    # the fast path splits by regex; where it answers, shlex (POSIX rules) must agree, and
    # a line shlex cannot split (an unbalanced quote) never takes the fast path
    words = _simple_words(line)
    try:
        expected = shlex.split(line)
    except ValueError:
        assert words is None
        return
    if words is not None and "$" not in line:  # a variable's word keeps its source text
        assert words == expected


def test_a_parse_that_runs_too_long_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # bashlex has been seen to loop on rare garbage; whatever the cause, the line is bounded
    import bashlex

    import guardctl.firewall.parse as parsing

    def forever(text: str) -> None:
        while True:
            pass

    monkeypatch.setattr(bashlex, "parse", forever)
    monkeypatch.setattr(parsing, "PARSE_SECONDS", 0.2)
    parsed = parse("kubectl get pods | grep `cat x`")  # backticks: bashlex reads them
    assert parsed.commands == ()
    assert parsed.problems == ("the line took longer than 0.2 s to parse",)


def test_a_deadline_cannot_be_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import bashlex

    import guardctl.firewall.parse as parsing

    def stubborn(text: str) -> None:
        for _ in range(10**9):
            try:
                while True:
                    pass
            except Exception:  # noqa: BLE001 - what careless code inside bashlex could do
                continue

    monkeypatch.setattr(bashlex, "parse", stubborn)
    monkeypatch.setattr(parsing, "PARSE_SECONDS", 0.2)
    assert parse("kubectl get pods | grep `cat x`").problems == (
        "the line took longer than 0.2 s to parse",
    )


@given(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=12))
@settings(max_examples=30, deadline=None)
def test_a_batch_reads_each_line_as_parse_does(lines: list[str]) -> None:
    readings = Readings()
    for line in lines:
        assert readings.parse(line) == parse(line)


def test_a_batch_reads_a_line_it_met_before_once() -> None:
    readings = Readings()
    line = "kubectl get pods | grep $(cat x)"
    assert readings.parse(line) is readings.parse(line)


def test_a_reading_the_deadline_cut_short_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # the deadline depends on the machine's load, not the line: the next time the line is
    # read in full
    import bashlex

    import guardctl.firewall.parse as parsing

    def forever(text: str) -> None:
        while True:
            pass

    readings = Readings()
    line = "kubectl get pods | grep `cat x`"
    with monkeypatch.context() as patched:
        patched.setattr(bashlex, "parse", forever)
        patched.setattr(parsing, "PARSE_SECONDS", 0.2)
        assert readings.parse(line).problems == ("the line took longer than 0.2 s to parse",)
    assert readings.parse(line) == parse(line)
    assert readings.parse(line).problems == ()


def test_the_deadline_nests_inside_an_outer_timer() -> None:
    # a test runner's timeout (or any outer timer) must neither disable the parse deadline
    # nor be lost: it is re-armed afterwards with the time it had left
    import signal

    from guardctl.errors import DeadlineExceeded
    from guardctl.signals import deadline

    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        with pytest.raises(DeadlineExceeded), deadline(0.1):
            while True:
                pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < left <= 30
        assert fired == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


fast_punctuation = st.lists(
    st.sampled_from(["a", "b", "kubectl", " ", "\t", "|", "||", "&&", ";", "&", "<", ">", ">>",
                     "2>", "2>&1", ">&2", "&>", "'x y'", '"q"', "'", '"', "$NS", "${NS}", "=",
                     "if", "then", "fi", "!", "~", "-", "--", ";&", "|&", ";;", "<>"]),
    max_size=30,
).map("".join)


@settings(max_examples=1000, deadline=None)
@given(fast_punctuation | simple_line | redirected_line)
@example("a ;&> f")  # bash reads `;&` (a case terminator) and `|&` as operators
@example("a |&> f b")
def test_a_fast_path_line_is_one_bash_parses(line: str) -> None:
    # the fast path skips the bash grammar check (bashsyntax): every line it reads must be
    # one the check accepts
    from guardctl.firewall.bashsyntax import syntax_error

    if _fast_commands(line) is not None:
        assert syntax_error(line) is None
