"""guardctl.firewall.parse: every simple command of a shell line, flattened, wrappers unwrapped."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from guardctl.firewall.parse import MAX_DEPTH, MAX_LINE, _parse, parse
from guardctl.model import ParsedLine, SimpleCommand


def C(argv: str | tuple[str, ...], **fields: object) -> SimpleCommand:
    """A SimpleCommand; a str argv is split like a shell line (quotes group words)."""
    words = tuple(shlex.split(argv)) if isinstance(argv, str) else argv
    for name in ("dynamic", "tilde"):
        if name in fields:
            fields[name] = frozenset(fields[name])  # type: ignore[arg-type]
    return SimpleCommand(argv=words, **fields)  # type: ignore[arg-type]


def commands(line: str) -> list[SimpleCommand]:
    parsed = parse(line)
    assert parsed.problems == (), parsed.problems
    return list(parsed.commands)


# --------------------------------------------------------------------------- structure

STRUCTURE = [
    ("kubectl get pods", [C("kubectl get pods")]),
    ("a; b && c || d & e", [C("a"), C("b"), C("c"), C("d"), C("e")]),
    ("a\nb\n\nc", [C("a"), C("b"), C("c")]),
    ("a | b |& c", [C("a"), C("b", stdin_from="pipe"), C("c", stdin_from="pipe")]),
    ("! kubectl delete ns x", [C("kubectl delete ns x")]),
    ("(a; b) | c", [C("a"), C("b"), C("c", stdin_from="pipe")]),
    ("x | { a; b; }", [C("x"), C("a", stdin_from="pipe"), C("b", stdin_from="pipe")]),
    ("if a; then b; elif c; then d; else e; fi", [C(x) for x in "abcde"]),
    ("for i in 1 2; do kubectl get $i; done", [C("kubectl get $i", dynamic={2})]),
    ("while a; do b; done", [C("a"), C("b")]),
    ("until a; do b; done", [C("a"), C("b")]),
    ("case $x in a) kubectl;; b|c) ;; (d) e;& *) f;;& esac", [C("kubectl"), C("e"), C("f")]),
    (
        "case $(a) in\n  x)\n    b\n    ;;\n  y) c\nesac; d",
        [C("a", via=("$(...)",)), C("b"), C("c"), C("d")],
    ),
    ("case x in a) case y in b) c;; esac;; esac", [C("c")]),
    ("case x in esac", []),
    ("x | case y in *) z;; esac > f", [C("x"), C("z", stdin_from="pipe", writes=("f",))]),
    (
        "echo $(case x in a) b;; esac)",
        [C("echo '$(case x in a) b;; esac)'", dynamic={1}), C("b", via=("$(...)",))],
    ),
    ("[[ -f x ]] && kubectl get", [C("kubectl get")]),
    ("[[ $(a) == 'b c' && $x < 3 || ( -n $y ) ]]; b", [C("a", via=("$(...)",)), C("b")]),
    ("[[ $x =~ ^(a|b)$ ]] || c", [C("c")]),
    ("if [[ -n $(a) ]]; then b; fi", [C("a", via=("$(...)",)), C("b")]),
    ("(( i++ )) || kubectl get", [C("kubectl get")]),
    ("(( y = $(a) > 2 ))", [C("a", via=("$(...)",))]),
    ("((a) )", [C("a")]),
    ("echo [[ x", [C("echo [[ x")]),
    ("f() { kubectl get ns; }", [C("kubectl get ns", via=("function f",))]),
    ("function g { a; }; g", [C("a", via=("function g",)), C("g")]),
    ("echo hi # rm -rf /", [C("echo hi")]),
    ("", []),
    ("   \t ", []),
    ("# only a comment", []),
    # a line that only assigns still yields a command: the agent's shell keeps the variables
    ("X=1", [SimpleCommand(argv=(), assignments=(("X", "1"),))]),
    ("A=1 B=2", [SimpleCommand(argv=(), assignments=(("A", "1"), ("B", "2")))]),
]


@pytest.mark.parametrize(("line", "expected"), STRUCTURE)
def test_structure(line: str, expected: list[SimpleCommand]) -> None:
    assert commands(line) == expected


# --------------------------------------------------------------------------- substitutions

SUB = ("$(...)",)
SUBSTITUTIONS = [
    (
        "echo $(kubectl get ns)",
        [C("echo '$(kubectl get ns)'", dynamic={1}), C("kubectl get ns", via=SUB)],
    ),
    (
        "echo `kubectl get ns`",
        [C("echo '`kubectl get ns`'", dynamic={1}), C("kubectl get ns", via=SUB)],
    ),
    (
        'echo "a $(kubectl get x) b"',
        [C(("echo", '"a $(kubectl get x) b"'), dynamic={1}), C("kubectl get x", via=SUB)],
    ),
    (
        "X=$(kubectl get x)",
        [C((), assignments=(("X", "$(kubectl get x)"),)), C("kubectl get x", via=SUB)],
    ),
    ("X=$(a) b", [C("b", assignments=(("X", "$(a)"),)), C("a", via=SUB)]),
    ("echo > $(a)", [C("echo", writes=("$(a)",)), C("a", via=SUB)]),
    (
        "diff <(a) >(b)",
        [C("diff <(a) >(b)", dynamic={1, 2}), C("a", via=("<(...)",)), C("b", via=(">(...)",))],
    ),
    (
        "echo $(a $(b))",
        [
            C("echo '$(a $(b))'", dynamic={1}),
            C("a '$(b)'", dynamic={1}, via=SUB),
            C("b", via=SUB * 2),
        ],
    ),
    (
        "echo ${x:-$(kubectl get)}",
        [C("echo '${x:-$(kubectl get)}'", dynamic={1}), C("kubectl get", via=SUB)],
    ),
    ("echo $(( $(a) + 1 ))", [C(("echo", "$(( $(a) + 1 ))"), dynamic={1}), C("a", via=SUB)]),
    ("echo $((1+2))", [C("echo $((1+2))", dynamic={1})]),
    (
        "cat <<EOF\nname: $(kubectl get x)\nEOF",
        [
            C("cat", stdin_from="heredoc", stdin="name: $(kubectl get x)\n", stdin_dynamic=True),
            C("kubectl get x", via=SUB),
        ],
    ),
    (
        "cat <<'EOF'\nname: $(kubectl get x)\nEOF",
        [C("cat", stdin_from="heredoc", stdin="name: $(kubectl get x)\n")],
    ),
    ("a | b $(c)", [C("a"), C("b $(c)", dynamic={1}, stdin_from="pipe"), C("c", via=SUB)]),
]


@pytest.mark.parametrize(("line", "expected"), SUBSTITUTIONS)
def test_substitutions(line: str, expected: list[SimpleCommand]) -> None:
    assert commands(line) == expected


# --------------------------------------------------------------------------- redirects

REDIRECTS = [
    ("a > f", C("a", writes=("f",))),
    ("a >> f 2> g", C("a", writes=("f", "g"))),
    ("a &> f", C("a", writes=("f",))),
    ("a &>> f", C("a", writes=("f",))),
    ("a >| f", C("a", writes=("f",))),
    ("a >& f", C("a", writes=("f",))),
    ("a <> f", C("a", writes=("f",))),
    ("a 2>&1 >&2 <&3", C("a")),
    ("a > '/tmp/x y'", C("a", writes=("/tmp/x y",))),
    ("a > $F", C("a", writes=("$F",))),
    ("a < in.yaml", C("a", stdin_from="file", stdin="in.yaml")),
    ("a 3< other", C("a")),
    ("a <<< 'kind: Pod'", C("a", stdin_from="herestring", stdin="kind: Pod")),
    ("a <<< $X", C("a", stdin_from="herestring", stdin="$X", stdin_dynamic=True)),
    ("a <<EOF\nx\ny\nEOF", C("a", stdin_from="heredoc", stdin="x\ny\n")),
    ("a <<EOF\nEOF", C("a", stdin_from="heredoc", stdin="")),
    ("a <<-EOF\n\tx\n\tEOF", C("a", stdin_from="heredoc", stdin="x\n")),
    ("a <<'EOF'\n$x it's\nEOF", C("a", stdin_from="heredoc", stdin="$x it's\n")),
    ('a <<"EOF"\n$x\nEOF', C("a", stdin_from="heredoc", stdin="$x\n")),
    ("a <<\\EOF\nx\nEOF", C("a", stdin_from="heredoc", stdin="x\n")),
    ("a <<-'EOF'\n\tx\n\tEOF", C("a", stdin_from="heredoc", stdin="x\n")),
    ("a < f <<< s", C("a", stdin_from="herestring", stdin="s")),
]


@pytest.mark.parametrize(("line", "expected"), REDIRECTS)
def test_redirects(line: str, expected: SimpleCommand) -> None:
    assert commands(line) == [expected]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("x | a < f", C("a", stdin_from="file", stdin="f")),
        ("x | a <<< s", C("a", stdin_from="herestring", stdin="s")),
        ("x | a", C("a", stdin_from="pipe")),
    ],
)
def test_own_stdin_beats_the_pipe(line: str, expected: SimpleCommand) -> None:
    assert commands(line)[1] == expected


def test_heredocs_of_one_line_go_to_their_commands() -> None:
    line = "cat <<A | kubectl apply -f -; b <<B\nkind: Pod\nA\nsecond\nB\nc"
    assert commands(line) == [
        C("cat", stdin_from="heredoc", stdin="kind: Pod\n"),
        C("kubectl apply -f -", stdin_from="pipe"),
        C("b", stdin_from="heredoc", stdin="second\n"),
        C("c"),
    ]


def test_group_redirects_reach_inner_commands() -> None:
    assert commands("{ a; b; } > f < g") == [
        C("a", writes=("f",), stdin_from="file", stdin="g"),
        C("b", writes=("f",), stdin_from="file", stdin="g"),
    ]


# --------------------------------------------------------------------------- assignments

ASSIGNMENTS = [
    ("KUBECONFIG=/x kubectl get", C("kubectl get", assignments=(("KUBECONFIG", "/x"),))),
    ("A='a b' B=$C k", C("k", assignments=(("A", "a b"), ("B", "$C")))),
    ("A+=x k", C("k", assignments=(("A", "x"),))),
    ("export KUBECONFIG=/x", C("export KUBECONFIG=/x")),
    ("declare -x A=1", C("declare -x A=1")),
    ("readonly A", C("readonly A")),
    ("local A=1", C("local A=1")),
    ("unset KUBECONFIG", C("unset KUBECONFIG")),
    ("k A=1", C("k A=1")),
]


@pytest.mark.parametrize(("line", "expected"), ASSIGNMENTS)
def test_assignments(line: str, expected: SimpleCommand) -> None:
    assert commands(line) == [expected]


# --------------------------------------------------------------------------- wrappers

WRAPPERS = [
    ("sudo kubectl get", C("kubectl get", via=("sudo",))),
    ("sudo -u admin -E -- kubectl get", C("kubectl get", via=("sudo",))),
    ("sudo -uadmin -iE kubectl get", C("kubectl get", via=("sudo",))),
    ("sudo --user=admin --preserve-env=A kubectl", C("kubectl", via=("sudo",))),
    ("sudo K=1 kubectl", C("kubectl", via=("sudo",), assignments=(("K", "1"),))),
    ("sudo -l kubectl", C("sudo -l kubectl")),
    ("doas -u root kubectl get", C("kubectl get", via=("doas",))),
    ("env kubectl get", C("kubectl get", via=("env",))),
    (
        "env -i -u HOME -C /tmp A=1 B=2 kubectl",
        C("kubectl", via=("env",), assignments=(("A", "1"), ("B", "2"))),
    ),
    ("env - A=1 kubectl", C("kubectl", via=("env",), assignments=(("A", "1"),))),
    ("env -S 'kubectl get' pods", C("kubectl get pods", via=("env",))),
    ("env", C("env")),
    ("command kubectl get", C("kubectl get", via=("command",))),
    ("command -p kubectl get", C("kubectl get", via=("command",))),
    ("command -v kubectl", C("command -v kubectl")),
    ("builtin kubectl", C("kubectl", via=("builtin",))),
    ("exec -a name -c kubectl get", C("kubectl get", via=("exec",))),
    ("time kubectl get", C("kubectl get", via=("time",))),
    ("time -p kubectl get", C("kubectl get", via=("time",))),
    ("a; time kubectl get", None),
    ("timeout 5 kubectl get", C("kubectl get", via=("timeout",))),
    ("timeout -k 1 -s KILL --foreground 5s kubectl get", C("kubectl get", via=("timeout",))),
    ("nice kubectl", C("kubectl", via=("nice",))),
    ("nice -n 5 kubectl", C("kubectl", via=("nice",))),
    ("nice -5 kubectl", C("kubectl", via=("nice",))),
    ("nohup kubectl logs", C("kubectl logs", via=("nohup",))),
    ("stdbuf -oL -e 0 kubectl logs", C("kubectl logs", via=("stdbuf",))),
    ("setsid -f kubectl", C("kubectl", via=("setsid",))),
    ("flock /tmp/l kubectl get", C("kubectl get", via=("flock",))),
    ("flock -n -w 3 /tmp/l kubectl get", C("kubectl get", via=("flock",))),
    ("flock /tmp/l -c 'kubectl get'", C("kubectl get", via=("flock -c",))),
    ("chroot /srv kubectl get", C("kubectl get", via=("chroot",))),
    ("sudo -i kubectl get", C("kubectl get", via=("sudo",))),
    ("su -c 'kubectl get'", C("kubectl get", via=("su -c",))),
    ("su - admin -c 'kubectl get'", C("kubectl get", via=("su -c",))),
    ("su --command='kubectl get' admin", C("kubectl get", via=("su -c",))),
    ("su admin script.sh", C("su admin script.sh")),
    ("unbuffer kubectl get", C("kubectl get", via=("unbuffer",))),
    ("strace -f -o log kubectl get", C("kubectl get", via=("strace",))),
    ("caffeinate -i kubectl get", C("kubectl get", via=("caffeinate",))),
    ("/usr/bin/sudo /usr/bin/kubectl get", C("/usr/bin/kubectl get", via=("sudo",))),
    ("watch kubectl get pods", C("kubectl get pods", via=("watch",))),
    ("watch -n 2 -d kubectl get pods", C("kubectl get pods", via=("watch",))),
    ("watch 'kubectl get pods | head'", None),
    ("watch -x kubectl get", C("kubectl get", via=("watch",))),
    ("xargs kubectl delete pod", C("kubectl delete pod", via=("xargs",), open_tail=True)),
    ("xargs -0 -r -n 1 -P 4 kubectl delete", C("kubectl delete", via=("xargs",), open_tail=True)),
    ("xargs", C("echo", via=("xargs",), open_tail=True)),
    ("xargs -I R kubectl delete ns R", C("kubectl delete ns R", via=("xargs",), dynamic={3})),
    ("xargs -I{} kubectl delete ns x-{}", C("kubectl delete ns x-{}", via=("xargs",), dynamic={3})),
    ("xargs -i kubectl delete ns {}", C("kubectl delete ns {}", via=("xargs",), dynamic={3})),
    (
        "sudo sudo env A=1 nice kubectl",
        C("kubectl", via=("sudo", "sudo", "env", "nice"), assignments=(("A", "1"),)),
    ),
]


@pytest.mark.parametrize(("line", "expected"), [w for w in WRAPPERS if w[1] is not None])
def test_wrappers(line: str, expected: SimpleCommand) -> None:
    assert commands(line) == [expected]


def test_wrappers_keep_assignments_and_redirects() -> None:
    assert commands("K=1 sudo kubectl apply -f - < m.yaml > out") == [
        C(
            "kubectl apply -f -",
            assignments=(("K", "1"),),
            stdin_from="file",
            stdin="m.yaml",
            writes=("out",),
            via=("sudo",),
        ),
    ]


def test_time_after_a_separator() -> None:
    assert commands("a; time kubectl get") == [C("a"), C("kubectl get", via=("time",))]


def test_watch_runs_its_words_as_a_line() -> None:
    assert commands("watch 'kubectl get pods | head'") == [
        C("kubectl get pods", via=("watch",)),
        C("head", via=("watch",), stdin_from="pipe"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "find . -name '*.yaml' -exec kubectl apply -f {} \\;",
            [
                C("find . -name '*.yaml' -exec kubectl apply -f {} ;"),
                C("kubectl apply -f {}", dynamic={3}, via=("find -exec",)),
            ],
        ),
        (
            "find . -execdir rm {} + -ok a ';'",
            [
                C("find . -execdir rm {} + -ok a ;"),
                C("rm {}", dynamic={1}, via=("find -execdir",)),
                C("a", via=("find -ok",)),
            ],
        ),
        ("find . -delete", [C("find . -delete")]),
    ],
)
def test_find_exec(line: str, expected: list[SimpleCommand]) -> None:
    assert commands(line) == expected


# --------------------------------------------------------------------------- nested shells

NESTED = [
    ("bash -c 'kubectl get pods'", [C("kubectl get pods", via=("bash -c",))]),
    (
        "sh -c 'a; b | c'",
        [C("a", via=("sh -c",)), C("b", via=("sh -c",)), C("c", via=("sh -c",), stdin_from="pipe")],
    ),
    ("bash -lc 'kubectl get'", [C("kubectl get", via=("bash -c",))]),
    ("bash -ec 'kubectl get'", [C("kubectl get", via=("bash -c",))]),
    ("zsh -xc 'kubectl get'", [C("kubectl get", via=("zsh -c",))]),
    ("bash --login -c 'kubectl get'", [C("kubectl get", via=("bash -c",))]),
    ("bash -o pipefail +e -c 'kubectl get'", [C("kubectl get", via=("bash -c",))]),
    ("dash -c 'kubectl get' name arg", [C("kubectl get", via=("dash -c",))]),
    ("sudo bash -c 'kubectl get'", [C("kubectl get", via=("sudo", "bash -c"))]),
    (
        "bash -c 'sudo -u x sh -c \"kubectl get\"'",
        [C("kubectl get", via=("bash -c", "sudo", "sh -c"))],
    ),
    (
        "K=1 bash -c 'kubectl get' > f",
        [C("kubectl get", via=("bash -c",), assignments=(("K", "1"),), writes=("f",))],
    ),
    (
        "bash -c 'kubectl apply -f -' < m",
        [C("kubectl apply -f -", via=("bash -c",), stdin_from="file", stdin="m")],
    ),
    ("bash <<EOF\nkubectl get pods\nEOF", [C("kubectl get pods", via=("bash <<",))]),
    ("sudo -s <<EOF\nkubectl get pods\nEOF", [C("kubectl get pods", via=("sudo <<",))]),
    ("bash -s <<'EOF'\nkubectl get $x\nEOF", [C("kubectl get $x", via=("bash <<",), dynamic={2})]),
    ("sh <<< 'kubectl get'", [C("kubectl get", via=("sh <<",))]),
    ("bash script.sh", [C("bash script.sh")]),
    ("bash < script.sh", [C("bash", stdin_from="file", stdin="script.sh")]),
    ("source ./env.sh", [C("source ./env.sh")]),
    (". ./env.sh", [C(". ./env.sh")]),
    ("eval kubectl get pods", [C("kubectl get pods", via=("eval",))]),
    (
        "eval 'kubectl get | head'",
        [C("kubectl get", via=("eval",)), C("head", via=("eval",), stdin_from="pipe")],
    ),
    ("eval \"kubectl get\" '&&' rm x", [C("kubectl get", via=("eval",)), C("rm x", via=("eval",))]),
    (
        "xargs sh -c 'kubectl delete ns \"$0\"'",
        [C(("kubectl", "delete", "ns", '"$0"'), dynamic={3}, via=("xargs", "sh -c"))],
    ),
]


@pytest.mark.parametrize(("line", "expected"), NESTED)
def test_nested_shells(line: str, expected: list[SimpleCommand]) -> None:
    assert commands(line) == expected


# --------------------------------------------------------------------------- quoting

QUOTING = [
    ('kube""ctl get', C("kubectl get")),
    ("k\\ubectl get", C("kubectl get")),
    ("'kubectl' get", C("kubectl get")),
    ("kube'ctl' \"get\"", C("kubectl get")),
    ("$'kube\\x63tl' get", C("kubectl get")),
    ("$'\\u006bubectl' get", C("kubectl get")),
    ("$'\\U0000006bubectl' get", C("kubectl get")),
    ("$'\\153ubectl' get", C("kubectl get")),
    ("$'a\\tb\\n' x", C(("a\tb\n", "x"))),
    ("$'it\\'s' x", C(("it's", "x"))),
    ("$'kube\\0ctl' x", C("kube x")),
    ('$"kubectl" get', C("kubectl get")),
    ("kubectl get 'a b' \"c d\"", C(("kubectl", "get", "a b", "c d"))),
    ("kubectl get ''", C(("kubectl", "get", ""))),
    ("kubectl \\\nget", C("kubectl get")),
    ("kubectl get -n $NS", C("kubectl get -n $NS", dynamic={3})),
    ('kubectl get -n "$NS"', C(("kubectl", "get", "-n", '"$NS"'), dynamic={3})),
    ("kubectl get -n ${NS:-x}", C("kubectl get -n ${NS:-x}", dynamic={3})),
    ("kubectl get -n '$NS'", C("kubectl get -n $NS")),
    ("kubectl get -n \\$NS", C("kubectl get -n $NS")),
    ("kubectl get $", C("kubectl get $")),
    ("kubectl get x*", C("kubectl get x*")),
    ("kubectl get ~/x", C("kubectl get ~/x", tilde={2})),
    ("~/bin/kubectl get", C("~/bin/kubectl get", tilde={0})),
    # bash expands a `~` only when nothing up to the first slash is quoted (`~/'z'` is home)
    ("kubectl get '~/x' \"~\"/y ~'/z' --f=~/x ~/'z'",
     C("kubectl get ~/x ~/y ~/z --f=~/x ~/z", tilde={6})),
    ("kubectl get -o jsonpath={.items[*]}", C("kubectl get -o jsonpath={.items[*]}")),
    ("$K get pods", C("$K get pods", dynamic={0})),
    ("$(which kubectl) delete ns x", None),
    ("kube* delete ns x", C("kube* delete ns x", dynamic={0})),
    ("kub?ctl x", C("kub?ctl x", dynamic={0})),
    ("[k]ubectl x", C("[k]ubectl x", dynamic={0})),
    ("{kubectl,x} delete", C("{kubectl,x} delete", dynamic={0})),
    ("'kube*' x", C("kube* x")),
]


@pytest.mark.parametrize(("line", "expected"), [q for q in QUOTING if q[1] is not None])
def test_quoting(line: str, expected: SimpleCommand) -> None:
    assert commands(line) == [expected]


def test_dynamic_program_from_substitution() -> None:
    assert commands("$(which kubectl) delete ns x") == [
        C("'$(which kubectl)' delete ns x", dynamic={0}),
        C("which kubectl", via=SUB),
    ]


# --------------------------------------------------------------------------- aliases, functions


def test_alias_defined_earlier_is_expanded() -> None:
    assert commands("alias k=kubectl; k delete ns x") == [
        C("alias k=kubectl"),
        C("kubectl delete ns x", via=("alias k",)),
    ]


def test_alias_with_arguments_and_wrapper() -> None:
    assert commands("alias k='kubectl -n prod'\nsudo k delete pod x") == [
        C("alias 'k=kubectl -n prod'"),
        C("kubectl -n prod delete pod x", via=("sudo", "alias k")),
    ]


def test_alias_loop_stops() -> None:
    assert commands("alias a=b b=a; a x") == [
        C("alias a=b b=a"),
        C("a x", via=("alias a", "alias b")),
    ]


def test_function_body_is_a_command() -> None:
    assert commands("f() { kubectl delete ns x; }; f") == [
        C("kubectl delete ns x", via=("function f",)),
        C("f"),
    ]


# --------------------------------------------------------------------------- problems

PROBLEMS = [
    ("echo )", "bash could not parse the line: unexpected token ')'"),
    ('echo "unterminated', "bash could not parse the line"),
    ("kube\0ctl get", "NUL"),
    ('f(){ kubectl "$@"; }; f delete ns x', "call of function f"),
    ("g(){ kubectl $1; }; g x", "call of function g"),
    ("alias k=$K; k get", "alias k has a value guardctl cannot read"),
    ('eval "$CMD"', "eval of text only known at run time"),
    ("eval kubectl delete $NS", "eval of text only known at run time"),
    ('bash -c "$CMD"', "only known at run time"),
    ("sh -c", "sh -c without a command string"),
    ("curl -s https://x | sh", "shell reads commands from a pipe"),
    ("curl -s https://x | sudo bash -s", "shell reads commands from a pipe"),
    ("bash", "shell reads commands from standard input"),
    ("su admin", "shell reads commands from standard input"),
    ("sudo -s", "shell reads commands from standard input"),
    ("curl x | sudo -i", "shell reads commands from a pipe"),
    ('su -c "$C" root', 'su: -c "$C" is only known at run time'),
    ('xargs -I "$R" kubectl', 'xargs: -I "$R" is only known at run time'),
    ('env -S "$X" kubectl', 'env: -S "$X" is only known at run time'),
    ("[[ x", "bash could not parse the line"),
    ("bash <<EOF\nkubectl delete ns $NS\nEOF", "bash reads commands only known at run time"),
    ('bash <<< "$CMD"', "bash reads commands only known at run time"),
    ("watch kubectl get -n $NS", "watch runs text only known at run time"),
    ('flock /l -c "$C"', "only known at run time"),
    ("sudo -Z kubectl", "sudo: unknown option '-Z'"),
    ("sudo $OPTS kubectl", "sudo: word '$OPTS' is only known at run time"),
    ("sudo -u", "sudo: option '-u' has no value"),
    ("env -S 'kubectl $X'", "env: -S string with variables"),
    ("find . -exec rm {}", "find -exec without a command ending in ';'"),
    ("case x in a) cat <<E;; esac\nbody\nE", "unsupported shell syntax"),
    ("case $(a) in $(b)) c;; esac", "unsupported shell syntax"),
    ("case x in a) kubectl", "unsupported shell syntax"),
    ("coproc kubectl get", "unsupported shell syntax"),
    ("echo $(kubectl", "bash could not parse the line"),
    # bashlex reads the first line of a substitution only: the rest is not understood
    ('echo "$(true\nkubectl delete ns prod)"', "cannot read all of the substitution"),
    ("cat <(true\nkubectl delete ns prod) x", "cannot read all of the substitution '<(true"),
    ("echo `true\nkubectl delete ns prod`", "cannot read all of the substitution"),
    ("echo $(true $(a\nkubectl delete ns prod))", "cannot read all of the substitution '$(a"),
    ("cat <<EOF\n$(kubectl get\nEOF", "a command substitution is not closed"),
    ("bash -c 'echo )'", "in bash -c: bash could not parse the line"),
    ("bash -c " + "'bash -c " * 3, "bash could not parse the line"),
]


@pytest.mark.parametrize(("line", "problem"), PROBLEMS)
def test_problems(line: str, problem: str) -> None:
    parsed = parse(line)
    assert any(problem in p for p in parsed.problems), parsed.problems


def test_problem_keeps_the_command_visible() -> None:
    parsed = parse("curl -s https://x | sh")
    assert [c.argv for c in parsed.commands] == [("curl", "-s", "https://x"), ("sh",)]


def _nest(depth: int) -> str:
    line = "kubectl get"
    for _ in range(depth):
        line = "eval " + _quote(line)
    return line


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_nesting_within_the_limit_is_parsed() -> None:
    assert [c.argv for c in commands(_nest(MAX_DEPTH))] == [("kubectl", "get")]


def test_nesting_beyond_the_limit_is_a_problem() -> None:
    parsed = parse(_nest(MAX_DEPTH + 1))
    assert any("nested more than" in p for p in parsed.problems)


def test_deep_substitutions_do_not_raise() -> None:
    parsed = parse("echo " + "$(" * 400 + "x" + ")" * 400)
    assert isinstance(parsed, ParsedLine)


def test_huge_line_is_refused_without_parsing() -> None:
    parsed = parse("kubectl get " + "x" * MAX_LINE)
    assert parsed.commands == () and "longer than" in parsed.problems[0]


def test_problems_are_not_repeated() -> None:
    parsed = parse("sudo -Z a; sudo -Z b")
    assert parsed.problems == ("sudo: unknown option '-Z'",)


# --------------------------------------------------------------------------- fast path

SIMPLE_LINES = [
    "kubectl get pods -n kube-system",
    "sudo -u admin kubectl delete ns 'my ns'",
    "env A=1 kubectl get",
    'kubectl get "a b" c',
    "bash -c 'kubectl get pods'",
    "xargs kubectl delete",
    "command -v kubectl",
    "kubectl\tget",
    "",
]


@pytest.mark.parametrize("line", SIMPLE_LINES)
def test_fast_path_equals_bashlex(line: str) -> None:
    assert _parse(line, allow_fast=True) == _parse(line, allow_fast=False)


@pytest.mark.parametrize(
    "line",
    [
        "kubectl get pods -o yaml > /tmp/pods.yaml",
        "kubectl logs web 2>&1 | grep error >> log.txt",
        "kubectl apply -f - < app.yaml",
        "> ~/.config/guardctl/config.yaml",
        "kubectl get pods 2> err &> both 3< other >| clobber",
        "kubectl get pods > 'a b' -n dev < in 0< in2",
    ],
)
def test_redirects_take_the_fast_path_as_bashlex_reads_them(line: str) -> None:
    from guardctl.firewall.parse import _fast_commands

    assert _fast_commands(line) is not None
    assert _parse(line, allow_fast=True) == _parse(line, allow_fast=False)


def test_fast_path_does_not_import_bashlex() -> None:
    code = (
        "import sys; from guardctl.firewall.parse import parse; "
        "p = parse(\"sudo kubectl get pods -n 'a b'\"); "
        "assert p.commands[0].argv == ('kubectl', 'get', 'pods', '-n', 'a b'), p; "
        "print('bashlex' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("line", ["if x", "time kubectl", "a=1 b", "kubectl\rget", "a\u00a0b"])
def test_lines_the_fast_path_must_leave_to_bashlex(line: str) -> None:
    from guardctl.firewall.parse import _simple_words

    assert _simple_words(line) is None


def test_without_tree_sitter_bashlex_reads_a_syntax_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # tree-sitter-bash is not installed where it has no wheels: bashlex reads such a line
    from guardctl.firewall import tsbash

    monkeypatch.setattr(tsbash, "_language", lambda: None)
    line = "for ns in $(cat list); do kubectl delete ns $ns; done"
    assert tsbash.read(line) is None
    assert [c.argv for c in parse(line).commands] == [
        ("cat", "list"),
        ("kubectl", "delete", "ns", "$ns"),
    ]
