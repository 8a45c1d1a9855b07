"""tree-sitter-bash beside bashlex (guardctl.firewall.tsbash): wherever parse takes its
reading, the line's reading is bashlex's, command for command and problem for problem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardctl.firewall import tsbash
from guardctl.firewall.parse import _fast_commands, _parse
from guardctl.firewall.shellword import prepare

pytestmark = pytest.mark.skipif(not tsbash.available(), reason="tree-sitter-bash not installed")

CORPUS = Path(__file__).parent / "corpus"


def _same_reading(line: str) -> None:
    """parse with tree-sitter allowed reads `line` as it does with bashlex instead (the
    regex fast path, which test_parse_fuzz compares with bashlex, reads plain lines in both)."""
    with_tree_sitter = _parse(line, allow_fast=True, tree_sitter=True)
    assert with_tree_sitter == _parse(line, allow_fast=True, tree_sitter=False), line


def _corpus_lines() -> list[str]:
    return [
        line.strip()
        for path in sorted(CORPUS.glob("*.cases"))
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_every_corpus_line_reads_as_bashlex_reads_it() -> None:
    for line in dict.fromkeys(_corpus_lines()):
        _same_reading(line)


@pytest.mark.parametrize(
    "line",
    [
        "(kubectl get pods -n dev) > out",
        "{ kubectl get pods; } 2>&1 | grep web &",
        "if kubectl get ns dev; then echo a; elif b; then c; else d; fi",
        "while ! kubectl get pod web; do sleep 1; done < list",
        "until a; do b; done",
        "for ns in dev $(cat list); do kubectl delete ns $ns; done",
        'kubectl delete pod "$(kubectl get pods -o name | head -1)" -n "$NS"',
        "echo $(kubectl delete ns prod) <(kubectl get ns) ${x:-a}",
        "X=$(kubectl delete ns prod) Y=1 env",
        "echo $(a | b; c) <(d) >(e)",
        "X=1 Y=$(b)",
        "export KUBECONFIG=/tmp/k A=$(b) C",
        "kubectl apply -f - <<< \"$MANIFEST\"",
        "rm -f /tmp/log '~/.c*' x.0 a,b $(x)",
        "a && b || c; d & e\nf",
    ],
)
def test_syntax_tree_sitter_reads_as_bashlex(line: str) -> None:
    # each of these needs more than the regex fast path, and tree-sitter reads it
    assert _fast_commands(line) is None
    assert tsbash.read(line) is not None
    _same_reading(line)


@pytest.mark.parametrize(
    "line",
    [
        "kubectl get pods 'unclosed",  # a parse error anywhere
        "echo $()",  # a node tree-sitter made up (MISSING)
        'echo $"x"',  # one word to bash, two to tree-sitter
        "echo a2>f",  # `a2` and `>f` to bash
        "a |& b",
        "a <> f",
        "a >&- b",
        "a >&file",
        "f() { kubectl delete ns prod; }",
        "X=(a b) kubectl get pods",
        "[ -f x ] && kubectl get pods",
        "echo `kubectl delete ns prod`",  # bashlex reads backticks its own way
        "echo '`'",
        "echo a $\nb",
        "kubectl\\\n get pods $(x)",  # a backslash anywhere
        "echo $(a && b)",  # bashlex cannot parse these substitutions
        "echo $(a;) <(b &)",
        "echo $(a\nb) x",  # bashlex reads its first line only (a problem to parse)
        "echo $(a # b\n)",
        "echo ${x:-$(kubectl get pods)}",  # bashlex ends a parameter at its first `}`
        "}{ kubectl get pods",  # a reserved word to bashlex
        "{ kubectl get pods; } & # a comment",
        "x\n'a $(b)'c",  # bashlex reads this $(b) in single quotes
        "(0'<(') $(x)",  # bashlex cannot parse this
        "rm -f /tmp/*.log $(x)",  # glob and brace characters: bashlex's own reading
        "echo {a,b} $(x)",
        "kubectl 0 ?'<('",
        "echo $'x' $(y)",
        "echo é $(kubectl get pods)",  # tree-sitter counts bytes
        "select x in a; do b; done",
        "coproc kubectl get pods $(x)",
        "cat <<EOF\nkubectl delete ns prod\nEOF",
        "echo `a``b`",  # one substitution to bashlex
    ],
)
def test_what_tree_sitter_is_unsure_of_goes_to_bashlex(line: str) -> None:
    assert tsbash.read(line) is None
    _same_reading(line)


@pytest.mark.parametrize(
    "line", ["time kubectl get pods", "cat <<'EOF'\nx\nEOF", "[[ -f x ]]", "echo $((1+2))"]
)
def test_lines_bashlex_is_helped_with_are_bashlex_s(line: str) -> None:
    # shellword.prepare rewrites these for bashlex; parse never hands them to tree-sitter
    assert prepare(line).text != line
    _same_reading(line)


# ---------------------------------------------------------------- generated lines

_plain = st.text(alphabet="abkz09-_./:,@%+=~*?[]{}", min_size=1, max_size=6)
_quoted = st.builds(lambda s: f"'{s}'", st.text(alphabet='ab "$`\\(){};|&<>#', max_size=5)) | (
    st.builds(lambda s: f'"{s}"', st.text(alphabet="ab '(){};|&<>#", max_size=5))
)
_variable = st.sampled_from(["$NS", "${NS}", '"$NS"', "${x:-a}", "$1", "$@", '"$@"'])


def _lines(depth: int) -> st.SearchStrategy[str]:
    """Lines of commands in bash's compound syntax, substitutions `depth` deep."""
    inner = st.sampled_from(["kubectl get pods", "echo x", "cat f", "a | b"])
    if depth > 0:
        inner = st.deferred(lambda: _lines(depth - 1))
    substitution = inner.flatmap(
        lambda cmd: st.sampled_from(
            [f"$({cmd})", f'"$({cmd})"', f"<({cmd})", f">({cmd})", f"${{x:-$({cmd})}}",
             f'"a $({cmd}) b"', f"x$({cmd})y"]
        )
    ) | st.sampled_from(["`kubectl get pods`", '"`date`"', "$", '"$"'])
    word = st.lists(_plain | _quoted | _variable | substitution, min_size=1, max_size=2).map(
        "".join
    )
    redirect = st.builds(
        lambda op, target: op + target,
        st.sampled_from([">", ">>", ">|", "2>", "&>", "&>>", "<", "0<", "3<", "> ", "<<< "]),
        word,
    ) | st.sampled_from(["2>&1", ">&2", "<&3"])
    program = st.sampled_from(
        ["kubectl", "sudo", "bash -c", "env", "xargs", "echo", "export", "A=1", "B=$(x)",
         "!", "alias k=kubectl;", "k", "coproc", "select", "function", "time", "case", "in",
         "done", "then", "{", "}", "[[", "]]"]
    )
    command = st.builds(
        lambda first, rest: " ".join([first, *rest]),
        program | word,
        st.lists(word | redirect | st.sampled_from(["-n", "--", "get", "pods"]), max_size=4),
    )
    pipeline = st.lists(command, min_size=1, max_size=3).map(" | ".join)
    separator = st.sampled_from([" && ", " || ", "; ", " & ", "\n", ";"])
    listed = st.builds(
        lambda first, rest: first + "".join(s + p for s, p in rest),
        pipeline,
        st.lists(st.tuples(separator, pipeline), max_size=2),
    )
    compound = listed.flatmap(
        lambda body: st.sampled_from(
            [body, f"({body})", f"{{ {body}; }}", f"if {body}; then {body}; fi",
             f"while {body}; do {body}; done", f"until {body}; do {body}; done",
             f"for x in a $(b); do {body}; done", f"for x; do {body}; done",
             f"({body}) > out", f"{{ {body}; }} < in", f"! {body}",
             f"if a; then {body}; elif b; then c; else {body}; fi"]
        )
    )
    return compound.filter(lambda line: len(line) <= 400)  # bashlex is slow on long lines


@settings(max_examples=int(os.environ.get("TSBASH_EXAMPLES", "400")), deadline=None)
@given(_lines(1))
def test_generated_lines_read_as_bashlex_reads_them(line: str) -> None:
    _same_reading(line)


_SPICE = list("'\"$()`\\\n{}[]|;&<>#!*?~= \t") + ["$(", "<<<", "${", "2>&1", " do ", " fi"]


@settings(max_examples=int(os.environ.get("TSBASH_EXAMPLES", "400")), deadline=None)
@given(
    st.sampled_from([
        "for ns in dev $(cat l); do kubectl delete ns $ns; done",
        'kubectl delete pod "$(kubectl get pods | head -1)" > out 2>&1',
        "if kubectl get ns; then (echo a; b) | c; fi",
        "X=$(kubectl get secret s) env A=1 B=`x` kubectl get <<< \"$NS\"",
        "{ kubectl get pods; } && while a; do b & c; done",
    ]),
    st.lists(
        st.tuples(st.integers(0, 200), st.sampled_from(_SPICE), st.booleans()),
        min_size=1, max_size=5,
    ),
)
def test_mutated_lines_read_as_bashlex_reads_them(
    seed: str, edits: list[tuple[int, str, bool]]
) -> None:
    line = seed
    for position, text, delete in edits:
        at = position % (len(line) + 1)
        line = line[:at] + line[at + 1 :] if delete else line[:at] + text + line[at:]
    _same_reading(line)


def test_each_thread_reads_with_its_own_parser() -> None:
    # a tree-sitter parser is not for two threads at once (the MCP server decides in threads)
    from concurrent.futures import ThreadPoolExecutor

    lines = [f"for ns in $(cat l{i}); do kubectl get pods -n $ns; done" for i in range(200)]
    expected = [_parse(line, allow_fast=True, tree_sitter=False) for line in lines]
    with ThreadPoolExecutor(4) as pool:
        read = list(pool.map(lambda line: _parse(line, allow_fast=True, tree_sitter=True), lines))
    assert read == expected
