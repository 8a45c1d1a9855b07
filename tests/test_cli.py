"""The command line: exit codes, messages, JSON shapes, rule commands (through main())."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardctl.main import main
from guardctl.status import ExitStatus


def run(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    stdin: str = "",
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[int, str, str]:
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("line", "code", "first"),
    [
        ("kubectl get pods -n dev", ExitStatus.OK, "allow:"),
        (
            "kubectl exec -it web -- sh",
            ExitStatus.NEEDS_APPROVAL,
            "approve: needs approval by rule exec-into-container",
        ),
        ("sudo kubectl delete ns prod", ExitStatus.DENIED, "deny: denied by rule delete-namespace"),
        (
            "kubectl get pods 'oops",
            ExitStatus.NEEDS_APPROVAL,
            "approve: guardctl could not fully understand",
        ),
        ("", ExitStatus.OK, "allow:"),
    ],
)
def test_check_exit_codes(
    line: str, code: int, first: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, _ = run(["check", line], capsys)
    assert got == code
    assert out.startswith(first)


def test_check_json_has_the_contract_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "--json", "kubectl get pods && kubectl delete ns prod"], capsys)
    assert code == ExitStatus.DENIED
    result = json.loads(out)
    assert result["decision"] == "deny"
    assert isinstance(result["reason"], str) and "delete-namespace" in result["reason"]
    assert [c["argv"] for c in result["commands"]] == [
        ["kubectl", "get", "pods"],
        ["kubectl", "delete", "ns", "prod"],
    ]
    assert [c["decision"] for c in result["commands"]] == ["allow", "deny"]
    rule = result["commands"][1]["rules"][0]
    assert set(rule) == {"id", "action", "reason"} and rule["id"] == "delete-namespace"


def test_batch_copies_keys_and_keeps_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = [
        {"id": 1, "line": "kubectl get pods", "agent": "a"},
        {"id": 2, "line": "kubectl delete ns prod"},
        "not json",
        {"id": 4, "lines": "kubectl get pods"},
        {"id": 5, "line": "kubectl get secret x -o yaml"},
    ]
    stdin = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in requests) + "\n"
    code, out, _ = run(["check", "--batch"], capsys, stdin, monkeypatch)
    assert code == ExitStatus.OK
    results = [json.loads(line) for line in out.splitlines()]
    assert [r.get("id") for r in results] == [1, 2, None, 4, 5]
    assert [r["decision"] for r in results] == ["allow", "deny", "deny", "deny", "approve"]
    assert results[0]["agent"] == "a"
    assert "not a JSON object" in results[2]["reason"]


def test_check_needs_a_line_or_batch(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check"], capsys)
    assert code == ExitStatus.USAGE
    assert "give either a LINE or --batch" in err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check", "--nope", "x"], capsys)
    assert code == ExitStatus.USAGE
    assert "--nope" in err


def test_broken_rules_file_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - id: x\n    action: deny\n    reason: r\n    match: {verbz: [get]}\n"
    )
    code, _, err = run(["check", "--rules", str(bad), "kubectl get pods"], capsys)
    assert code == ExitStatus.USAGE
    assert err.startswith(f"guardctl: {bad}:5: rule 'x': 'match': unknown key 'verbz'")
    assert "Traceback" not in err


def test_guardctl_rules_env_adds_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "rules:\n  - id: no-logs\n    action: deny\n    reason: No logs.\n    match: logs\n"
    )
    monkeypatch.setenv("GUARDCTL_RULES", f"{tmp_path / 'missing-is-not-ok'}:{extra}")
    code, _, err = run(["check", "kubectl logs web"], capsys)
    assert code == ExitStatus.USAGE and "missing-is-not-ok" in err
    monkeypatch.setenv("GUARDCTL_RULES", str(extra))
    code, out, _ = run(["check", "kubectl logs web"], capsys)
    assert code == ExitStatus.DENIED and "no-logs" in out


def test_rules_list_shows_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["rules", "list"], capsys)
    assert code == ExitStatus.OK
    assert any(line.startswith("delete-namespace") and "deny" in line for line in out.splitlines())
    assert "rules from 1 files" in err


def test_rules_explain_names_the_words(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["rules", "explain", "kubectl -n x delete namespaces/prod"], capsys)
    assert code == ExitStatus.OK
    assert "reads as: verb=delete resource=namespaces/prod" in out
    assert "rule delete-namespace (deny) on verb=delete resource=namespaces" in out


def test_rules_lint_runs_the_bundled_cases(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["rules", "lint"], capsys)
    assert code == ExitStatus.OK
    assert "cases, 0 failed" in out


def test_rules_lint_reports_failing_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.yaml").write_text(
        "rules:\n  - id: no-top\n    action: deny\n    reason: No top.\n    match: top\n"
    )
    (tmp_path / "mine.cases").write_text(
        "# deny: no-top\nkubectl top pods\n# allow:\nkubectl top node\n"
    )
    code, out, err = run(["rules", "lint", str(tmp_path / "mine.yaml")], capsys)
    assert code == ExitStatus.ERROR
    assert "2 cases, 1 failed" in out
    assert "'kubectl top node': expected allow, got deny" in err


def test_rules_test_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "- line: kubectl delete ns prod\n  expect: deny\n  rule: delete-namespace\n"
        "- line: kubectl get pods\n  expect: allow\n"
        "- line: kubectl exec -it x -- sh\n  expect: allow\n"
    )
    code, out, err = run(["rules", "test", str(cases)], capsys)
    assert code == ExitStatus.ERROR
    assert out.strip() == "2 passed, 1 failed"
    assert "case #3: 'kubectl exec -it x -- sh': expected allow, got approve" in err


def test_rules_test_bad_file_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("- line: kubectl get pods\n  expect: maybe\n")
    code, _, err = run(["rules", "test", str(cases)], capsys)
    assert code == ExitStatus.USAGE
    assert "case #1: expected decision must be allow, approve or deny, not 'maybe'" in err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("guardctl, version ")
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "check" in out and "rules" in out


def test_denied_kubectl_run_exits_11_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["delete", "ns", "prod"], capsys)
    assert code == ExitStatus.DENIED
    assert "delete-namespace" in err


def test_real_process_exit_code_and_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", "check", "kubectl delete ns prod"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == ExitStatus.DENIED
    assert proc.stdout.startswith("deny:")
    assert proc.stderr == ""


def test_every_cli_command_is_routed_to_click() -> None:
    # main() decides "kubectl or guardctl?" from the data list, without importing click
    from guardctl.cli import cli
    from guardctl.firewall.normalize import guardctl_commands

    assert set(cli.commands) <= guardctl_commands()


def test_kubectl_path_does_not_import_click() -> None:
    code = (
        "import sys; from guardctl.main import main; main(['delete', 'ns', 'prod']); "
        "print('click' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


PLAIN_CHECKS = [
    ["check", "kubectl get pods -n dev"],
    ["check", "--json", "kubectl delete ns prod"],
    ["check", "kubectl exec -it web -- sh", "--json"],
    ["check", "--", "-n dev get pods"],
    ["check", "--json", "--", "kubectl get secret x -o yaml"],
    ["check", "--rules", "{rules}", "kubectl exec web -- ls"],
    ["check", "--rules={rules}", "--json", "kubectl exec web -- ls"],
]


@pytest.mark.parametrize("words", PLAIN_CHECKS)
def test_plain_check_spellings_answer_exactly_as_click_does(
    words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `check` in these spellings skips click; `--traceback` first routes the same words
    # through click: both must print the same answer and exit the same way
    rules = tmp_path / "mine.yaml"
    rules.write_text(
        "rules:\n- id: no-exec\n  action: deny\n  reason: no exec here\n  match: exec\n"
    )
    args = [w.format(rules=rules) for w in words]
    from guardctl.routing import plain_check

    assert plain_check(args[1:]) is not None
    fast = run(args, capsys)
    assert run(["--traceback", *args], capsys) == fast
    assert fast[1]


@pytest.mark.parametrize(
    "words",
    [
        ["check"],
        ["check", "a", "b"],
        ["check", "--batch", "kubectl get pods"],
        ["check", "--bogus", "kubectl get pods"],
        ["check", "--", "a", "b"],
    ],
)
def test_other_check_spellings_go_to_click_for_its_usage_error(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from guardctl.routing import plain_check

    assert plain_check(words[1:]) is None
    code, _, err = run(words, capsys)
    assert code == ExitStatus.USAGE
    assert "Usage: guardctl check" in err


def test_rules_option_needs_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check", "--rules"], capsys)
    assert (code, err.splitlines()[-1]) == (
        ExitStatus.USAGE, "Error: Option '--rules' requires an argument."
    )
    # an empty value would silently mean the current folder
    for args in (["check", "--rules=", "kubectl get pods"], ["rules", "list", "--rules", ""]):
        code, out, err = run(args, capsys)
        assert (code, out) == (ExitStatus.USAGE, "")
        assert err == "guardctl: --rules needs a rules file or folder, not an empty string\n"


def test_batch_check_skips_click_and_answers_like_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = '{"line": "kubectl delete ns prod", "id": 1}\n{"line": "kubectl get pods"}\n'
    fast = run(["check", "--batch"], capsys, stdin, monkeypatch)
    assert run(["--traceback", "check", "--batch"], capsys, stdin, monkeypatch) == fast
    assert [json.loads(line)["decision"] for line in fast[1].splitlines()] == ["deny", "allow"]


def test_check_path_imports_nothing_it_does_not_need(tmp_path: Path) -> None:
    # an agent's hook runs `guardctl check` for every line: none of these heavy modules
    # (yaml neither, once the rules are cached by the first run)
    code = (
        "import sys; from guardctl.main import main; main(['check', 'kubectl get pods']); "
        "print(sorted({'click', 'keyring', 'rich', 'pexpect', 'yaml', 'dataclasses'}"
        " & set(sys.modules)))"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    first, second = (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )
        for _ in range(2)
    )
    assert first.stdout.splitlines()[-1] == "['yaml']", first.stderr
    assert second.stdout.splitlines()[-1] == "[]", second.stderr


def test_top_help_lists_every_variable_exit_code_and_file_location() -> None:
    import re

    from guardctl.status import ExitStatus

    text = subprocess.run([sys.executable, "-m", "guardctl", "--help"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    package = Path(__file__).resolve().parent.parent / "guardctl"
    used = {name for path in package.rglob("*.py")
            for name in re.findall(r'"(GUARDCTL_[A-Z_]+)"', path.read_text())}
    assert used and not [name for name in sorted(used) if name not in text]
    codes = {int(code) for code in ExitStatus}
    listed = {int(m) for m in re.findall(r"^\s+(\d+)\s+[a-z(`]", text, re.M)}
    assert codes <= listed
    assert "config.yaml" in text and "XDG_STATE_HOME" in text


def test_check_help_names_no_file_that_is_not_installed() -> None:
    text = subprocess.run([sys.executable, "-m", "guardctl", "check", "--help"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "DESIGN.md" not in text
