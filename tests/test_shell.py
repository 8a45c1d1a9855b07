"""`guardctl sh -c LINE`: the whole line decided first, every kubectl checked again at run time."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guardctl.agents.shell import approved_commands, decide_line, run_shell
from guardctl.app import Checker
from guardctl.approvals import grants
from guardctl.devserver import DevServer
from guardctl.env import Environment
from guardctl.model import Action, Decision
from guardctl.recording import audit, verify

KUBECTL = shutil.which("kubectl")


@dataclass(frozen=True)
class Outcome:
    approved: bool
    reason: str = ""


class FakeApprover:
    """Answers every request the same way and remembers what it was asked."""

    def __init__(self, approved: bool, reason: str = "") -> None:
        self.outcome = Outcome(approved, reason)
        self.asked: list[tuple[Decision, str]] = []

    def __call__(self, env: Environment, decision: Decision, line: str) -> Outcome:
        self.asked.append((decision, line))
        return self.outcome


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(
    line: str,
    tmp_path: Path,
    approver: FakeApprover | None = None,
    environ: dict[str, str] | None = None,
) -> Run:
    """run_shell with real file streams (bash writes to their descriptors)."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(os.devnull) as stdin, out.open("w") as stdout, err.open("w") as stderr:
        env = Environment(
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            environ=environ if environ is not None else dict(os.environ),
        )
        code = run_shell(env, line, approve=approver or FakeApprover(False, "no human here"))
    return Run(code, out.read_text(), err.read_text())


# --------------------------------------------------------------------------- deciding


@pytest.fixture(scope="module")
def checker() -> Iterator[Checker]:
    yield Checker.load(Environment(environ=dict(os.environ)))


@pytest.mark.parametrize(
    ("line", "action", "rule"),
    [
        ("kubectl get pods -n dev | grep web", Action.ALLOW, None),
        ("echo $PATH; echo ${PATH}", Action.ALLOW, None),
        ("env FOO=1 kubectl get pods -n dev", Action.ALLOW, None),
        ("ls ~/src/kubectl/", Action.ALLOW, None),
        ("K=kubectl; $K delete ns prod", Action.APPROVE, None),
        ("for v in delete; do kubectl $v ns prod; done", Action.APPROVE, None),
        ('eval "kubectl delete ns prod"', Action.DENY, "delete-namespace"),
        ("echo x > marker; kubectl delete ns prod", Action.DENY, "delete-namespace"),
        ("/usr/bin/kubectl get pods", Action.DENY, "kubectl-by-path"),
        ("./kubectl get pods", Action.DENY, "kubectl-by-path"),
        ("/usr/bin/kube''ctl get pods", Action.DENY, "kubectl-by-path"),
        ("/usr/bin/k*ctl get pods", Action.DENY, "kubectl-by-path"),
        ("K=/usr/bin/kubectl; $K get pods", Action.DENY, "kubectl-by-path"),
        ('bash -c "/usr/bin/kubectl get pods"', Action.DENY, "kubectl-by-path"),
        ("find . -maxdepth 0 -exec /usr/bin/kubectl get pods \\;", Action.DENY, "kubectl-by-path"),
        ("export PATH=/usr/bin; kubectl get pods", Action.DENY, "path-change"),
        ("PATH=/usr/bin kubectl get pods", Action.DENY, "path-change"),
        ("env -u PATH kubectl get pods", Action.DENY, "path-change"),
        ("command -p kubectl get pods", Action.DENY, "command-default-path"),
        ("env -i kubectl get pods", Action.DENY, "env-cleared"),
        ("hash -p /tmp/k kubectl; kubectl get pods", Action.DENY, "hash-table"),
        ("sudo kubectl get pods", Action.DENY, "kubectl-under-sudo"),
        ("su -c 'kubectl get pods' root", Action.DENY, "kubectl-under-sudo"),
    ],
)
def test_decide_line(checker: Checker, line: str, action: Action, rule: str | None) -> None:
    decision = decide_line(checker, line)
    assert decision.action is action, decision.reason
    if rule is not None:
        assert decision.reason.startswith(f"denied by rule {rule}:")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "ls; kubectl get secret app-secrets -n dev -o yaml",
            [(("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"), {"read-secret-values"})],
        ),
        ("for v in delete; do kubectl $v ns prod; done", []),  # words only known at run time
        ("kubectl get pods -n dev", []),
    ],
)
def test_approved_commands(
    checker: Checker, line: str, expected: list[tuple[tuple[str, ...], set[str]]]
) -> None:
    got = [(a.argv, set(a.rule_ids)) for a in approved_commands(decide_line(checker, line))]
    assert got == expected


# --------------------------------------------------------------------------- running


def test_allowed_line_passes_output_and_exit_code_through(tmp_path: Path) -> None:
    result = run("echo out; echo err >&2; exit 7", tmp_path)
    assert (result.code, result.out, result.err) == (7, "out\n", "err\n")


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("echo x > {marker}; kubectl delete ns prod", "delete-namespace"),
        ("echo x > {marker}; /usr/bin/kubectl get pods", "kubectl-by-path"),
        ("echo x > {marker}; export PATH=/usr/bin", "path-change"),
    ],
)
def test_denied_line_runs_none_of_its_parts(tmp_path: Path, line: str, rule: str) -> None:
    marker = tmp_path / "marker"
    approver = FakeApprover(True)
    result = run(line.format(marker=marker), tmp_path, approver)
    assert result.code == 11
    assert not marker.exists()
    assert f"denied by rule {rule}" in result.err and "Nothing was run" in result.err
    assert approver.asked == []


def test_declined_line_runs_none_of_its_parts(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    line = f"echo x > {marker}; kubectl get secret app-secrets -n dev -o yaml"
    approver = FakeApprover(False, "not today")
    result = run(line, tmp_path, approver)
    assert result.code == 12 and not marker.exists()
    assert "not today" in result.err
    assert [asked_line for _, asked_line in approver.asked] == [line]


def test_child_gets_the_shim_first_and_one_session(tmp_path: Path) -> None:
    line = 'echo "$GUARDCTL_SESSION"; command -v kubectl; echo "${GUARDCTL_PREAPPROVED:-none}"'
    kept = run(
        line,
        tmp_path,
        environ={**os.environ, "GUARDCTL_SESSION": "keep-me", grants.TOKEN_VARIABLE: "forged"},
    )
    session, shim_path, token = kept.out.splitlines()
    assert (kept.code, session, token) == (0, "keep-me", "none")  # a forged token is dropped
    assert Path(shim_path).name == "kubectl" and Path(shim_path).parent.name.startswith(
        "guardctl-sh-"
    )
    assert not Path(shim_path).exists()  # the private folder is gone after the line
    fresh = run(line, tmp_path).out.splitlines()[0]
    assert fresh and fresh != "keep-me"


PROBE = """\
import json, os, sys
from guardctl.env import Environment
from guardctl.approvals.grants import TOKEN_VARIABLE, consume

env = Environment(environ=dict(os.environ))
token, argv = os.environ[TOKEN_VARIABLE], json.loads(sys.argv[1])
print(consume(env, token, argv, ["other-rule"]), consume(env, token, argv, ["read-secret-values"]),
      consume(env, token, argv, ["read-secret-values"]))
"""


def test_one_approval_covers_the_approved_kubectl_once(tmp_path: Path) -> None:
    argv = ["get", "secret", "app-secrets", "-n", "dev", "-o", "yaml"]
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    # the probe stands in for the run path, which consumes the grant while the line runs
    line = (
        f"{sys.executable} {probe} '{json.dumps(argv)}'; "
        "true || kubectl get secret app-secrets -n dev -o yaml"
    )
    approver = FakeApprover(True)
    result = run(line, tmp_path, approver)
    assert result.code == 0, result.err
    assert result.out.split() == ["False", "True", "False"]
    assert len(approver.asked) == 1
    assert list((Path(os.environ["GUARDCTL_HOME"]) / grants.FOLDER).iterdir()) == []


# --------------------------------------------------------------------------- against the devserver

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@needs_kubectl
@pytest.mark.parametrize(
    "line",
    ["K=kubectl; $K delete ns prod", "for v in delete; do kubectl $v ns prod; done"],
)
def test_run_time_check_catches_what_the_static_check_cannot_see(
    agent_env: dict[str, str], devserver: DevServer, tmp_path: Path, line: str
) -> None:
    devserver.clear_requests()
    approver = FakeApprover(True)  # a human let the not-understood line run
    result = run(line, tmp_path, approver, environ=agent_env)
    assert result.code == 11, result.err
    assert "delete-namespace" in result.err
    assert devserver.requests == []
    assert len(approver.asked) == 1


@needs_kubectl
def test_static_deny_needs_no_run(
    agent_env: dict[str, str], devserver: DevServer, tmp_path: Path
) -> None:
    devserver.clear_requests()
    result = run('eval "kubectl delete ns prod"', tmp_path, environ=agent_env)
    assert result.code == 11 and devserver.requests == []


@needs_kubectl
def test_allowed_kubectl_runs_and_is_recorded_in_one_session(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    environ = {**agent_env, "GUARDCTL_SESSION": "shell-e2e-1"}
    line = "kubectl get pods -n dev | grep web; kubectl get pod nope -n dev"
    result = run(line, tmp_path, environ=environ)
    assert result.code == 1  # the last kubectl's own exit code
    assert "web-7d4b9c8f6d-x2k9p" in result.out
    assert 'pods "nope" not found' in result.err
    log = audit.log_path(Path(agent_env["GUARDCTL_HOME"]))
    sessions = [
        r["session"]
        for _, r in verify.records(log)
        if r.get("status") == "started" and r["session"] == "shell-e2e-1"
    ]
    assert len(sessions) == 2
