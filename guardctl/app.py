"""Orchestration: the path of one line through parse, rules and policy. No click here."""

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.firewall.parse import Readings, parse
from guardctl.firewall.policy import Decided, PolicyContext, decide
from guardctl.firewall.rules import RuleSet, load_rules
from guardctl.model import Action, Decision, ParsedLine
from guardctl.status import ExitStatus

if TYPE_CHECKING:
    from guardctl.firewall.manifests import Reader
    from guardctl.firewall.ruletests import Failure
    from guardctl.running.kustomize import Renders

CHECK_STATUS = {
    Action.ALLOW: ExitStatus.OK,
    Action.APPROVE: ExitStatus.NEEDS_APPROVAL,
    Action.DENY: ExitStatus.DENIED,
}


class Checker(NamedTuple):
    """Rules and context loaded once, then any number of lines decided with them."""

    ruleset: RuleSet
    context: PolicyContext

    # reads the manifests a line names (None: from this process's disk); a broker's reads
    # them through its client, with the agent's permissions
    read: "Reader | None" = None
    # renders the kustomizations a line names (`-k DIR`), from the same place, and keeps
    # what it rendered for the run
    render: "Renders | None" = None

    @classmethod
    def load(
        cls, env: Environment, extra_rules: tuple[str, ...] = (), expand: bool = True
    ) -> "Checker":
        """`expand`: a `~` in a path the client sends is the agent's home (a shell line),
        not a folder named `~` (kubectl's own words)."""
        ruleset = load_rules(env.rule_paths(extra_rules), cache_dir=env.cache_dir)
        read, render = inputs_of(env, expand=expand)
        return cls(ruleset=ruleset, context=env.policy_context(), read=read, render=render)

    def check(self, line: str) -> Decision:
        return self.decide(parse(line))

    def decide(self, parsed: ParsedLine, decided: Decided | None = None) -> Decision:
        """The decision on a parsed line, its files read and kustomizations rendered where
        this checker reads them (through a broker: the client's); `decided`: a batch's
        commands decided before."""
        return decide(parsed, self.ruleset, self.context, self.read, self.render, decided)


def inputs_of(env: Environment, expand: bool) -> "tuple[Reader | None, Renders]":
    """Where the policy reads files and renders kustomizations: through a broker, the
    client's (`expand`: a `~` there is the agent's home); else this process's disk."""
    from guardctl.running.kustomize import Renders, local_renders

    if env.caller is not None:
        return env.caller.reader(expand), Renders(env.caller.renderer(expand, env.cache_dir))
    return None, local_renders(env)


class CheckRequest(NamedTuple):
    """What `guardctl check` was asked: one LINE (None: --batch, JSON Lines on stdin)."""

    line: str | None
    as_json: bool = False
    extra_rules: tuple[str, ...] = ()


def run_check(env: Environment, request: CheckRequest) -> int:
    """`guardctl check`: print the decision (or one JSON answer per batch line); the exit
    status is the decision's (batch: 0)."""
    checker = Checker.load(env, request.extra_rules)
    if request.line is None:
        for result in batch_results(checker, env.stdin):
            env.stdout.write(json.dumps(result) + "\n")
            env.stdout.flush()
        return ExitStatus.OK
    decision = checker.check(request.line)
    if request.as_json:
        env.stdout.write(json.dumps(decision.to_json()) + "\n")
    else:
        env.stdout.write(format_decision(decision) + "\n")
    return CHECK_STATUS[decision.action]


def batch_results(checker: Checker, lines: Iterable[str]) -> Iterator[dict[str, object]]:
    """One result object per JSON Lines input, every input key but `line` copied through.

    An input that is not a JSON object with a string `line` gets a `deny` result saying why:
    a malformed request must never read as permission.
    """
    # a batch meets the same lines and commands again and again
    readings, decided = Readings(), Decided()
    for raw in lines:
        if not raw.strip():
            continue
        try:
            request = json.loads(raw)
        except ValueError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("line"), str):
            yield _bad_request(request)
            continue
        result = checker.decide(readings.parse(request["line"]), decided).to_json()
        yield {
            **{k: v for k, v in request.items() if k != "line"},
            "line": request["line"],
            **result,
        }


def _bad_request(request: object) -> dict[str, object]:
    copied = (
        {k: v for k, v in request.items() if k not in ("decision", "reason")}
        if isinstance(request, dict)
        else {}
    )
    return {
        **copied,
        "decision": Action.DENY.value,
        "reason": "input is not a JSON object with a string 'line'",
        "commands": [],
    }


def format_decision(decision: Decision) -> str:
    """The human-readable `check` answer: the verdict, then each command and its rules."""
    lines = [f"{decision.action.value}: {decision.reason}"]
    for cmd in decision.commands:
        rules = ", ".join(h.id for h in cmd.hits)
        shown = " ".join(cmd.argv) or "(variable assignment)"
        lines.append(f"  {cmd.action.value:7} {shown}" + (f"  [{rules}]" if rules else ""))
        lines.extend(f"          not understood: {p}" for p in cmd.problems)
    lines.extend(f"  not understood: {p}" for p in decision.problems)
    return "\n".join(lines)


def rule_files_summary(ruleset: RuleSet) -> str:
    return f"{len(ruleset.rules)} rules from {len(ruleset.files)} files: " + ", ".join(
        Path(f).name for f in ruleset.files
    )


class LintResult(NamedTuple):
    summary: str
    failures: tuple[str, ...]


def lint(env: Environment, paths: tuple[str, ...]) -> LintResult:
    """Load rule files (schema errors raise RuleError, exit 2) and run each sibling .cases file."""
    from guardctl.firewall.rules import rule_files

    targets = [Path(p) for p in paths] if paths else env.rule_paths()
    ruleset = load_rules([*env.rule_paths(), *targets] if paths else targets)
    checker = Checker(ruleset=ruleset, context=env.policy_context())
    failures: list[str] = []
    case_count = 0
    for rule_file in rule_files(targets):
        cases_file = rule_file.with_suffix(".cases")
        if cases_file.exists():
            passed, failed = test_cases_file(checker, str(cases_file))
            case_count += passed + len(failed)
            failures.extend(f.describe() for f in failed)
    summary = f"{rule_files_summary(ruleset)}; {case_count} cases, {len(failures)} failed"
    return LintResult(summary=summary, failures=tuple(failures))


def test_cases_file(checker: Checker, path: str) -> tuple[int, list["Failure"]]:
    """(number passed, failures) for one YAML or .cases file of expected decisions."""
    from guardctl.firewall.ruletests import parse_cases, run_cases

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read test cases: {exc}") from None
    cases = parse_cases(text, path)
    failures = list(run_cases(cases, checker.check))
    return len(cases) - len(failures), failures
