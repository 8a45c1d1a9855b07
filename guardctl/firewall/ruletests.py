"""Policy test cases: lines with the decision a policy must give them.

Two formats, both read by `guardctl rules test FILE` and by our own test suite:

* YAML — a list (or a mapping with `cases:`) of `{line, expect, rule?}`, `expect` one of
  allow/approve/deny (`ask` means approve), `rule` an id that must be among the hits.
* `.cases` text — semgrep style: an annotation comment `# deny: delete-namespace`,
  `# ask: exec-into-container` or `# allow:` labels every following line up to the next
  annotation; other `#` comments and blank lines are skipped.
"""

import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import yaml

from guardctl.errors import UsageError
from guardctl.model import Action, Decision

_ANNOTATION = re.compile(r"#\s*(allow|approve|ask|deny)\s*:\s*(\S*)\s*$")


class Case(NamedTuple):
    line: str
    expect: Action
    rule: str | None
    origin: str  # file:line


class Failure(NamedTuple):
    case: Case
    decision: Decision

    def describe(self) -> str:
        got = self.decision.action.value
        hits = sorted({h.id for c in self.decision.commands for h in c.hits})
        want = self.case.expect.value + (f" by {self.case.rule}" if self.case.rule else "")
        return (
            f"{self.case.origin}: {self.case.line!r}: expected {want}, got {got}"
            f" (rules: {', '.join(hits) or 'none'}; {self.decision.reason})"
        )


def _action(word: str, where: str) -> Action:
    try:
        return Action.APPROVE if word == "ask" else Action(word)
    except ValueError:
        raise UsageError(
            f"{where}: expected decision must be allow, approve or deny, not {word!r}"
        ) from None


def parse_cases_text(text: str, origin: str) -> list[Case]:
    cases: list[Case] = []
    label: tuple[Action, str | None] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        annotation = _ANNOTATION.match(line)
        if annotation:
            where = f"{origin}:{number}"
            label = (_action(annotation.group(1), where), annotation.group(2) or None)
        elif line and not line.startswith("#"):
            if label is None:
                raise UsageError(
                    f"{origin}:{number}: a case line before any '# deny: id' annotation"
                )
            cases.append(
                Case(line=raw.rstrip(), expect=label[0], rule=label[1], origin=f"{origin}:{number}")
            )
    return cases


def parse_cases_yaml(text: str, origin: str) -> list[Case]:
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{origin}: not valid YAML: {str(exc).splitlines()[0]}") from None
    items = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise UsageError(f"{origin}: expected a list of cases (each with 'line' and 'expect')")
    cases = []
    for index, item in enumerate(items, 1):
        where = f"{origin}: case #{index}"
        if not isinstance(item, dict) or not isinstance(item.get("line"), str):
            raise UsageError(f"{where}: each case is a mapping with a string 'line'")
        unknown = set(item) - {"line", "expect", "rule"}
        if unknown:
            raise UsageError(
                f"{where}: unknown key '{sorted(unknown)[0]}' (known: expect, line, rule)"
            )
        rule = item.get("rule")
        cases.append(
            Case(
                line=item["line"],
                expect=_action(str(item.get("expect", "")), where),
                rule=str(rule) if rule else None,
                origin=where,
            )
        )
    return cases


def parse_cases(text: str, origin: str) -> list[Case]:
    if origin.endswith((".yaml", ".yml")):
        return parse_cases_yaml(text, origin)
    return parse_cases_text(text, origin)


def run_cases(cases: list[Case], check: Callable[[str], Decision]) -> Iterator[Failure]:
    """Decide each case's line; yield the ones whose decision (or rule) is not the expected one."""
    for case in cases:
        decision = check(case.line)
        hit_ids = {h.id for c in decision.commands for h in c.hits}
        if decision.action is not case.expect or (case.rule and case.rule not in hit_ids):
            yield Failure(case, decision)
