"""A line bash refuses is never allowed (issue 13, item 5), checked against the real bash.

bash runs the commands of earlier lines before it meets a syntax error, so "allowed" must
mean "understood". `guardctl.firewall.bashsyntax` refuses what bash refuses; the fuzz test
feeds random lines to a real `guardctl check --batch` process and asks `bash -n` about
every line it allowed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_check_fuzz import mutations

from guardctl.broker import forkcontrol
from guardctl.firewall.bashsyntax import syntax_error
from guardctl.firewall.parse import parse

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="these tests compare with the real bash")
# a generous bound per line, enforced as a timeout: a line takes milliseconds
LINE_SECONDS = 30.0


def bash_refuses(line: str) -> bool:
    """Whether `bash -n` refuses the line (exit status) or reports an error in it (a bad
    `[[ ]]` test is reported with status 0, and bash then runs nothing of the line)."""
    assert BASH is not None
    proc = subprocess.run(
        [BASH, "-n", "-c", "--", line], capture_output=True, timeout=LINE_SECONDS
    )
    errors = [
        text
        for text in proc.stderr.decode(errors="replace").splitlines()
        if "warning:" not in text  # an unterminated here-document: bash reads it to the end
    ]
    return proc.returncode != 0 or bool(errors)


# each class of line found allowed while bash refused it (10,000 random lines, before)
REFUSED = [
    "|",
    "&",
    ";",
    "|&",
    "(",
    "((",
    "))",
    "<<",
    ">&",
    "a >&",
    "a & ;",
    "a & & b",
    "a ;; b",
    "done",
    "fi",
    "in",
    "kubectl get pods; fi",
    "kubectl get pods; esac",
    "kubectl get pods | ! grep x",
    "{kubectl get pods;}",
    "kubectl get pods )",
    "[[ -f x ]]  kubectl get pods",
    "[[ -f x ]] d&&one&& kubectl get pods",
    "[[ a b ]] || kubectl get pods",
    "[[ -f ]] && kubectl get pods",
    "[[ x =~ (a ]]",
    "(( 1 )) kubectl get pods",
    "if kubectl get pods; then fi",
    "if kubectl get pods; then echo; fi; fi",
    "for x in a; do kubectl get pods",
    "case x in a) kubectl get pods;;",
    "f() kubectl get pods",
    "echo $(fi)",
    "echo \"$(kubectl get pods; fi)\"",
    "echo ${x:-$(fi)}",
    "echo ${a",
    "echo $[1",
    "echo $(($'1+2))",
    "echo $((1+`2))",
    "echo $$((1|+2))",
    "echo `kubectl get pods",
    "echo @(a)",
    "echo a=(b)",
    "a=(",
    "kubec[[ get pods; fi",
    "x=1 ${x:>(-y}",
    "kubectl get pods <(",
    "echo ${ kubectl get pods; ",
]
ACCEPTED = [
    "kubectl get pods -n dev | grep web && echo ok || echo no; date",
    "kubectl get pods &",
    "echo a |& cat",
    "if kubectl get pods; then echo a; elif b; then c; else d; fi",
    "for x in a b; do kubectl get pods -n $x; done",
    "for ((i=0; i<3; i++)); do echo $i; done",
    "while read l; do echo \"$l\"; done < f",
    "case $x in a|b) echo a;; (c) echo c;& *) ;; esac",
    "{ kubectl get pods; kubectl get ns; } > out 2>&1",
    "(cd /tmp && ls) | wc -l",
    "f() { kubectl get pods; }; f",
    "function f { :; }",
    "[[ -f x && ( a == b || ! -z $c ) ]] && echo y",
    "[[ $x =~ ^(a|b)$ ]] || echo no",
    "(( x = 1 + 2 )) && echo $((x * 2)) $[x]",
    "a=(1 2 3) b=x kubectl get pods",
    "echo ${x:-$(kubectl get ns)} `date` <(ls) >(cat)",
    "echo $'a\\'b' \"a ${b} $(c)\" 'd'",
    "cat <<EOF\nhi $(date)\nEOF\necho done",
    "cat <<'EOF' | kubectl apply -f -\nkind: Pod\nEOF\n",
    "kubectl get pods \\\n  -n dev # a comment",
    "time -p kubectl get pods",
    "! kubectl get pods",
    "coproc kubectl get pods",
    "echo ${ kubectl get pods; }",
    "exec 3<> /dev/null {fd}>&- 2>&1",
    "kubectl get pods -o jsonpath='{.items[*].metadata.name}'",
]


@pytest.mark.parametrize("line", REFUSED)
def test_a_line_bash_refuses_is_refused(line: str) -> None:
    assert bash_refuses(line)  # the example itself is right
    assert syntax_error(line) is not None
    assert any(p.startswith("bash would refuse the line") for p in parse(line).problems)


@pytest.mark.parametrize("line", ACCEPTED)
def test_a_line_bash_parses_is_read(line: str) -> None:
    assert not bash_refuses(line)
    assert syntax_error(line) is None


def test_bash_53_brace_substitution_is_read_as_commands() -> None:
    # bash 5.3 runs `${ cmd; }` and `${| cmd; }` in the shell: the kubectl in them is decided
    for line in (
        "echo ${ kubectl delete ns prod; }",
        "echo ${| kubectl delete ns prod; }",
        'echo "${ kubectl delete ns prod; }"',
        "echo ${x:-${ kubectl delete ns prod; }}",
        "cat <<EOF\n${ kubectl delete ns prod; }\nEOF\n",
    ):
        parsed = parse(line)
        assert ("kubectl", "delete", "ns", "prod") in [c.argv for c in parsed.commands], line
        assert parsed.problems == (), line


# ----------------------------------------------------------------------- the fuzz test

SEEDS = [
    "kubectl get pods -n kube-system",
    "kubectl get pods | grep web && echo ok; ls -l",
    "if true; then kubectl get pods; fi",
    "for i in a b; do echo $i; done",
    "case x in a) echo a;; esac",
    "kubectl get pods -o yaml > out.txt 2>&1",
    "(cd /tmp && ls) | wc -l",
    "{ echo a; echo b; } > f",
    "while read l; do echo \"$l\"; done < f",
    "f() { echo x; }; f",
    "echo $(kubectl get ns) `date` ${x:-y} $((1+2))",
    "cat <<EOF\nhi\nEOF\n",
    "[[ -f x ]] && echo y",
    "echo 'a b' \"c d\" e\\ f",
    "time kubectl get pods",
    "a=(1 2) kubectl get pods -l 'app in (a,b)'",
]
SPICE = [
    *"'\"$()`\\{}[]|;&<>#!*?~= \t-\n",
    "$(", "${", "<<", "&&", "||", ";;", "|&", ">&", "((", "))", "[[ ", " ]]", "$'",
    "fi", "done", "then", "do", "esac", "in", "case", "if", "else", "function ", "<(", "${ ",
]  # fmt: skip


soup = st.lists(
    st.sampled_from([*SPICE, "kubectl", "get", "pods", "echo", "a", " ", " "]), max_size=12
).map("".join)
lines = mutations(SEEDS, st.sampled_from(SPICE)) | soup | st.text(max_size=40)


class BatchChecker:
    """One real `guardctl check --batch` process, asked one line at a time."""

    def __init__(self, runtime: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guardctl", "check", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "GUARDCTL_HOME": "/nonexistent/guardctl-home",
                 "XDG_RUNTIME_DIR": str(runtime)},
        )  # fmt: skip
        self.buffer = b""
        self.asked = 0

    def decide(self, line: str) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.asked += 1
        self.proc.stdin.write(json.dumps({"id": self.asked, "line": line}).encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + LINE_SECONDS
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                pytest.fail(f"no answer within {LINE_SECONDS:g} s for {line!r}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail(f"guardctl check --batch ended at {line!r}: {self.stop()}")
            self.buffer += chunk
        answer, self.buffer = self.buffer.split(b"\n", 1)
        result: dict[str, object] = json.loads(answer)
        assert result["id"] == self.asked
        return result

    def stop(self) -> str:
        """End the process; what it wrote on stderr."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchChecker]:
    runtime = tmp_path_factory.mktemp("bash-syntax-run")
    runtime.chmod(0o700)
    started = BatchChecker(runtime)
    try:
        yield started
    finally:
        stderr = started.stop()
        forkcontrol.stop_all(runtime)
    assert "Traceback" not in stderr, stderr
    assert started.proc.returncode == 0, stderr


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_check_batch_never_allows_what_bash_refuses(checker: BatchChecker, line: str) -> None:
    result = checker.decide(line)
    assert result["decision"] in ("allow", "approve", "deny"), result
    if result["decision"] != "allow":
        return
    # bash -c cannot be given a NUL; guardctl never allows one
    assert "\0" not in line
    assert not bash_refuses(line), (line, result["reason"])
