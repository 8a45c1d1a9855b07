"""The labelled corpus, run through the real `guardctl check --batch` process.

tests/corpus/{allow,approve,deny}.cases hold lines an agent could send, each under the
decision it must get (and, where given, the rule that must fire). No dangerous line may
come out allowed and no benign line may be blocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardctl.broker import forkcontrol
from guardctl.firewall.ruletests import Case, parse_cases_text

CORPUS = Path(__file__).resolve().parent / "corpus"


def _cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(CORPUS.glob("*.cases")):
        cases.extend(parse_cases_text(path.read_text(), path.name))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, object]]]:
    requests = "".join(json.dumps({"line": c.line, "id": c.origin}) + "\n" for c in CASES)
    # a module fixture starts before the per-test isolation: its own runtime folder, so the
    # fork server the batch starts is this fixture's, and is stopped with it
    runtime = tmp_path_factory.mktemp("corpus-run")
    runtime.chmod(0o700)
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", "check", "--batch"],
        input=requests,
        capture_output=True,
        text=True,
        cwd=CORPUS,
        timeout=300,
        env={**os.environ, "GUARDCTL_HOME": "/nonexistent/guardctl-home",
             "XDG_RUNTIME_DIR": str(runtime)},
    )
    forkcontrol.stop_all(runtime)
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["id"] for a in answers] == [c.origin for c in CASES]
    yield {str(a["id"]): a for a in answers}


def test_corpus_is_large_and_balanced() -> None:
    counts = {a: sum(c.expect.value == a for c in CASES) for a in ("allow", "approve", "deny")}
    assert sum(counts.values()) >= 400
    assert all(n >= 120 for n in counts.values()), counts


@pytest.mark.parametrize("case", CASES, ids=[c.origin for c in CASES])
def test_corpus_line(case: Case, results: dict[str, dict[str, object]]) -> None:
    answer = results[case.origin]
    rules = {r["id"] for cmd in answer["commands"] for r in cmd["rules"]}  # type: ignore[attr-defined]
    assert answer["decision"] == case.expect.value, (case.line, answer["reason"], rules)
    if case.rule:
        assert case.rule in rules, (case.line, rules)
