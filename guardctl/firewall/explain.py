"""`rules explain`: how guardctl read each command and which rules fired on which words."""

from __future__ import annotations

from guardctl.firewall.rules import RuleSet
from guardctl.model import CommandDecision, Decision, KubectlCall


def explain(decision: Decision) -> str:
    out = [f"line: {decision.action.value} — {decision.reason}"]
    out.extend(f"  not understood: {p}" for p in decision.problems)
    for cmd in decision.commands:
        out.append("")
        out.extend(_explain_command(cmd))
    return "\n".join(out)


def _explain_command(cmd: CommandDecision) -> list[str]:
    out = [f"$ {' '.join(cmd.argv) or '(variable assignment)'}  →  {cmd.action.value}"]
    if cmd.call is not None:
        out.append(f"  reads as: {reading(cmd.call)}")
    if cmd.report is not None:
        out.extend(
            f"  manifest: {o.kind}/{o.name or '?'}" + (f" in {o.namespace}" if o.namespace else "")
            for o in cmd.report.objects
        )
        out.extend(f"  risk: {r.name}: {r.detail}" for r in cmd.report.risks)
        out.extend(f"  cannot see: {u}" for u in cmd.report.unseen)
    out.extend(f"  not understood: {p}" for p in cmd.problems)
    for hit in cmd.hits:
        out.append(
            f"  rule {hit.id} ({hit.action.value}) on {' '.join(hit.matched) or 'the command'}"
        )
        out.append(f"    {hit.reason}")
    if not cmd.hits and not cmd.problems:
        out.append("  no rule matched")
    return out


def reading(call: KubectlCall) -> str:
    """The normalized words of a call, e.g. `verb=delete resource=namespaces/prod namespace=dev`."""
    parts = [f"verb={call.verb or '(none)'}"]
    for ref in call.resources:
        sub = f"/{ref.subresource}" if ref.subresource else ""
        parts.append(f"resource={ref.qualified}{sub}" + (f"/{ref.name}" if ref.name else ""))
    parts.extend(f"name={n}" for n in call.names)
    if call.all_namespaces:
        parts.append("namespace=*")
    elif call.namespace:
        parts.append(f"namespace={call.namespace}")
    for name, values in call.flags.items():
        if name not in ("namespace", "all-namespaces"):
            parts.extend(f"--{name}={v}" for v in values)
    if call.dry_run:
        parts.append("dry-run")
    if call.command:
        parts.append("command=" + " ".join(call.command))
    return " ".join(parts)


def list_rules(ruleset: RuleSet) -> str:
    width = max((len(r.id) for r in ruleset.rules), default=2)
    return "\n".join(f"{r.id:<{width}}  {r.action.value:<7}  {r.reason}" for r in ruleset.rules)


def rules_json(ruleset: RuleSet) -> str:
    """`rules list --json`: the rule files and one object per rule in force."""
    import json

    rules = [{"id": r.id, "action": r.action.value, "reason": r.reason, "origin": r.origin,
              "description": r.description} for r in ruleset.rules]
    return json.dumps({"files": list(ruleset.files), "rules": rules}, indent=1)
