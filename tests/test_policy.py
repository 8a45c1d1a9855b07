"""The policy engine: precedence, the not-understood floor, match keys, placeholders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardctl.firewall.parse import parse
from guardctl.firewall.policy import PolicyContext, decide
from guardctl.firewall.rules import RuleSet, parse_rules
from guardctl.model import Action, SimpleCommand

RULES = parse_rules(
    """
rules:
  - id: no-delete-ns
    action: deny
    reason: r1
    match: "delete namespace"
  - id: ask-exec
    action: approve
    reason: r2
    match: ["exec", "attach"]
  - id: ask-prod-writes
    action: approve
    reason: r3
    match:
      verbs: [apply, delete, scale]
      namespaces: ["prod*"]
      dry_run: false
  - id: proxy-loopback
    action: deny
    reason: r4
    match:
      verbs: [proxy]
      flags: [{name: address, not_in: ["127.0.0.1", "localhost"]}]
  - id: scale-zero
    action: approve
    reason: r5
    match: {verbs: [scale], flags: ["replicas=0"]}
  - id: global-user
    action: deny
    reason: r6
    match: {flags: [{name: user, global: true}]}
  - id: protect
    action: deny
    reason: r7
    match: {mentions: ["@protected/*"]}
    unless: {programs: [cat]}
  - id: cluster-curl
    action: approve
    reason: r8
    match: {programs: [curl], mentions: ["*@cluster*"]}
  - id: allow-top
    action: allow
    reason: r9
    match: "top"
""",
    "test.yaml",
)
CONTEXT = PolicyContext(protected_paths=("/srv/guard",), cluster_hosts=("10.1.2.3:6443",))


def check(line: str) -> tuple[Action, set[str]]:
    decision = decide(parse(line), RuleSet(rules=RULES), CONTEXT)
    return decision.action, {h.id for c in decision.commands for h in c.hits}


@pytest.mark.parametrize(
    ("line", "action", "rules"),
    [
        ("kubectl get pods", Action.ALLOW, set()),
        ("kubectl top pods", Action.ALLOW, {"allow-top"}),
        ("kubectl delete ns x", Action.DENY, {"no-delete-ns"}),
        # strictest of all rules on one command, and of all commands in a line
        ("kubectl delete ns prod -n prod", Action.DENY, {"no-delete-ns"}),
        (
            "kubectl exec -it p -- sh; kubectl delete ns x",
            Action.DENY,
            {"ask-exec", "no-delete-ns"},
        ),
        ("kubectl exec -it p -- sh | kubectl top pods", Action.APPROVE, {"ask-exec", "allow-top"}),
        # namespaces are globs; dry runs are exempt where the rule says dry_run: false
        ("kubectl scale deploy web --replicas=2 -n prod-eu", Action.APPROVE, {"ask-prod-writes"}),
        ("kubectl scale deploy web --replicas=2 -n dev", Action.ALLOW, set()),
        ("kubectl delete deploy web -n prod --dry-run=server", Action.ALLOW, set()),
        ("kubectl delete deploy web -n prod --dry-run=none", Action.APPROVE, {"ask-prod-writes"}),
        ("kubectl delete deploy web -A", Action.APPROVE, {"ask-prod-writes"}),
        # flag value conditions: any value outside the list
        ("kubectl proxy --address=127.0.0.1", Action.ALLOW, set()),
        ("kubectl proxy --address 0.0.0.0", Action.DENY, {"proxy-loopback"}),
        ("kubectl proxy --address=127.0.0.1 --address=0.0.0.0", Action.DENY, {"proxy-loopback"}),
        ("kubectl scale deploy web --replicas 0", Action.APPROVE, {"scale-zero"}),
        ("kubectl scale deploy web --replicas=10", Action.ALLOW, set()),
        # a command's own --user is not the global credential flag
        ("kubectl get pods --user=admin", Action.DENY, {"global-user"}),
        ("kubectl create rolebinding b --role=r --user=alice", Action.ALLOW, set()),
        # placeholders come from the context; unless exempts
        ("rm -rf /srv/guard/audit.jsonl", Action.DENY, {"protect"}),
        ("cat /srv/guard/audit.jsonl", Action.ALLOW, set()),
        ("curl https://10.1.2.3:6443/api/v1/secrets", Action.APPROVE, {"cluster-curl"}),
        ("curl https://example.com/", Action.ALLOW, set()),
    ],
)
def test_decisions(line: str, action: Action, rules: set[str]) -> None:
    assert check(line) == (action, rules)


@pytest.mark.parametrize(
    "line",
    [
        "kubectl get pods 'unterminated",
        "kubectl $VERB pods",
        "$K get pods",
        "kubectl get $(echo pods)",
        "kubectl frobnicate",
        "kubectl get frobs",
        "kubectl get pods --no-such-flag",
        'eval "$X"',
        "kubectl apply -f https://example.com/x.yaml",
        "kubectl top pods -n $NS",  # an allow rule cannot lift the floor
    ],
)
def test_not_understood_is_never_allowed(line: str) -> None:
    decision = decide(parse(line), RuleSet(rules=RULES), CONTEXT)
    assert decision.action is not Action.ALLOW
    assert "understand" in decision.reason or decision.action is Action.DENY


def test_reason_names_the_deciding_rule() -> None:
    decision = decide(parse("kubectl get pods; kubectl delete ns x"), RuleSet(rules=RULES), CONTEXT)
    assert decision.reason == "denied by rule no-delete-ns: r1"


def test_manifest_objects_count_as_resources(tmp_path: Path) -> None:
    manifest = tmp_path / "ns.yaml"
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n")
    assert check(f"kubectl delete -f {manifest}") == (Action.DENY, {"no-delete-ns"})
    in_prod = tmp_path / "cm.yaml"
    in_prod.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: prod}\n")
    assert check(f"kubectl apply -f {in_prod}") == (Action.APPROVE, {"ask-prod-writes"})


def test_heredoc_manifest_is_inspected() -> None:
    line = (
        "kubectl delete -f - <<EOF\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\nEOF\n"
    )
    assert check(line) == (Action.DENY, {"no-delete-ns"})


def test_the_rule_pre_check_never_skips_a_rule_that_would_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the policy skips rules whose verbs, resources, flags, ... a call lacks (by an index,
    # then by the command's shape), without evaluating them; over every corpus line and
    # every default rule, a skipped rule must not match
    from guardctl.bundled import bundled_rules_dir
    from guardctl.firewall.policy import _candidates, _fitting, gather_facts, match_rule
    from guardctl.firewall.rules import load_rules

    rules = load_rules([bundled_rules_dir()]).rules
    context = PolicyContext(
        protected_paths=("/home/u/.config/guardctl",), cluster_hosts=("10.0.0.1",),
        contexts=("prod",),
    )
    skipped = 0
    for line, cmd in _corpus_commands(monkeypatch):
        facts = gather_facts(cmd)
        fitting = {rule for rule, _ in _fitting(_candidates(rules, facts, context), facts)}
        for rule in rules:
            if rule not in fitting:
                skipped += 1
                assert match_rule(rule, facts, context) is None, (line, rule.id)
    assert skipped > 1000  # the check above ran on many skipped rules


def test_the_alternatives_a_shape_skips_never_match(monkeypatch: pytest.MonkeyPatch) -> None:
    # a candidate rule is tried only on the alternatives that fit the command's shape (its
    # verb, resources, flags, ...): over every corpus command, default and screened rules,
    # the hit is match_rule's own, and a rule left out has none
    from guardctl.bundled import bundled_rules_dir
    from guardctl.firewall.policy import _first_match, _fitting, gather_facts, match_rule
    from guardctl.firewall.rules import load_rules

    rules = load_rules([bundled_rules_dir()]).rules + parse_rules(_screened_rules(), "s.yaml")
    skipped = 0
    for _, cmd in _corpus_commands(monkeypatch):
        facts = gather_facts(cmd)
        fitting = dict(_fitting(rules, facts))
        for rule in rules:
            alternatives = fitting.get(rule, ())
            skipped += len(rule.match) - len(alternatives)
            assert _first_match(rule, alternatives, facts, CONTEXT) == match_rule(
                rule, facts, CONTEXT
            )
    assert skipped > 1000


def test_a_batch_decides_each_corpus_line_as_one_line_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a batch keeps the decisions of commands that read no file: every corpus line, met
    # twice in one batch, gets the decision it gets alone
    from guardctl.bundled import bundled_rules_dir
    from guardctl.firewall.policy import Decided
    from guardctl.firewall.rules import load_rules

    ruleset = load_rules([bundled_rules_dir()])
    lines = list(dict.fromkeys(line for line, _ in _corpus_commands(monkeypatch)))
    decided = Decided()
    for line in lines + lines:
        assert decide(parse(line), ruleset, CONTEXT, decided=decided) == decide(
            parse(line), ruleset, CONTEXT
        ), line


def test_a_batch_reads_a_manifest_again_each_time(tmp_path: Path) -> None:
    # the file may change between two lines of a batch: a command that read one is
    # decided again, on what the file holds then
    from guardctl.firewall.policy import Decided

    manifest = tmp_path / "m.yaml"
    line = f"kubectl delete -f {manifest}"
    decided = Decided()
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    assert decide(parse(line), RuleSet(rules=RULES), CONTEXT, decided=decided).action is (
        Action.ALLOW
    )
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n")
    again = decide(parse(line), RuleSet(rules=RULES), CONTEXT, decided=decided)
    assert (again.action, {h.id for c in again.commands for h in c.hits}) == (
        Action.DENY, {"no-delete-ns"}
    )


def test_a_batch_keeps_a_decision_for_its_rules_and_context_only() -> None:
    from guardctl.firewall.policy import Decided

    decided = Decided()
    line = "cat /srv/guard/config.yaml; rm /srv/guard/config.yaml"
    assert decide(parse(line), RuleSet(rules=RULES), CONTEXT, decided=decided).action is (
        Action.DENY
    )
    elsewhere = PolicyContext(protected_paths=("/srv/other",))
    assert decide(parse(line), RuleSet(rules=RULES), elsewhere, decided=decided).action is (
        Action.ALLOW
    )
    assert decide(parse(line), RuleSet(rules=()), CONTEXT, decided=decided).action is (
        Action.ALLOW
    )


def _corpus_commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, SimpleCommand]]:
    """Every command of every corpus line, from the corpus folder (where `-f` files are)."""
    corpus = Path(__file__).resolve().parent / "corpus"
    monkeypatch.chdir(corpus)
    for path in sorted(corpus.glob("*.cases")):
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                yield from ((line, cmd) for cmd in parse(line).commands)


def _screened_rules() -> str:
    """Rules of every shape the candidate screen and the shape of a command sort by: verbs,
    programs (globs too), resources, namespaces (exact, globs, `*`), mentions (plain,
    bracketed, `@protected`, none to screen by), flags, risks, objects, dry run,
    understood, writes, and alternatives mixing them."""
    shapes = [
        '{verbs: [delete], resources: [deployments.apps], namespaces: ["dev"]}',
        '{resources: [pods, secrets], namespaces: ["kube-*", "d?v"]}',
        '{resources: ["*"], namespaces: [prod]}',
        '{programs: ["py*", curl], mentions: ["*kubectl*"]}',
        '{mentions: ["*[Ss]ecret*", "*@protected*"]}',
        '{mentions: ["*"]}',
        '{mentions: ["?"]}',
        "{programs: [rm, mv]}",
        '{env: ["KUBE*"]}',
        '{flags: ["server", "insecure-skip-tls-verify"]}',
        '{verbs: [get], flags: ["selector"]}',
        '{args: ["-w"]}',
        '{resources: [pods], flags: ["output=yaml"]}',
        '{risks: [privileged, template-values]}',
        '{objects: ["Cluster*", Namespace]}',
        '{verbs: [delete], dry_run: true}',
        '{understood: false}',
        '{programs: [echo], understood: true}',
        '{writes: ["*"]}',
        '{resources: ["*"], namespaces: ["*"]}',
    ]
    rules = "\n".join(
        f"  - id: r{i}\n    action: deny\n    reason: r.\n    match:\n      - {shape}"
        + '\n      - {mentions: ["*.yaml"]}' * (i % 2)
        for i, shape in enumerate(shapes)
    )
    # an `unless` the shape decides drops a rule; one it does not is still evaluated
    unless = (
        "  - id: u1\n    action: deny\n    reason: r.\n    match: {mentions: ['*']}\n"
        "    unless:\n      - {programs: [kubectl], args: [get]}\n"
        "      - {programs: [echo, grep], understood: true}\n"
    )
    return f"version: 1\nrules:\n{rules}\n{unless}"


def test_the_candidate_screen_never_skips_a_rule_that_would_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from guardctl.firewall.policy import _candidates, gather_facts, match_rule

    rules = parse_rules(_screened_rules(), "screened.yaml")
    skipped = matched = 0
    for line, cmd in _corpus_commands(monkeypatch):
        facts = gather_facts(cmd)
        found = _candidates(rules, facts, CONTEXT)
        assert list(found) == sorted(found, key=rules.index)  # hits keep the rules' order
        candidates = set(found)
        for rule in rules:
            hit = match_rule(rule, facts, CONTEXT)
            matched += hit is not None
            if rule not in candidates:
                skipped += 1
                assert hit is None, (line, rule.id)
    assert skipped > 1000 and matched > 100  # both sides of the screen were exercised


_NAMESPACE_GLOBS = st.lists(
    st.text(alphabet="ab-*?[]!", max_size=5), min_size=0, max_size=3
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(_NAMESPACE_GLOBS, min_size=1, max_size=2), min_size=17, max_size=40),
    st.sets(st.text(alphabet="ab-*?[]!", max_size=6), max_size=3),
)
def test_a_long_group_found_by_namespace_keeps_every_rule_that_fits(
    alternatives: list[list[list[str]]], namespaces: set[str]
) -> None:
    # a long group of a resource's rules (a team's) is looked up by the namespaces its
    # rules name: it must let through every rule `_may_fit_place` lets through
    import json

    from guardctl.firewall.policy import Facts, _fitting_place, _may_fit_place

    rules = parse_rules(
        "version: 1\nrules:\n"
        + "".join(
            f"  - id: n{i}\n    action: deny\n    reason: r.\n    match: "
            + json.dumps([{"resources": ["pods"], **({"namespaces": g} if g else {})}
                          for g in alts])
            + "\n"
            for i, alts in enumerate(alternatives)
        ),
        "ns.yaml",
    )
    facts = Facts(
        cmd=SimpleCommand(("kubectl", "get", "pods")),
        resources=frozenset({"pods"}),
        namespaces=frozenset(namespaces),
    )
    expected = [r for r in rules if _may_fit_place(r, facts)]
    assert sorted(_fitting_place(rules, facts), key=rules.index) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet="ab*/.-", min_size=1, max_size=6), min_size=1, max_size=12),
    st.text(alphabet="ab/.-\0", max_size=30),
)
def test_a_text_index_finds_the_same_fragments_one_by_one_or_by_trigrams(
    mentions: list[str], text: str
) -> None:
    # a short list's fragments are looked for one by one, a long one's by a scan of the
    # text's trigrams: both find every fragment the text holds
    import json

    from guardctl.firewall.policy import _TextIndex

    rules = parse_rules(
        "version: 1\nrules:\n"
        + "".join(
            f"  - id: m{i}\n    action: deny\n    reason: r.\n    match: "
            + json.dumps({"mentions": [f"*{m}*"]}) + "\n"
            for i, m in enumerate(mentions)
        ),
        "m.yaml",
    )
    index = _TextIndex.of(rules, CONTEXT)
    assert index.every is not None
    expected = frozenset(f for f in index.by_fragment if f in text)
    assert index.present(text) == index._replace(every=None).present(text) == expected


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet="ab/.-", max_size=6),
    st.lists(st.text(alphabet="ab*?[]!/.-", max_size=5), min_size=1, max_size=4),
)
def test_glob_matching_is_fnmatchcase(word: str, globs: list[str]) -> None:
    # globs are matched by shape (exact, prefix, suffix, contains) before any regex
    from fnmatch import fnmatchcase

    from guardctl.firewall.policy import _any_glob

    assert _any_glob(word, tuple(globs)) == any(fnmatchcase(word, g) for g in globs)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.text(alphabet="ab/.-]", max_size=6), max_size=3),
    st.lists(st.text(alphabet="ab*?[]!/.-", max_size=6), min_size=1, max_size=4),
)
def test_screening_words_never_hides_a_match(words: list[str], globs: list[str]) -> None:
    # the literal text a glob needs is looked for in all words at once before any word is
    # matched: it may only skip words that match no glob
    from fnmatch import fnmatchcase

    from guardctl.firewall.policy import _glob_set

    matched = any(fnmatchcase(w, g) for w in words for g in globs)
    assert _glob_set(tuple(globs)).may_match_any("\0".join(words)) or not matched


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("kubectl --context staging get pods", Action.ALLOW),
        ("kubectl get pods --context=dev*", Action.ALLOW),
        ("kubectl get pods --context=dev-x", Action.DENY),  # `dev*` is a name, not a pattern
        ("kubectl get pods --context staging --context other", Action.DENY),
        ("kubectl get pods --context=", Action.DENY),
        ("kubectl --context staging --cluster other get pods", Action.DENY),
        ("kubectl --context staging --user admin get pods", Action.DENY),
        ("kubectl --context staging --kubeconfig /tmp/k get pods", Action.DENY),
    ],
)
def test_context_is_allowed_only_for_a_managed_context(line: str, action: Action) -> None:
    from guardctl.bundled import bundled_rules_dir
    from guardctl.firewall.policy import context_of
    from guardctl.firewall.rules import load_rules

    context = context_of(contexts=("staging", "dev*"))
    assert decide(parse(line), load_rules([bundled_rules_dir()]), context).action is action


def test_equal_contexts_are_one_object() -> None:
    from guardctl.firewall.policy import context_of

    assert context_of(contexts=("a",)) is context_of(contexts=("a",))
    assert context_of(contexts=("a",)) is not context_of(contexts=("b",))
