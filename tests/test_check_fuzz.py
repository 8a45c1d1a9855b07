"""Garbage and mutated lines through the whole decision path: never a crash, never a
silent allow of something guardctl did not understand."""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardctl.bundled import bundled_rules_dir
from guardctl.firewall.parse import parse
from guardctl.firewall.policy import decide
from guardctl.firewall.rules import RuleSet, load_rules
from guardctl.model import Action

SEEDS = [
    "kubectl delete ns prod",
    "sudo bash -c 'kubectl get secret db -o yaml' | grep pass",
    "kubectl exec -it web -- sh",
    "echo prod | xargs -I{} kubectl delete ns {}",
    "KUBECONFIG=/tmp/x kubectl get pods && kubectl apply -f - <<EOF\nkind: Pod\nEOF\n",
    "kubectl get pods -n dev -o wide",
]
NOISE = st.sampled_from(
    list("'\"$`\\(){}[];&|<>*?!#~= \n\t\0") + ["$(", "${", "<<", "&&", "--", "-n"]
)


@cache
def ruleset() -> RuleSet:
    return load_rules([bundled_rules_dir()])


@st.composite
def mutations(draw: st.DrawFn, seeds: list[str], noise: st.SearchStrategy[str]) -> str:
    """One of `seeds` with one to four bits of `noise` put in or characters taken out."""
    line = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(line)))
        if draw(st.booleans()):
            line = line[:at] + draw(noise) + line[at:]
        else:
            line = line[:at] + line[at + draw(st.integers(1, 3)) :]
    return line


def _assert_safe(line: str) -> None:
    parsed = parse(line)
    decision = decide(parsed, ruleset())
    assert decision.action in Action
    if parsed.problems or any(c.problems for c in decision.commands):
        assert decision.action is not Action.ALLOW


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_random_text_never_crashes_or_allows_what_it_did_not_understand(line: str) -> None:
    _assert_safe(line)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations(SEEDS, NOISE))
def test_mutated_lines_never_crash_or_allow_what_they_did_not_understand(line: str) -> None:
    _assert_safe(line)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "kubectl",
                "delete",
                "ns",
                "prod",
                "-n",
                "x",
                "--all",
                "-A",
                "get",
                "secret",
                "-o",
                "yaml",
                "exec",
                "--",
                "sh",
                "pods/a",
            ]
        ),
        min_size=1,
        max_size=8,
    )
)
def test_word_soup_with_delete_namespace_is_never_allowed(words: list[str]) -> None:
    line = "kubectl " + " ".join(words)
    decision = decide(parse(line), ruleset())
    calls = [c.call for c in decision.commands if c.call is not None]
    deletes_namespace = any(
        c.verb == "delete"
        and any(r.resource == "namespaces" for r in c.resources)
        and not c.dry_run
        for c in calls
    )
    if deletes_namespace:
        assert decision.action is Action.DENY
